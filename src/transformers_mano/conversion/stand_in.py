"""SwinV2 checkpoints that stand in for the Hub's where the Hub is out of reach: the same shapes and file layout,
random weights put where trained checkpoints have them.

A freshly initialised SwinV2 starts every logit scale at 10 and its continuous position bias near 8; trained
checkpoints have logit scales anywhere up to the clamp of 100 and position biases near the bounds 0 and 16 of
`16 * sigmoid(.)`. Float32 rounding, masking and kernels behave differently there, so a conversion (or a test) that
only ever sees fresh weights proves little.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from transformers import Swinv2Config, Swinv2ForImageClassification

from ..utils import atomic_directory


# SwinV2-T at 256 px, window 8, ImageNet-1k: the shape of microsoft/swinv2-tiny-patch4-window8-256
SWINV2_TINY = {
    "image_size": 256,
    "patch_size": 4,
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "num_heads": [3, 6, 12, 24],
    "window_size": 8,
    "num_labels": 1000,
}
# The legacy preprocessor file of the microsoft/swinv2-* repositories (a ViTFeatureExtractor), at 256 px
LEGACY_PREPROCESSOR = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 256,
}


@torch.no_grad()
def make_trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give a SwinV2-family model the parameter ranges of trained checkpoints, in place.

    - logit scales: per head, uniform in [log 10, log 100], and one head per layer beyond the clamp (log 200,
      clamped to 100);
    - continuous position bias: the MLP's last layer scaled by 30, so that 16 * sigmoid(.) sits near 0 and 16;
    - every other weight: as it was.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith("logit_scale"):
            scales = torch.empty(parameter.shape).uniform_(math.log(10), math.log(100), generator=generator)
            scales.view(-1)[0] = math.log(200)
            parameter.copy_(scales)
        elif name.endswith("continuous_position_bias_mlp.2.weight"):
            parameter.mul_(30.0)
    return model


def save_swinv2_stand_in(
    folder: str | os.PathLike, seed: int = 0, trained_like: bool = True, overwrite: bool = False, **config
) -> Path:
    """A `Swinv2ForImageClassification` checkpoint laid out as the microsoft/swinv2-* repositories are:
    `config.json`, `pytorch_model.bin` only, the legacy 240-byte preprocessor file. SwinV2-T's shape by default."""
    torch.manual_seed(seed)
    model = Swinv2ForImageClassification(Swinv2Config(**(SWINV2_TINY | config))).eval()
    if trained_like:
        make_trained_like(model, seed)
    with atomic_directory(folder, overwrite) as staging:
        model.config.architectures = [type(model).__name__]  # as save_pretrained records it
        model.config.save_pretrained(staging)
        torch.save(model.state_dict(), staging / "pytorch_model.bin")
        size = model.config.image_size
        (staging / "preprocessor_config.json").write_text(json.dumps(LEGACY_PREPROCESSOR | {"size": size}, indent=2))
    return Path(folder)


__all__ = ["LEGACY_PREPROCESSOR", "SWINV2_TINY", "make_trained_like", "save_swinv2_stand_in"]
