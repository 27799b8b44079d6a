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


__all__ = ["curve_spans", "last_feature_map", "receptive_extent"]
