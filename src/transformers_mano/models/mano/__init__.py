"""MANO models of the SwinV2 family: configuration, modeling, image processor."""

from .configuration_mano import ManoConfig
from .modeling_mano import (
    ManoBackbone,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoLayer,
    ManoModel,
    ManoPreTrainedModel,
)


__all__ = [
    "ManoBackbone",
    "ManoConfig",
    "ManoForImageClassification",
    "ManoForMaskedImageModeling",
    "ManoLayer",
    "ManoModel",
    "ManoPreTrainedModel",
]
