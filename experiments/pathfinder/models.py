"""The models of the Pathfinder comparison: MANO and SwinV2 behind a convolutional stem, MANO's ablations, two CNNs.

Every transformer is a transformers image classifier (`Swinv2ForImageClassification` or `ManoForImageClassification`)
behind the same stem, built from one `PathfinderRecipe`. The CNNs and the stem control live here, not in the
library: they are the baselines a user would try first.

Kinds, and what each one separates:
- `swinv2`: windowed attention alone; `mano-one-level`: the same function through MANO's code (no projectors);
- `mano`: MANO's learned projectors started closed (`up` at zero: the model is SwinV2 until `up` grows);
- `mano-gated`: the learned projectors with a per-channel gate on the far field, started closed (gate at zero, `up`
  copying): SwinV2 exactly at the first step, like `mano`, but opening along the copies;
- `mano-pool`: parameter-free projectors (average pooling, nearest copies), the far field open from the first step;
- `mano-pool-init`: the learned projectors started as that pooling (open);
- `converted`, `converted-open`, `converted-gated`: a trained SwinV2 run turned into MANO by the project's converter
  (`transformers_mano.conversion.convert_swinv2_checkpoint`) with its default start, the open start or the gated
  start; they never train from scratch;
- `cnn`, `cnn-pooled`, `cnn-stem`: the small CNN (receptive field 30 px), the same weights with a max-pool after
  every other convolution (138 px), and the transformers' stem with a linear head (the control).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import Swinv2Config, Swinv2ForImageClassification

from transformers_mano.models.mano.configuration_mano import ManoConfig
from transformers_mano.models.mano.modeling_mano import ManoForImageClassification
from transformers_mano.multipole import coarse_grid_size


if TYPE_CHECKING:
    from .training import PathfinderRecipe

# MANO kinds built from a config: (projector_type, projector_init)
MANO_STARTS: dict[str, tuple[str, str]] = {
    "mano": ("conv", "avg_pool_zero_up"),
    "mano-gated": ("gated", "avg_pool_zero_up"),
    "mano-pool": ("pool", "avg_pool_zero_up"),
    "mano-pool-init": ("conv", "avg_pool_nearest_up"),
    "mano-one-level": ("conv", "avg_pool_zero_up"),
}
# MANO converted from a trained SwinV2 run: (projector_type, projector_init) given to the converter
CONVERTED_STARTS: dict[str, tuple[str, str]] = {
    "converted": ("conv", "avg_pool_zero_up"),
    "converted-open": ("conv", "avg_pool_nearest_up"),
    "converted-gated": ("gated", "avg_pool_zero_up"),
}
CNN_KINDS = ("cnn", "cnn-pooled", "cnn-stem")
MODEL_KINDS: tuple[str, ...] = ("swinv2", *MANO_STARTS, *CONVERTED_STARTS, *CNN_KINDS)


class SmallCnn(nn.Module):
    """Nine 3x3 convolutions (batch norm, ReLU), a 2x2 max-pool after those numbered in `pool_after` (default: the
    fourth), global average, linear head.

    At 32 channels this is ~75 k parameters and a receptive field of 30 px: about a 32 px image. With
    `pool_after=(0, 2, 4, 6)` (the "cnn-pooled" kind) the same weights see 138 px, a 128 px image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        num_labels: int = 2,
        depth: int = 9,
        pool_after: Sequence[int] = (3,),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(depth):
            layers += [
                nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            if index in pool_after:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_labels) logits."""
        return self.classifier(self.features(pixel_values).mean(dim=(2, 3)))


class TransformerClassifier(nn.Module):
    """A transformers image classifier behind an optional convolutional stem; returns the logits tensor."""

    def __init__(self, model: nn.Module, stem: nn.Module | None = None):
        super().__init__()
        self.stem = stem if stem is not None else nn.Identity()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_labels) logits."""
        return self.model(pixel_values=self.stem(pixel_values)).logits

    def token_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, h, w, C') the last stage's tokens before pooling, as a grid."""
        hidden = self.model.swinv2(pixel_values=self.stem(pixel_values)).last_hidden_state  # B, h*w, C'
        side = int(hidden.shape[1] ** 0.5)
        return hidden.view(hidden.shape[0], side, side, hidden.shape[2])


def conv_stem(in_channels: int, channels: int) -> nn.Module:
    """Two 3x3 convolutions at full resolution (receptive field 5 px): local curve pieces, no long range."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.GELU(),
    )


def cnn_stem(in_channels: int, channels: int) -> nn.Module:
    """The small CNN's first four layers and its max-pool (receptive field 10 px), halving the image side."""
    return SmallCnn(in_channels, channels, depth=4).features


def transformer_fields(recipe: PathfinderRecipe, image_size: int, in_channels: int, num_labels: int) -> dict:
    """The SwinV2 configuration fields of the recipe's transformers for `image_size` px images."""
    return {
        "image_size": image_size // 2 if recipe.stem == "cnn" else image_size,
        "patch_size": recipe.patch_size,
        "window_size": recipe.window_size,
        "embed_dim": recipe.embed_dim,
        "depths": list(recipe.depths),
        "num_heads": list(recipe.num_heads),
        "num_channels": recipe.stem_channels if recipe.stem != "none" else in_channels,
        "num_labels": num_labels,
        "drop_path_rate": 0.0,
        "initializer_range": recipe.initializer_range,
    }


def mano_config(kind: str, recipe: PathfinderRecipe, fields: dict) -> ManoConfig:
    """The MANO configuration of a MANO or converted kind: its projectors and start, and its levels."""
    projector_type, projector_init = MANO_STARTS.get(kind) or CONVERTED_STARTS[kind]
    config = ManoConfig(**fields, projector_type=projector_type, projector_init=projector_init)
    if kind == "mano-one-level":
        config.num_levels = [1] * len(recipe.depths)
    elif recipe.mano_levels == "global":
        config.num_levels = global_levels(config)
    return config


def build_model(
    kind: str, recipe: PathfinderRecipe, image_size: int, in_channels: int = 1, num_labels: int = 2
) -> nn.Module:
    """One of `MODEL_KINDS` for `image_size` px images with `num_labels` classes, freshly initialised (a converted
    kind is built as the MANO model a conversion gives, to receive its weights)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
    if kind in CNN_KINDS:
        pooling = {"cnn": {}, "cnn-pooled": {"pool_after": (0, 2, 4, 6)}, "cnn-stem": {"depth": 4}}[kind]
        channels = recipe.stem_channels if kind == "cnn-stem" else recipe.cnn_channels
        return SmallCnn(in_channels, channels, num_labels, **pooling)
    stem = {"none": None, "conv": conv_stem, "cnn": cnn_stem}[recipe.stem]
    stem = stem(in_channels, recipe.stem_channels) if stem is not None else None
    fields = transformer_fields(recipe, image_size, in_channels, num_labels)
    if kind == "swinv2":
        return TransformerClassifier(Swinv2ForImageClassification(Swinv2Config(**fields)), stem)
    return TransformerClassifier(ManoForImageClassification(mano_config(kind, recipe, fields)), stem)


def global_levels(config: ManoConfig) -> list[int]:
    """Per stage, the fewest levels whose coarsest grid fits in one window at `config.image_size`: every layer's
    far field then spans the whole image."""
    levels = []
    for height, width in config.stage_grid_sizes():
        count = 1
        while max(height, width) > config.window_size:
            height, width = coarse_grid_size(height, width, config.sampling_rate)
            count += 1
        levels.append(count)
    return levels


def convert_swinv2_run(
    source: TransformerClassifier, kind: str, recipe: PathfinderRecipe, image_size: int
) -> tuple[nn.Module, dict]:
    """A trained SwinV2 classifier (behind its stem) turned into the MANO of converted `kind` by the project's
    converter, as a user converts a SwinV2 checkpoint: saved with `save_pretrained`, converted by
    `convert_swinv2_checkpoint` (levels added, projectors at their start, the float64 check against the source), read
    back with `from_pretrained`; the stem is the source's. `image_size`: the images (px) the source was built for,
    which set the levels as for the MANO kinds. Returns the model and the conversion's numbers."""
    from transformers_mano.conversion import convert_swinv2_checkpoint

    if kind not in CONVERTED_STARTS or not isinstance(source.model, Swinv2ForImageClassification):
        raise ValueError(f"convert_swinv2_run turns a swinv2 run into one of {tuple(CONVERTED_STARTS)}, not {kind!r}")
    projector_type, projector_init = CONVERTED_STARTS[kind]
    fields = transformer_fields(recipe, image_size, source.model.config.num_channels, source.model.config.num_labels)
    levels = mano_config(kind, recipe, fields).num_levels
    with tempfile.TemporaryDirectory() as folder:
        source.model.save_pretrained(Path(folder) / "swinv2")
        report = convert_swinv2_checkpoint(
            Path(folder) / "swinv2",
            Path(folder) / "mano",
            num_levels=levels,
            projector_type=projector_type,
            projector_init=projector_init,
        )
        mano = ManoForImageClassification.from_pretrained(Path(folder) / "mano")
    numbers = {
        "projector_type": projector_type,
        "projector_init": projector_init,
        "num_levels": list(levels),
        "projector_parameters": report.projector_parameters,
        "exact_expected": report.exact_expected,
        "max_abs_logit_difference_float64": report.max_abs_diff,
    }
    return TransformerClassifier(mano.train(), copy.deepcopy(source.stem)), numbers


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model: nn.Module, image_size: int, in_channels: int = 1) -> int:
    """Floating-point operations of one forward pass on one image (torch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, image_size, image_size))
    model.train(was_training)
    return int(counter.get_total_flops())


def projector_parameter_names(model: nn.Module) -> set[str]:
    """Names (in `model`) of MANO's learned projector parameters (`down`, `up` and a far-field gate); empty for the
    other kinds."""
    inner = getattr(model, "model", None)
    if not isinstance(inner, ManoForImageClassification):
        return set()
    return {f"model.{name}" for name in inner.projector_parameter_names()}


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (in `model`) of the classification head's parameters."""
    prefix = "model.classifier." if isinstance(model, TransformerClassifier) else "classifier."
    return {name for name, _ in model.named_parameters() if name.startswith(prefix)}


__all__ = [
    "CNN_KINDS",
    "CONVERTED_STARTS",
    "MANO_STARTS",
    "MODEL_KINDS",
    "SmallCnn",
    "TransformerClassifier",
    "build_model",
    "cnn_stem",
    "conv_stem",
    "convert_swinv2_run",
    "count_flops",
    "count_parameters",
    "global_levels",
    "head_parameter_names",
    "mano_config",
    "projector_parameter_names",
]
