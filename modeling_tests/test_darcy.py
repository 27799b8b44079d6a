"""Darcy data (generator, neuraloperator files, your own files, caching) and the Trainer pipeline, on tiny data."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import StopAtStep
from datasets import DatasetDict
from torch import nn
from transformers import AutoModel

from transformers_mano import ManoOperatorConfig, ManoOperatorModel
from transformers_mano.physics import data as darcy
from transformers_mano.physics.baselines import (
    FnoOperatorConfig,
    FnoOperatorModel,
    VitOperatorConfig,
    VitOperatorModel,
)
from transformers_mano.physics.compare import comparison_table, load_results, plot_comparison, seed_table
from transformers_mano.physics.data import (
    DarcyDataError,
    as_tensors,
    generate_darcy,
    load_darcy,
    load_generated_darcy,
    load_neuralop_darcy,
    sample_gaussian_random_field,
    solve_darcy,
    split_resolutions,
    threshold_coefficient,
    to_dataset,
)
from transformers_mano.physics.evaluate import EvaluationArguments, evaluate_run, upsample_strided
from transformers_mano.physics.sweep import SweepArguments, best_learning_rates, run_protocol
from transformers_mano.physics.training import (
    DarcyModelArguments,
    build_operator,
    count_parameters,
    parse_arguments,
    relative_errors,
    run_darcy,
)
from transformers_mano.physics.training import (
    main as train_main,
)
from transformers_mano.utils import OutputExistsError


def stencil_residual(coefficient: np.ndarray, solution: np.ndarray, forcing: float = 1.0) -> float:
    """Max |-div(a grad u) - f| over interior points, by the five-point stencil written out point by point."""
    n = coefficient.shape[0]
    inv_h2 = (n - 1) ** 2
    worst = 0.0
    for i in range(1, n - 1):
        for j in range(1, n - 1):
            flux = 0.0
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                face = 0.5 * (coefficient[i, j] + coefficient[i + di, j + dj])
                flux += face * (solution[i, j] - solution[i + di, j + dj]) * inv_h2
            worst = max(worst, abs(flux - forcing))
    return worst


def test_generated_solution_satisfies_the_finite_difference_system() -> None:
    coefficients, solutions = generate_darcy(2, 12, seed=3, refine=1, progress=False)
    for coefficient, solution in zip(coefficients.astype(np.float64), solutions.astype(np.float64)):
        assert stencil_residual(coefficient, solution) < 1e-3  # float32 storage of u ~ 1e-2, h^-2 = 121
        exact = solve_darcy(coefficient)
        assert stencil_residual(coefficient, exact) < 1e-9
        assert np.all(exact[[0, -1]] == 0) and np.all(exact[:, [0, -1]] == 0)
        assert exact[1:-1, 1:-1].min() > 0  # f = 1 > 0 and a > 0: the discrete maximum principle


def test_generator_recipe_is_seeded_two_phase_and_subsampled() -> None:
    first = generate_darcy(3, 9, seed=7, refine=2, progress=False)
    again = generate_darcy(3, 9, seed=7, refine=2, progress=False)
    other = generate_darcy(3, 9, seed=8, refine=2, progress=False)
    assert first[0].shape == first[1].shape == (3, 9, 9) and first[0].dtype == np.float32
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert set(np.unique(first[0])) <= {3.0, 12.0}
    assert np.all(first[1][:, [0, -1]] == 0) and np.all(first[1][:, :, [0, -1]] == 0)  # boundary kept by subsampling
    # sample i does not depend on how many are drawn
    np.testing.assert_array_equal(generate_darcy(1, 9, seed=7, refine=2, progress=False)[1][0], first[1][0])


def test_random_field_is_zero_mean_and_smooth() -> None:
    field = sample_gaussian_random_field(64, np.random.default_rng(0))
    assert abs(field.mean()) < 1e-12  # the constant mode is removed
    neighbour_correlation = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    assert neighbour_correlation > 0.9  # (-Laplacian + 9)^-2 is a smooth covariance
    coefficient = threshold_coefficient(field)
    assert 0.2 < (coefficient == 12.0).mean() < 0.8


def write_fake_neuralop_wheel(path: Path, num_train: int = 6, num_test: int = 3) -> dict[str, dict[str, torch.Tensor]]:
    """A zip laid out like the neuraloperator 0.3.0 wheel, with tiny Darcy files of the real format."""
    generator = torch.Generator().manual_seed(0)
    files = {}
    for name, count, side in (
        ("darcy_train_16", num_train, 16),
        ("darcy_test_16", num_test, 16),
        ("darcy_test_32", num_test, 32),
    ):
        files[name] = {
            "x": torch.rand(count, side, side, generator=generator) > 0.5,
            "y": torch.rand(count, side, side, generator=generator),
        }
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("neuralop/__init__.py", "")
        for name, data in files.items():
            buffer = io.BytesIO()
            torch.save(data, buffer)
            wheel.writestr(f"neuralop/datasets/data/{name}.pt", buffer.getvalue())
    return files


def test_neuralop_files_become_a_cached_dataset(tmp_path: Path) -> None:
    wheel = tmp_path / "neuraloperator-0.3.0-py3-none-any.whl"
    files = write_fake_neuralop_wheel(wheel)
    data = load_neuralop_darcy(tmp_path / "cache", source=wheel)
    assert set(data) == {"train", "test_16", "test_32"} and split_resolutions(data) == [16, 32]
    coefficients, solutions = as_tensors(data["test_32"])
    assert coefficients.shape == solutions.shape == (3, 32, 32, 1)
    torch.testing.assert_close(coefficients[..., 0], files["darcy_test_32"]["x"].float())
    torch.testing.assert_close(solutions[..., 0], files["darcy_test_32"]["y"])
    wheel.unlink()  # the second call reads the cache, not the source
    assert len(load_darcy("neuralop_darcy_16", tmp_path / "cache", num_train=4)["train"]) == 4


def test_neuralop_files_from_a_folder_and_missing_files(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    write_fake_neuralop_wheel(wheel)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "unpacked")
    assert len(load_neuralop_darcy(tmp_path / "cache", source=tmp_path / "unpacked")["test_16"]) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="darcy_train_16.pt"):
        load_neuralop_darcy(tmp_path / "other_cache", source=tmp_path / "empty")
    assert not (tmp_path / "other_cache" / "neuralop_darcy").exists()


def test_generated_data_is_cached_under_its_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {
        "train_resolution": 8,
        "test_resolutions": (8, 12),
        "num_train": 3,
        "num_test": 2,
        "refine": 1,
        "cache_dir": tmp_path,
    }
    data = load_generated_darcy(**kwargs)
    assert [len(data[s]) for s in ("train", "test_8", "test_12")] == [3, 2, 2]
    assert data["test_12"].features["solution"].shape == (12, 12)
    train = as_tensors(data["train"])[1]

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(darcy, "generate_darcy", no_generation)
    torch.testing.assert_close(as_tensors(load_generated_darcy(**kwargs)["train"])[1], train)
    with pytest.raises(AssertionError, match="cache"):
        load_generated_darcy(**(kwargs | {"seed": 1}))


def test_unknown_data_set_name() -> None:
    with pytest.raises(DarcyDataError, match="grf_darcy_<n>"):
        load_darcy("darcy_64")


# --- your own data --------------------------------------------------------------------------------------------


def random_fields(count: int, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((count, side, side)).astype(np.float32), rng.random((count, side, side)).astype(np.float32)


def test_a_saved_dataset_dict_folder_is_read_and_checked(tmp_path: Path) -> None:
    DatasetDict(
        train=to_dataset(*random_fields(5, 8)),
        test_8=to_dataset(*random_fields(2, 8, 1)),
        test_16=to_dataset(*random_fields(2, 16, 2)),
    ).save_to_disk(tmp_path / "mine")
    data = load_darcy(str(tmp_path / "mine"), num_train=3)
    assert len(data["train"]) == 3 and split_resolutions(data) == [8, 16]
    np.testing.assert_array_equal(as_tensors(data["test_16"])[0][..., 0].numpy(), random_fields(2, 16, 2)[0])

    DatasetDict(train=to_dataset(*random_fields(5, 8)), test_16=to_dataset(*random_fields(2, 8))).save_to_disk(
        tmp_path / "misnamed"
    )
    with pytest.raises(DarcyDataError, match="'test_16' .* 8x8 fields"):
        load_darcy(str(tmp_path / "misnamed"))
    DatasetDict(train=to_dataset(*random_fields(5, 8))).save_to_disk(tmp_path / "no_test")
    with pytest.raises(DarcyDataError, match="test_<n>"):
        load_darcy(str(tmp_path / "no_test"))


def write_pdebench_file(path: Path, count: int = 6, side: int = 16, **overrides) -> dict[str, np.ndarray]:
    """An HDF5 file laid out like PDEBench's 2-D Darcy files: nu (N, s, s), tensor (N, 1, s, s), coordinates."""
    import h5py

    rng = np.random.default_rng(0)
    arrays = {
        "nu": rng.random((count, side, side)).astype(np.float32),
        "tensor": rng.random((count, 1, side, side)).astype(np.float32),
        "x-coordinate": np.linspace(0, 1, side),
        "y-coordinate": np.linspace(0, 1, side),
    }
    arrays.update(overrides)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file.create_dataset(key, data=value)
    return arrays


def test_pdebench_files_are_subsampled_with_a_fixed_held_out_test_set(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    arrays = write_pdebench_file(path)
    data = load_darcy(str(path), train_resolution=8, test_resolutions=(8, 16), num_test=2)
    assert [len(data[split]) for split in ("train", "test_8", "test_16")] == [4, 2, 2]
    test_16 = as_tensors(data["test_16"])
    # the same held-out samples at both resolutions, subsampled by a stride of 2 for 8x8
    matches = [i for i in range(6) if np.array_equal(arrays["nu"][i], test_16[0][0, ..., 0].numpy())]
    assert len(matches) == 1
    np.testing.assert_array_equal(
        as_tensors(data["test_8"])[1][0, ..., 0].numpy(), arrays["tensor"][matches[0], 0, ::2, ::2]
    )
    again = load_darcy(str(path), train_resolution=8, test_resolutions=(8, 16), num_test=2)
    np.testing.assert_array_equal(as_tensors(again["train"])[0].numpy(), as_tensors(data["train"])[0].numpy())


@pytest.mark.parametrize(
    "overrides, resolution, message",
    [
        ({"tensor": None}, 8, "no \\['tensor'\\]"),
        ({"tensor": np.zeros((6, 1, 8, 8), np.float32)}, 8, "same"),
        ({"nu": np.zeros((6, 16, 12), np.float32), "tensor": np.zeros((6, 1, 16, 12), np.float32)}, 8, "square"),
        ({}, 6, "divisor of 16"),
    ],
    ids=["missing-key", "shape-mismatch", "non-square", "resolution-not-a-divisor"],
)
def test_pdebench_errors_name_the_problem(tmp_path: Path, overrides, resolution, message) -> None:
    pytest.importorskip("h5py")
    path = tmp_path / "darcy.hdf5"
    write_pdebench_file(path, **overrides)
    with pytest.raises(DarcyDataError, match=message):
        load_darcy(str(path), train_resolution=resolution, test_resolutions=(resolution,), num_test=2)


# --- training with Trainer ---------------------------------------------------------------------------------------

TINY_RUN = [
    "--data",
    "grf_darcy_8",
    "--num_train",
    "12",
    "--num_test",
    "2",
    "--validation_size",
    "4",
    "--num_train_epochs",
    "3",
    "--per_device_train_batch_size",
    "4",
    "--hidden_size",
    "8",
    "--num_layers",
    "1",
    "--num_heads",
    "2",
    "--num_saved_predictions",
    "2",
    "--learning_rate",
    "3e-3",
    "--disable_tqdm",
    "true",
    "--save_strategy",
    "no",
]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """MANO, ViT and (when neuraloperator is installed) FNO, trained for three epochs on 8 generated samples at
    8x8 and tested at 8 and 16. Tests must not modify these folders (copy them first)."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    models = ["mano", "vit"] + (["fno"] if _has_neuralop() else [])
    for model in models:
        train_main(
            [*TINY_RUN, "--model", model, "--output_dir", str(root / model), "--cache_dir", str(root / "cache")]
        )
        runs.append(root / model)
    return root, runs


def _has_neuralop() -> bool:
    try:
        import neuralop  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_run_writes_results_predictions_and_a_model_that_auto_loads(tiny_runs) -> None:
    import transformers_mano  # noqa: F401  registers every model class of the package, the baselines too

    _, runs = tiny_runs
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        assert results["epochs"] == 3 and results["train_resolution"] == 8 and results["num_validation"] == 4
        assert set(results["test"]) == {"8", "16"} and results["parameters"] > 0 and results["flops_per_sample"] > 0
        saved = np.load(run / "predictions_16.npz")
        assert saved["prediction"].shape == saved["solution"].shape == saved["coefficient"].shape == (2, 16, 16)
        model = AutoModel.from_pretrained(run).eval()
        assert count_parameters(model) == results["parameters"]
        with torch.no_grad():
            predictions = model(torch.from_numpy(saved["coefficient"])[..., None]).predictions[..., 0]
        # the same model on the same inputs, batched differently (50 there, 2 here): float32 rounding only, a few
        # ulps through one block of width 8 (~1e-6 relative at most); barely trained predictions can be as small
        # as 1e-3, where atol 1e-6 still leaves a wrong model (off by its whole output) far outside
        np.testing.assert_allclose(predictions.numpy(), saved["prediction"], rtol=1e-5, atol=1e-6)
        # the two saved samples are the whole test set: their errors are the reported ones (errors of order 0.1
        # computed from float32 predictions that agree to 1e-6: 1e-4 relative is far above the rounding)
        recomputed = relative_errors(predictions.numpy(), saved["solution"])
        for metric in ("relative_mse", "relative_l2"):
            assert recomputed[metric] == pytest.approx(results["test"]["16"][metric], rel=1e-4), metric
    assert isinstance(AutoModel.from_pretrained(runs[0]), ManoOperatorModel)


def test_training_lowers_the_validation_error(tiny_runs) -> None:
    _, runs = tiny_runs
    for run in runs:
        history = json.loads((run / "results.json").read_text())["history"]
        validation = [entry["eval_relative_l2"] for entry in history if "eval_relative_l2" in entry]
        assert len(validation) == 3 and validation[-1] < validation[0], (run.name, validation)


@pytest.mark.parametrize("model", ["vit", "fno"])
def test_baselines_match_the_benchmark_mano_within_ten_percent(model: str) -> None:
    if model == "fno":
        pytest.importorskip("neuralop")
    mano = count_parameters(build_operator(DarcyModelArguments(model="mano")))
    baseline = count_parameters(build_operator(DarcyModelArguments(model=model)))
    assert abs(baseline - mano) / mano < 0.1


class WrittenOutVit(VitOperatorModel):
    """The ViT baseline with its initialisation written out here: what `FieldOperatorPreTrainedModel` must give."""

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def test_vit_baseline_initialises_by_its_rule() -> None:
    """Same seed, same weights as the rule written out (truncated normal Linear weights at `initializer_range`, zero
    biases, LayerNorm ones and zeros), bit for bit."""
    config = VitOperatorConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, initializer_range=1.0)
    torch.manual_seed(0)
    model = VitOperatorModel(config)
    torch.manual_seed(0)
    reference = WrittenOutVit(config)
    weights, expected = model.state_dict(), reference.state_dict()
    assert list(weights) == list(expected)
    assert all(torch.equal(weights[key], expected[key]) for key in weights)
    # the rule did run: a normal of std 1 cut at +-2 has std 0.88; torch's default, uniform within 1/sqrt(8), 0.20
    assert model.blocks[0].qkv.weight.std() > 0.5


def test_fno_baseline_keeps_neuraloperators_initialisation() -> None:
    """The shared `_init_weights` adds nothing to FNO: same seed, the weights of neuraloperator's FNO built alone."""
    pytest.importorskip("neuralop")
    from neuralop.models import FNO

    torch.manual_seed(0)
    model = FnoOperatorModel(FnoOperatorConfig(hidden_channels=8, num_modes=4, num_hidden_layers=2))
    torch.manual_seed(0)
    reference = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    weights, expected = dict(model.fno.named_parameters()), dict(reference.named_parameters())
    assert list(weights) == list(expected)
    assert all(torch.equal(weights[key], expected[key]) for key in weights)


@pytest.mark.parametrize("model", ["mano", "fno"])
def test_resume_from_checkpoint_matches_an_uninterrupted_run(model: str, tmp_path: Path) -> None:
    if model == "fno":
        pytest.importorskip("neuralop")  # complex weights and their optimizer state go through the checkpoint too
    # 8 training samples in batches of 4: 2 steps per epoch, 6 in all; stopped after step 3, in the second epoch
    common = [
        *TINY_RUN,
        "--model",
        model,
        "--cache_dir",
        str(tmp_path / "cache"),
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--logging_strategy",
        "steps",
        "--logging_steps",
        "1",
    ]
    full = train_main([*common, "--output_dir", str(tmp_path / "full")])
    cut = [*common, "--output_dir", str(tmp_path / "cut")]
    run_darcy(*parse_arguments(cut), callbacks=[StopAtStep(3)])
    assert (tmp_path / "cut" / "checkpoint-3").is_dir()
    resumed = train_main([*cut, "--resume_from_checkpoint", "last"])

    def losses(results: dict) -> list[float]:
        return [entry["loss"] for entry in results["history"] if "loss" in entry and entry["step"] > 3]

    # Weights, optimizer state, schedule and data order are restored exactly; what remains is float32 rounding of
    # reductions split differently across threads (~1e-7 relative per step over 3 steps): 1e-5 is far above it,
    # and a skipped or repeated batch changes these losses by 1e-2 or more.
    assert len(losses(resumed)) == 3 and losses(resumed) == pytest.approx(losses(full), rel=1e-5)
    for resolution in ("8", "16"):
        assert resumed["test"][resolution]["relative_mse"] == pytest.approx(
            full["test"][resolution]["relative_mse"], rel=1e-5
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_torchrun_trains_one_model(tmp_path: Path) -> None:
    common = [
        *TINY_RUN,
        "--model",
        "mano",
        "--cache_dir",
        str(tmp_path / "cache"),
        "--max_steps",
        "2",
        "--logging_strategy",
        "steps",
        "--logging_steps",
        "1",
        "--use_cpu",
        "true",
    ]
    one = train_main([*common, "--output_dir", str(tmp_path / "one")])  # also caches the data for the two processes
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_darcy.py"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(script),
        *common,
        "--per_device_train_batch_size",
        "2",
        "--output_dir",
        str(tmp_path / "two"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "find_unused_parameters" not in completed.stderr  # DDP is told that every parameter gets a gradient
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    # The same global batch of 4 (4 on one process, 2 + 2 on two, in the same order): the same first loss, the mean
    # relative L2 of the same samples (float32 means of 4 or of 2 + 2 terms: ~1e-7 apart); a loss that was not
    # averaged across the processes would be that of 2 samples only.
    first = [next(e["loss"] for e in results["history"] if "loss" in e) for results in (one, two)]
    assert first[1] == pytest.approx(first[0], rel=1e-4)
    assert two["test"]["16"]["num_samples"] == 2 and (tmp_path / "two" / "predictions_16.npz").is_file()


def test_the_script_runner_ends_the_process_group_of_a_launch(tmp_path: Path) -> None:
    """`run_main` destroys the process group a torchrun launch made (Trainer leaves it to the interpreter's exit,
    where its threads may abort a finished run), after a run and after a bug alike."""
    import torch.distributed as dist

    from transformers_mano.utils.cli import run_main

    def bug(argv: list[str]) -> None:
        raise ZeroDivisionError("a bug, not a user error")

    try:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'first'}", rank=0, world_size=1)
        assert run_main(lambda argv: None, []) == 0 and not dist.is_initialized()
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'second'}", rank=0, world_size=1)
        with pytest.raises(ZeroDivisionError):
            run_main(bug, [])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_the_script_reports_a_user_error_in_one_line(tmp_path: Path) -> None:
    """An unknown data set prints one line that names it and writes nothing; --traceback brings the traceback."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_darcy.py"
    command = [sys.executable, str(script), "--data", "no_such_data", "--output_dir", str(tmp_path / "run")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    errors = [line for line in plain.stderr.splitlines() if line.startswith("error:")]
    assert plain.returncode == 1 and "Traceback" not in plain.stderr, plain.stderr[-2000:]
    assert len(errors) == 1 and "no_such_data" in errors[0] and "--traceback" in errors[0]
    assert not (tmp_path / "run").exists()
    debug = subprocess.run(
        [*command, "--traceback"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_existing_output_is_refused_without_overwrite(tiny_runs, tmp_path: Path) -> None:
    root, runs = tiny_runs
    run = shutil.copytree(runs[0], tmp_path / "mano")
    before = (run / "results.json").read_text()
    args = [
        *TINY_RUN,
        "--model",
        "mano",
        "--output_dir",
        str(run),
        "--cache_dir",
        str(root / "cache"),
        "--num_train_epochs",
        "1",
    ]
    with pytest.raises(OutputExistsError, match="--overwrite_output_dir"):
        train_main(args)
    assert (run / "results.json").read_text() == before
    assert train_main([*args, "--overwrite_output_dir", "true"])["epochs"] == 1
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary files left


def test_comparison_tables_and_figure(tiny_runs, tmp_path: Path) -> None:
    _, runs = tiny_runs
    results = load_results(runs)
    lines = comparison_table(results).splitlines()
    assert "rel MSE @8" in lines[0] and "rel MSE @16" in lines[0] and len(lines) == 2 + len(runs)
    assert lines[2].startswith("| mano | mano |")
    seed = results[0]["seed"]
    pooled = seed_table(results + [dict(results[0], seed=seed + 1, run_dir="other")]).splitlines()
    assert len(pooled) == 2 + len(runs) and f"| {seed},{seed + 1} |" in pooled[2]  # two MANO seeds, one row
    figure = plot_comparison(results, tmp_path / "compare.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OutputExistsError):
        plot_comparison(results, figure)


def test_learning_rate_is_chosen_on_validation_only() -> None:
    def run(model, lr, validation, test):
        return {
            "model": model,
            "learning_rate": lr,
            "validation": {"relative_mse": validation},
            "test": {"16": {"relative_mse": test}},
        }

    runs = [run("mano", 1e-3, 0.02, 0.01), run("mano", 3e-3, 0.01, 0.05), run("fno", 1e-3, 0.03, 0.03)]
    assert best_learning_rates(runs) == {"mano": 3e-3, "fno": 1e-3}


def test_sweep_runs_picks_and_resumes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_args = " ".join([*TINY_RUN, "--cache_dir", str(cache), "--num_train_epochs", "1"])
    args = SweepArguments(
        output_dir=str(tmp_path / "sweep"),
        models=["vit"],
        learning_rates=[1e-3, 1e-2],
        seeds=[0, 1],
        jobs=2,
        run_args=run_args,
    )
    summary = run_protocol(args)
    assert len(summary["runs"]) == 3 and len(summary["selected_runs"]) == 2
    first_seed = {
        lr: json.loads((tmp_path / "sweep" / f"vit-lr{lr:g}-s0" / "results.json").read_text()) for lr in (1e-3, 1e-2)
    }
    best = min(first_seed, key=lambda lr: first_seed[lr]["validation"]["relative_mse"])
    assert summary["chosen_learning_rates"]["vit"] == best
    assert (tmp_path / "sweep" / f"vit-lr{best:g}-s1" / "results.json").exists()  # the second seed at that rate
    chosen_table = (tmp_path / "sweep" / "summary.md").read_text().split("## Every run")[0]
    assert chosen_table.count("| vit |") == 1 and "| 0,1 |" in chosen_table  # both seeds pooled in one row
    finished = {path: path.stat().st_mtime_ns for path in (tmp_path / "sweep").glob("*/results.json")}
    run_protocol(args)  # nothing left to run: the finished runs are kept as they are
    assert {path: path.stat().st_mtime_ns for path in finished} == finished


def test_runs_are_evaluated_again_with_sub_grid_inference(tiny_runs, tmp_path: Path) -> None:
    root, runs = tiny_runs
    mano, vit = (shutil.copytree(run, tmp_path / run.name) for run in runs[:2])
    args = EvaluationArguments(run_dirs=[str(mano)], native_resolution=8, cache_dir=str(root / "cache"), tag="n8")
    evaluation = evaluate_run(mano, args)
    results = json.loads((mano / "results.json").read_text())
    # at the training resolution nothing changes (float32, batched differently)
    assert evaluation["test"]["8"]["relative_mse"] == pytest.approx(results["test"]["8"]["relative_mse"], rel=1e-5)
    # at 16 the saved model runs with native_resolution 8 (its sub-grid semantics: test_operator.py)
    model = AutoModel.from_pretrained(mano, native_resolution=8).eval()
    inputs, targets = as_tensors(load_generated_darcy(8, (8, 16), 8, 2, cache_dir=root / "cache")["test_16"])
    with torch.no_grad():
        expected = relative_errors(model(inputs).predictions.numpy(), targets.numpy())["relative_mse"]
    assert evaluation["test"]["16"]["relative_mse"] == pytest.approx(expected, rel=1e-5)
    phases = evaluation["test"]["16"]["sub_grid_relative_mse"]
    with torch.no_grad():
        predictions = model(inputs).predictions
    phase = relative_errors(predictions[:, 1::2, ::2].numpy(), targets[:, 1::2, ::2].numpy())["relative_mse"]
    assert set(phases) == {"0,0", "0,1", "1,0", "1,1"} and phases["1,0"] == pytest.approx(phase, rel=1e-5)
    assert json.loads((mano / "evaluation-n8.json").read_text())["native_resolution"] == 8
    saved = np.load(mano / "predictions_16-n8.npz")
    with torch.no_grad():
        np.testing.assert_allclose(
            saved["prediction"], model(inputs[:2]).predictions[..., 0].numpy(), rtol=1e-5, atol=1e-6
        )
    tagged = load_results([mano, vit], tag="n8")  # MANO's metrics from the evaluation, ViT's own
    assert tagged[0]["test"] == evaluation["test"] and [run["evaluation"] for run in tagged] == ["n8", None]
    assert "| n8 |" in seed_table(tagged) and "| direct |" in seed_table(tagged)
    figure = plot_comparison(tagged, tmp_path / "tagged.png", tag="n8")
    assert figure.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(OutputExistsError):
        evaluate_run(mano, args)
    with pytest.raises(ValueError, match="applies to MANO operators"):
        evaluate_run(vit, EvaluationArguments(run_dirs=[str(vit)], native_resolution=8, cache_dir=str(root / "cache")))


def test_mano_runs_are_evaluated_again_with_a_pinned_level_count(tiny_runs, tmp_path: Path) -> None:
    root, runs = tiny_runs
    mano, vit = (shutil.copytree(run, tmp_path / run.name) for run in runs[:2])
    args = EvaluationArguments(run_dirs=[str(mano)], num_levels=2, cache_dir=str(root / "cache"), tag="l2")
    evaluation = evaluate_run(mano, args)
    model = AutoModel.from_pretrained(mano, num_levels=2).eval()
    assert model.config.levels_for(16, 16) == 2 != AutoModel.from_pretrained(mano).config.levels_for(16, 16)
    inputs, targets = as_tensors(load_generated_darcy(8, (8, 16), 8, 2, cache_dir=root / "cache")["test_16"])
    with torch.no_grad():
        expected = relative_errors(model(inputs).predictions.numpy(), targets.numpy())["relative_mse"]
    # the same float32 model on the same inputs in one batch each: only summation order may differ
    assert evaluation["test"]["16"]["relative_mse"] == pytest.approx(expected, rel=1e-5)
    # and it is not the saved level count: the predictions move by far more than float32 rounding (6e-8 relative)
    pinned, saved = (np.load(mano / name)["prediction"] for name in ("predictions_16-l2.npz", "predictions_16.npz"))
    assert np.abs(pinned - saved).max() > 1e-5 * np.abs(saved).max()
    assert json.loads((mano / "evaluation-l2.json").read_text())["num_levels"] == 2
    with pytest.raises(ValueError, match="--num_levels applies to MANO operators"):
        evaluate_run(vit, EvaluationArguments(run_dirs=[str(vit)], num_levels=2, cache_dir=str(root / "cache")))


def test_a_mano_run_keeps_its_attention_at_the_training_grid(tiny_runs, tmp_path: Path) -> None:
    """The saved config holds the training side and the data's grid layout, so the reloaded model resamples on the
    16 x 16 test grid with no option; `--attention_resolution none` evaluates it as runs before the option did."""
    root, runs = tiny_runs
    mano = shutil.copytree(runs[0], tmp_path / "mano")
    config = AutoModel.from_pretrained(mano).config
    assert (config.attention_resolution, config.grid_layout) == (8, "corners")  # generated data: both ends
    args = EvaluationArguments(
        run_dirs=[str(mano)], attention_resolution="none", cache_dir=str(root / "cache"), tag="direct"
    )
    evaluation = evaluate_run(mano, args)
    results = json.loads((mano / "results.json").read_text())
    assert evaluation["attention_resolution"] is None
    # at the training side the option changes nothing (float32, batched differently)...
    assert evaluation["test"]["8"]["relative_mse"] == pytest.approx(results["test"]["8"]["relative_mse"], rel=1e-5)
    # ...and at 16 the model run as given is another model (far more than float32 rounding, 6e-8 relative)
    direct, saved = (
        np.load(mano / name)["prediction"] for name in ("predictions_16-direct.npz", "predictions_16.npz")
    )
    assert np.abs(direct - saved).max() > 1e-4 * np.abs(saved).max()
    with pytest.raises(ValueError, match="attention_resolution"):
        evaluate_run(mano, EvaluationArguments(run_dirs=[str(mano)], attention_resolution="train", tag="x"))
    # validation data at every side from another generator seed, and the restriction replaced: 16 is not nested
    # over 8 under "corners" (15 would be), so sampling the nearest point and interpolating linearly differ
    other = {
        restriction: evaluate_run(
            mano,
            EvaluationArguments(
                run_dirs=[str(mano)],
                dataset_seed=1,
                attention_restriction=restriction,
                cache_dir=str(root / "cache"),
                tag=f"val-{restriction}",
            ),
        )
        for restriction in ("sample", "linear")
    }
    assert other["sample"]["dataset_seed"] == 1 and other["linear"]["attention_restriction"] == "linear"
    assert other["sample"]["test"]["8"]["relative_mse"] != pytest.approx(
        results["test"]["8"]["relative_mse"], rel=1e-3
    )
    assert other["sample"]["test"]["8"] == other["linear"]["test"]["8"]  # the trained side: no resampling
    assert other["sample"]["test"]["16"]["relative_mse"] != other["linear"]["test"]["16"]["relative_mse"]
    # the update's way back replaced too: saved runs take "consistent"; "nominal" differs on 16 (not nested), not on 8
    nominal = evaluate_run(
        mano,
        EvaluationArguments(
            run_dirs=[str(mano)],
            dataset_seed=1,
            attention_prolongation="nominal",
            cache_dir=str(root / "cache"),
            tag="val-nominal",
        ),
    )
    assert other["sample"]["attention_prolongation"] == "consistent" and nominal["attention_prolongation"] == "nominal"
    assert nominal["test"]["8"] == other["sample"]["test"]["8"]
    assert nominal["test"]["16"]["relative_mse"] != other["sample"]["test"]["16"]["relative_mse"]
    assert [darcy.grid_layout_of(name) for name in ("neuralop_darcy_16", "b.hdf5", "grf_darcy_32", str(tmp_path))] == [
        "strided",
        "strided",
        "corners",
        "corners",
    ]


def test_strided_upsampling_is_linear_between_the_sub_grid_points_and_constant_past_the_last() -> None:
    coarse = torch.randn(2, 4, 4, 3, dtype=torch.float64)
    fine = upsample_strided(coarse, 2)
    assert fine.shape == (2, 8, 8, 3) and torch.equal(fine[:, ::2, ::2], coarse)  # the sub-grid points themselves
    torch.testing.assert_close(fine[:, 1:7:2, ::2], (coarse[:, :-1] + coarse[:, 1:]) / 2)  # midpoints, exact halves
    assert torch.equal(fine[:, 7], fine[:, 6]) and torch.equal(fine[:, :, 7], fine[:, :, 6])
    ramp = torch.arange(4, dtype=torch.float64)[:, None] * 3 + torch.arange(4, dtype=torch.float64)  # linear field
    torch.testing.assert_close(
        upsample_strided(ramp[None, ..., None], 4)[0, :13, :13, 0],
        torch.arange(13.0, dtype=torch.float64)[:, None] * 0.75 + torch.arange(13.0, dtype=torch.float64) * 0.25,
        rtol=0,
        atol=1e-12,
    )  # float64 sums of a few terms of order 10


def test_any_run_is_evaluated_at_its_trained_spacing_and_interpolated(tiny_runs, tmp_path: Path) -> None:
    root, runs = tiny_runs
    vit = shutil.copytree(runs[1], tmp_path / runs[1].name)
    args = EvaluationArguments(run_dirs=[str(vit)], interpolate_from=8, cache_dir=str(root / "cache"), tag="i8")
    evaluation = evaluate_run(vit, args)
    model = AutoModel.from_pretrained(vit).eval()
    inputs, targets = as_tensors(load_generated_darcy(8, (8, 16), 8, 2, cache_dir=root / "cache")["test_16"])
    with torch.no_grad():
        expected = upsample_strided(model(inputs[:, ::2, ::2]).predictions, 2)
    # one model on the same 8x8 inputs, batched as in the evaluation: float32 arithmetic repeated exactly
    expected_mse = relative_errors(expected.numpy(), targets.numpy())["relative_mse"]
    assert evaluation["test"]["16"]["relative_mse"] == pytest.approx(expected_mse, rel=1e-6)
    assert evaluation["interpolate_from"] == 8
    with pytest.raises(ValueError, match="pass one"):
        evaluate_run(vit, EvaluationArguments(run_dirs=[str(vit)], interpolate_from=8, native_resolution=8))


def test_step_times_of_the_three_operators_side_by_side() -> None:
    from experiments.speed.darcy_step import measure_step_times
    from transformers_mano.models.mano_operator.modeling_mano_operator import ManoOperatorWindowAttention

    forward = ManoOperatorWindowAttention.forward
    tiny = DarcyModelArguments(hidden_size=8, num_layers=1, num_heads=2)
    results = measure_step_times(batch_size=2, resolution=8, repeats=2, warmup=1, model_args=tiny)
    assert set(results["median_ms"]) == {"mano", "fno", "vit", "mano-projections-only", "mano-tiled"}
    assert all(value > 0 for value in results["median_ms"].values())
    assert set(results["ratios"]) == {"mano/fno", "mano/vit", "mano/mano-projections-only", "mano/mano-tiled"}
    for name in ("mano", "fno", "vit"):  # the models timed are those train_darcy.py builds
        built = build_operator(DarcyModelArguments(**{**vars(tiny), "model": name}))
        assert results["models"][name]["parameters"] == count_parameters(built)
    assert ManoOperatorWindowAttention.forward is forward  # the floor's stand-in is gone again


def test_the_step_time_floor_keeps_the_projections_and_drops_the_attention() -> None:
    from experiments.speed.darcy_step import projections_only
    from transformers_mano.models.mano_operator.modeling_mano_operator import ManoOperatorWindowAttention

    torch.manual_seed(0)
    attention = ManoOperatorWindowAttention(ManoOperatorConfig(hidden_size=8, num_attention_heads=2, head_dim=4))
    grid = torch.randn(1, 6, 6, 8)
    with torch.no_grad(), projections_only():
        (floor,) = attention([grid])
    value = attention.qkv(attention.norm(grid)).chunk(3, dim=-1)[2]
    with torch.no_grad():
        torch.testing.assert_close(floor, attention.proj(value))  # the same float32 ops in the same order
        assert not torch.allclose(attention([grid])[0], floor)  # outside the block: real window attention


@pytest.mark.parametrize(
    "overrides, message",
    [({"attention_resolution": "train-ish"}, "--attention_resolution"), ({"grid_layout": "cells"}, "--grid_layout")],
)
def test_bad_grid_options_name_the_option(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        DarcyModelArguments(**overrides)
    assert DarcyModelArguments(attention_resolution="none").attention_side(16) is None
    assert (
        DarcyModelArguments().attention_side(16)
        == 16
        == DarcyModelArguments(attention_resolution="16").attention_side(32)
    )
