"""How far each model sees, and how far the curves reach: receptive fields measured by gradient, spans from the data.

A model whose receptive field is smaller than the distance between a curve's two ends cannot tell connected markers
from disconnected ones by looking: Pathfinder at 128 px is built so that the curves outgrow windowed attention's field.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from datasets import load_from_disk
from torch import nn

from .models import TransformerClassifier


def last_feature_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images -> the last features before pooling, (B, h, w, C'): a transformer's last-stage tokens,
    a CNN's last convolution's map."""
    if isinstance(model, TransformerClassifier):
        return model.token_features(images)
    return model.features(images).permute(0, 2, 3, 1)


def receptive_extent(model: nn.Module, image_size: int, in_channels: int = 1) -> int:
    """The side (px) of the smallest box holding every input pixel whose change moves the central feature of the
    last feature map: the model's receptive field, measured by the gradient (exact zeros outside it).

    The model is run in eval mode on a float64 copy (batch norm from its running statistics: no coupling through
    the batch) with positive random pixels (zeros would close every ReLU along the paths).
    """
    model = copy.deepcopy(model).eval().double()  # float64: a gradient inside the field does not round to zero
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, in_channels, image_size, image_size, generator=generator, dtype=torch.float64)
    features = last_feature_map(model, images.requires_grad_(True))  # 1, h, w, C'
    # a random direction in feature space: the plain sum of a layer-normed token is zero whatever the input
    direction = torch.randn(features.shape[-1], generator=generator, dtype=torch.float64)
    (features[0, features.shape[1] // 2, features.shape[2] // 2] @ direction).backward()
    rows, columns = (images.grad[0].abs().amax(0) > 0).nonzero().unbind(1)
    return int(max(rows.max() - rows.min(), columns.max() - columns.min())) + 1


def curve_spans(data_dir: str | Path, split: str = "train") -> dict[str, float]:
    """The end-to-end spans (px) of the connecting curves of a Pathfinder folder: the marker distance of its
    connected images (label 1), as the median, the 90th percentile and the largest."""
    rows = load_from_disk(str(data_dir))[split]
    labels = np.asarray(rows["label"])
    distances = np.asarray(rows["marker_distance"], dtype=np.float64)[labels == 1]
    return {
        "median": float(np.median(distances)),
        "p90": float(np.percentile(distances, 90)),
        "max": float(distances.max()),
    }


def reach_table(
    data_dirs: list[str | Path], kinds: tuple[str, ...] = ("swinv2", "cnn", "cnn-pooled", "mano-gated")
) -> str:
    """A markdown table, one row per data folder: the curves' end-to-end spans against each model's receptive field
    (px) at that image size, under the default recipe (the fields depend on the architecture, not on the weights)."""
    from .data import open_image_splits
    from .models import build_model
    from .training import PathfinderRecipe

    recipe = PathfinderRecipe()
    header = ["px", "curve span: median", "90th percentile", "largest", *(f"field of {kind}" for kind in kinds)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for data_dir in data_dirs:
        size = open_image_splits(data_dir)["test"][0]["image"].size[0]
        spans = curve_spans(data_dir)
        fields = [receptive_extent(build_model(kind, recipe, size), size) for kind in kinds]
        cells = [str(size), *(f"{spans[key]:.1f}" for key in ("median", "p90", "max")), *map(str, fields)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["curve_spans", "last_feature_map", "reach_table", "receptive_extent"]
