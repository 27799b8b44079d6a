"""Pathfinder images as normalised tensors in memory, and the dihedral augmentation.

Any saved image `DatasetDict` with train, validation and test splits serves (`scripts/make_pathfinder.py` writes
them), and so do the offline digit sets of the fine-tuning script ("digits", "mnist_5k").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk

from transformers_mano.image_classification.data import EMBEDDED_DATASET, MNIST_5K, load_image_classification_splits


@dataclass
class Splits:
    """Normalised images (N, 1, H, W) float32 and labels (N,) int64 per split."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    normalization: tuple[float, float] = (0.0, 1.0)  # the (mean, std) the images were normalised with

    @property
    def image_size(self) -> int:
        return int(self.images["train"].shape[-1])

    @property
    def num_labels(self) -> int:
        return int(self.labels["train"].max()) + 1


def open_image_splits(source: str | Path) -> DatasetDict:
    """A `save_to_disk` folder (e.g. of `scripts/make_pathfinder.py`), or an offline preset of the fine-tuning
    script ("digits", "mnist_5k": 32 px, a validation split carved from train as that script does)."""
    if str(source) in (EMBEDDED_DATASET, MNIST_5K):
        return load_image_classification_splits(dataset=str(source))
    data = load_from_disk(str(source))
    if not isinstance(data, DatasetDict) or not {"train", "validation", "test"} <= set(data):
        raise ValueError(f"{source} must hold a DatasetDict with train, validation and test splits")
    return data


def load_splits(
    data_dir: str | Path, train_samples: int | None = None, normalization: tuple[float, float] | None = None
) -> Splits:
    """A data set of `open_image_splits` as tensors, normalised by the training set's mean and deviation (or by a
    given `(mean, std)`, such as the task's for the easier set of a curriculum)."""
    data = open_image_splits(data_dir)
    images, labels = {}, {}
    for split in ("train", "validation", "test"):
        rows = data[split] if split != "train" or train_samples is None else data[split].select(range(train_samples))
        pixels = np.stack([np.asarray(image.convert("L"), dtype=np.float32) for image in rows["image"]])
        images[split] = torch.from_numpy(pixels / 255.0).unsqueeze(1)  # N, 1, H, W
        labels[split] = torch.tensor(rows["label"], dtype=torch.long)
    mean, std = normalization or (float(images["train"].mean()), float(images["train"].std()))
    return Splits({split: (value - mean) / std for split, value in images.items()}, labels, (mean, std))


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (square) image under a random element of the dihedral group: flip x, flip y, transpose, each 50 %."""
    flips = torch.rand(3, images.shape[0], 1, 1, 1, generator=generator) < 0.5
    images = torch.where(flips[0], images.flip(-1), images)
    images = torch.where(flips[1], images.flip(-2), images)
    return torch.where(flips[2], images.transpose(-1, -2), images)


__all__ = ["Splits", "dihedral", "load_splits", "open_image_splits"]
