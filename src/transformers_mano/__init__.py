"""transformers-mano: Multipole Attention Neural Operator (arXiv 2507.02748) as Hugging Face Transformers models.

Importing the package registers the MANO classes (the SwinV2 family and the neural operator) with the Auto classes.
Their modules mark them for remote-code export, so checkpoints saved with `save_pretrained` load with
`trust_remote_code=True` where the package is absent.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
)

from .models.mano.configuration_mano import ManoConfig
from .models.mano.image_processing_mano import ViTImageProcessorPil
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


def _register() -> None:
    AutoConfig.register(ManoConfig.model_type, ManoConfig, exist_ok=True)
    auto_classes = {
        "AutoModel": AutoModel,
        "AutoModelForImageClassification": AutoModelForImageClassification,
        "AutoModelForMaskedImageModeling": AutoModelForMaskedImageModeling,
        "AutoBackbone": AutoBackbone,
    }
    for auto_class, model_class in AUTO_CLASSES.items():
        auto_classes[auto_class].register(ManoConfig, model_class, exist_ok=True)
    # SwinV2 checkpoints use ViT's image processor; the PIL backend needs no torchvision.
    AutoImageProcessor.register(ManoConfig, image_processor_classes={"pil": ViTImageProcessorPil}, exist_ok=True)
    # the neural operator of the physics experiments: a model type of its own
    AutoConfig.register(ManoOperatorConfig.model_type, ManoOperatorConfig, exist_ok=True)
    AutoModel.register(ManoOperatorConfig, ManoOperatorModel, exist_ok=True)


_register()

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
