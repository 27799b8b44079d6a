"""The image processor of MANO checkpoints: ViT's, as SwinV2 checkpoints ship it, on its PIL backend.

The PIL backend needs no torchvision (a CUDA torchvision beside a CPU torch breaks transformers' vision imports),
and it is what `AutoImageProcessor` returns for the `ViTImageProcessor` / legacy `ViTFeatureExtractor` files of
the `microsoft/swinv2-*` checkpoints where torchvision is absent.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import ViTImageProcessorPil
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .configuration_mano import image_size_pair


def imagenet_image_processor(image_size: int | Sequence[int]) -> ViTImageProcessorPil:
    """ViT's image processor for images of `image_size`: resize to it, rescale to [0, 1], normalise with the
    ImageNet mean and std, as the SwinV2 checkpoints of the Hub do."""
    height, width = image_size_pair(image_size)
    return ViTImageProcessorPil(
        size={"height": height, "width": width}, image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD
    )


__all__ = ["ViTImageProcessorPil", "imagenet_image_processor"]
