"""Image transforms for classification, written with PIL, numpy and torch (the project must not need torchvision).

Training: random resized crop, horizontal flip, normalise, with the size, statistics and interpolation of the
model's image processor. Random draws come from a generator seeded by (seed, epoch, sample index), so an example is
augmented the same way whatever the process count, the dataloader workers, or whether the run was resumed.
Evaluation: the model's image processor itself, the one saved beside the model, so that the reported metrics are
those of the published folder (`pipeline("image-classification", model=...)` preprocesses the same way).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data import IMAGE_COLUMN, LABEL_COLUMN


SAMPLE_INDEX_COLUMN = "sample_index"

# Modes whose pixels are not 8-bit: converting them to RGB would clip or rescale silently.
_UNSUPPORTED_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from any 8-bit PIL image or (H, W) / (H, W, C) uint8 array.

    Greyscale and palette images are replicated to three channels; images with transparency (RGBA, LA, PA, P with
    a transparent colour) are composited over white, so transparent pixels do not turn into arbitrary colours.

    Raises:
        ValueError: for 16-bit or floating-point images, which need an explicit conversion to 8 bits.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"Image arrays must be uint8, got {image.dtype}; convert them to 8-bit images first")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"Expected a PIL image or a uint8 array, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    if image.mode in _UNSUPPORTED_MODES:
        raise ValueError(
            f"Image mode {image.mode!r} (16-bit or floating point) is not supported; convert the images to 8-bit "
            "greyscale or RGB first"
        )
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) crop covering a random fraction `scale` of the area with aspect in `ratio`.

    The aspect ratio is drawn log-uniformly. After `attempts` draws that do not fit, falls back to the largest
    centred crop whose aspect ratio lies within `ratio`.
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left = int(rng.integers(0, width - crop_w + 1))
            top = int(rng.integers(0, height - crop_h + 1))
            return left, top, left + crop_w, top + crop_h
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        crop_w, crop_h = int(round(height * ratio[1])), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


class AugmentingTransform:
    """Training batch transform for `datasets.Dataset.with_transform`: augmented images to `pixel_values`.

    Random resized crop and horizontal flip to the model's size (with the image processor's interpolation); the
    image processor then turns the crops into pixel values (its rescaling and normalisation, resizing and cropping
    off), so training sees pixels prepared as evaluation's are.

    Args:
        image_processor: the model's image processor.
        seed: base seed of the per-example random draws.
        scale, ratio: random resized crop ranges (fraction of the area, aspect ratio).
        hflip_probability: probability of a horizontal flip.
    """

    def __init__(
        self,
        image_processor,
        seed: int = 0,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_probability: float = 0.5,
    ) -> None:
        self.image_processor = image_processor
        self.size = processor_size(image_processor)
        self.resample = Image.Resampling(int(getattr(image_processor, "resample", Image.Resampling.BICUBIC)))
        self.seed = seed
        self.scale = scale
        self.ratio = ratio
        self.hflip_probability = hflip_probability
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh augmentation of every example in each epoch."""
        self.epoch = epoch

    def augment(self, image: Image.Image, index: int) -> Image.Image:
        """Random resized crop then horizontal flip of one RGB image, seeded by (seed, epoch, index)."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        box = random_resized_crop_box(image.width, image.height, rng, self.scale, self.ratio)
        image = image.resize((self.size[1], self.size[0]), self.resample, box=box)
        if rng.uniform() < self.hflip_probability:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        indices = batch.get(SAMPLE_INDEX_COLUMN)
        if indices is None:
            raise ValueError(f"Training transforms need the {SAMPLE_INDEX_COLUMN!r} column (see add_sample_index)")
        images = [self.augment(to_rgb(image), index) for image, index in zip(batch[IMAGE_COLUMN], indices)]
        pixel_values = self.image_processor(images=images, do_resize=False, do_center_crop=False, return_tensors="pt")
        return {"pixel_values": list(pixel_values["pixel_values"]), LABEL_COLUMN: batch[LABEL_COLUMN]}


def processor_size(image_processor) -> tuple[int, int]:
    """(height, width) the image processor produces: its crop size where it crops, else its resize size."""
    cropped = getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None)
    size = dict(image_processor.crop_size if cropped else image_processor.size)
    if size.get("height") and size.get("width"):
        return size["height"], size["width"]
    if size.get("shortest_edge"):
        return size["shortest_edge"], size["shortest_edge"]
    raise ValueError(f"Cannot read an output size from the image processor's size {size}")


class ProcessorTransform:
    """Evaluation batch transform: the image processor's own preprocessing of RGB images, labels passed through."""

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        images = [to_rgb(image) for image in batch[IMAGE_COLUMN]]
        pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": list(pixel_values), LABEL_COLUMN: batch[LABEL_COLUMN]}


def add_sample_index(dataset: Any) -> Any:
    """A copy of `dataset` with a `sample_index` column (0..N-1) that seeds each example's augmentation."""
    return dataset.add_column(SAMPLE_INDEX_COLUMN, list(range(len(dataset))))


def collate_image_classification(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack transformed examples into `pixel_values` (B, 3, H, W) and `labels` (B,)."""
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example[LABEL_COLUMN] for example in examples], dtype=torch.long),
    }


__all__ = [
    "SAMPLE_INDEX_COLUMN",
    "AugmentingTransform",
    "ProcessorTransform",
    "add_sample_index",
    "collate_image_classification",
    "processor_size",
    "random_resized_crop_box",
    "to_rgb",
]
