"""Fine-tuning MANO (and SwinV2 baselines) for image classification with `Trainer`.

`scripts/run_image_classification.py` is a thin wrapper over `run.main`. The pieces are importable for tests and
notebooks: data presets and loaders (`data`), transforms without torchvision (`transforms`), training modes
(`freezing`), the offline top-k accuracy metric (`evaluation`) and the argument dataclasses (`arguments`).
"""

from .arguments import DataTrainingArguments, ImageClassificationTrainingArguments, ModelArguments
from .data import DATASET_PRESETS, DatasetPreset, load_digits_dataset, load_image_classification_splits, resolve_preset
from .evaluation import TOP_K_ACCURACY_PATH, build_compute_metrics, load_top_k_accuracy
from .freezing import TRAIN_MODES, ProjectorWarmupCallback, apply_train_mode, trainable_parameter_names
from .run import main, parse_arguments, run_image_classification
from .transforms import AugmentingTransform, ProcessorTransform, to_rgb


__all__ = [
    "DATASET_PRESETS",
    "TOP_K_ACCURACY_PATH",
    "TRAIN_MODES",
    "DataTrainingArguments",
    "DatasetPreset",
    "ImageClassificationTrainingArguments",
    "AugmentingTransform",
    "ModelArguments",
    "ProcessorTransform",
    "ProjectorWarmupCallback",
    "apply_train_mode",
    "build_compute_metrics",
    "load_digits_dataset",
    "load_image_classification_splits",
    "load_top_k_accuracy",
    "main",
    "parse_arguments",
    "resolve_preset",
    "run_image_classification",
    "to_rgb",
    "trainable_parameter_names",
]
