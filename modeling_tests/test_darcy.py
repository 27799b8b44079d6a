"""Darcy data (generator, neuraloperator files, caching) and the training / comparison pipeline, on tiny data."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from transformers_mano import ManoOperatorModel
from transformers_mano import darcy
from transformers_mano.darcy import (
    as_tensors,
    generate_darcy,
    load_darcy,
    load_generated_darcy,
    load_neuralop_darcy,
    sample_gaussian_random_field,
    solve_darcy,
    split_resolutions,
    threshold_coefficient,
)
from transformers_mano.darcy_benchmark import (
    DarcyRunArguments,
    build_operator,
    comparison_table,
    count_parameters,
    load_operator,
    load_results,
    lr_at,
    plot_comparison,
    predict,
    run_darcy,
)


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
    for name, count, side in (("darcy_train_16", num_train, 16), ("darcy_test_16", num_test, 16),
                              ("darcy_test_32", num_test, 32)):  # fmt: skip
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
    kwargs = dict(train_resolution=8, test_resolutions=(8, 12), num_train=3, num_test=2, refine=1, cache_dir=tmp_path)
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
    with pytest.raises(ValueError, match="grf_darcy_<resolution>"):
        load_darcy("darcy_64")


def test_schedule_warms_up_then_decays_to_zero() -> None:
    assert lr_at(0, 100, 10) == pytest.approx(0.1) and lr_at(9, 100, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 10) == pytest.approx(1.0) and lr_at(100, 100, 10) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """MANO and ViT trained for two epochs on 8 generated samples at 8x8, tested at 8 and 16."""
    root = tmp_path_factory.mktemp("runs")
    common = dict(data="grf_darcy_8", cache_dir=str(root / "cache"), num_train=8, num_test=2, epochs=2,
                  batch_size=4, hidden_size=8, num_layers=1, num_heads=2, num_saved_predictions=2)  # fmt: skip
    runs = []
    for model in ("mano", "vit"):
        output_dir = root / f"{model}8"
        run_darcy(DarcyRunArguments(model=model, output_dir=str(output_dir), **common))
        runs.append(output_dir)
    return root, runs


def test_a_run_writes_results_predictions_and_a_loadable_model(tiny_runs) -> None:
    _, (mano_dir, vit_dir) = tiny_runs
    results = json.loads((mano_dir / "results.json").read_text())
    assert results["epochs"] == 2 and len(results["history"]) == 2 and results["train_resolution"] == 8
    assert set(results["test"]) == {"8", "16"}
    assert all(0 < metrics["relative_l2"] and np.isfinite(metrics["relative_mse"]) for metrics in results["test"].values())
    saved = np.load(mano_dir / "predictions_16.npz")
    assert saved["prediction"].shape == saved["solution"].shape == saved["coefficient"].shape == (2, 16, 16)

    model = AutoModel.from_pretrained(mano_dir).eval()
    assert isinstance(model, ManoOperatorModel) and count_parameters(model) == results["parameters"]
    inputs = torch.from_numpy(saved["coefficient"])[..., None]
    with torch.no_grad():
        np.testing.assert_allclose(predict(model, inputs)[..., 0].numpy(), saved["prediction"], rtol=1e-5, atol=1e-6)
        vit = load_operator(vit_dir)
        vit_saved = np.load(vit_dir / "predictions_16.npz")
        np.testing.assert_allclose(vit(inputs)[..., 0].numpy(), vit_saved["prediction"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["vit", "fno"])
def test_baselines_match_the_benchmark_mano_within_ten_percent(model: str) -> None:
    if model == "fno":
        pytest.importorskip("neuralop")
    mano = count_parameters(build_operator(DarcyRunArguments(model="mano"))[0])
    baseline, description = build_operator(DarcyRunArguments(model=model))
    assert description["parameter_target"] == mano
    assert abs(count_parameters(baseline) - mano) / mano < 0.1


def test_existing_output_is_refused_without_overwrite(tiny_runs) -> None:
    root, (mano_dir, _) = tiny_runs
    before = (mano_dir / "results.json").read_text()
    args = DarcyRunArguments(model="mano", data="grf_darcy_8", cache_dir=str(root / "cache"), num_train=8,
                             num_test=2, epochs=1, batch_size=4, hidden_size=8, num_layers=1, num_heads=2,
                             output_dir=str(mano_dir))  # fmt: skip
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_darcy(args)
    assert (mano_dir / "results.json").read_text() == before
    args.overwrite = True
    assert run_darcy(args)["epochs"] == 1
    assert json.loads((mano_dir / "results.json").read_text())["epochs"] == 1
    assert not [path for path in root.iterdir() if path.name.startswith(".")]  # no temporary folders left


def test_comparison_table_and_figure(tiny_runs, tmp_path: Path) -> None:
    _, runs = tiny_runs
    results = load_results(runs)
    table = comparison_table(results)
    lines = table.splitlines()
    assert "rel L2 @8" in lines[0] and "rel MSE @16" in lines[0] and len(lines) == 4
    assert lines[2].startswith("| mano8 | mano |")
    figure = plot_comparison(results, tmp_path / "compare.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fno_baseline_when_neuraloperator_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("neuralop")
    from transformers_mano.baselines import FNOOperator

    model = FNOOperator(hidden_channels=8, n_modes=4, n_layers=2)
    for side in (8, 16):
        assert model(torch.rand(2, side, side, 1)).shape == (2, side, side, 1)
