"""transformers-mano: Multipole Attention Neural Operator (arXiv 2507.02748) as Hugging Face Transformers models.

Importing the package registers every model class of the package (the SwinV2 family, the neural operator and the
Darcy baselines) with the Auto classes: `transformers_mano.auto` holds every mapping. The MANO modules mark their
classes for remote-code export, so checkpoints saved with `save_pretrained` load with `trust_remote_code=True` where
the package is absent.
"""

from .auto import register_auto_classes
from .models.mano.configuration_mano import ManoConfig
from .models.mano.modeling_mano import (
    AUTO_CLASSES,
    ManoBackbone,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoLayer,
    ManoModel,
    ManoPreTrainedModel,
)
from .models.mano_operator.configuration_mano_operator import ManoOperatorConfig
from .models.mano_operator.modeling_mano_operator import ManoOperatorModel
from .multipole import multipole_attention


__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "AUTO_CLASSES",
    "ManoBackbone",
    "ManoConfig",
    "ManoForImageClassification",
    "ManoForMaskedImageModeling",
    "ManoLayer",
    "ManoModel",
    "ManoOperatorConfig",
    "ManoOperatorModel",
    "ManoPreTrainedModel",
    "multipole_attention",
]
