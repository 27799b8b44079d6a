"""Every Auto mapping of transformers-mano, in one place.

`AUTO_MODELS` says, for each configuration class of the package (one model type each), which model class each Auto
class resolves to; `AUTO_IMAGE_PROCESSORS` which image processor `AutoImageProcessor` gives. `register_auto_classes()`
enters them into transformers' Auto classes; `import transformers_mano` calls it, so that `AutoConfig`,
`AutoModel.from_pretrained` and `pipeline` know every model of the package after that import.

Checkpoints also name their classes in `config.auto_map` for remote code (loading where the package is absent): each
model family's `save_pretrained` writes that map (`AUTO_MAP` of `modeling_mano.py` and `modeling_mano_operator.py`);
a test checks that it names the classes registered here. The Darcy baselines (FNO, ViT) carry no remote code.
"""

from __future__ import annotations

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
    PreTrainedConfig,
    PreTrainedModel,
)

from .models.mano.configuration_mano import ManoConfig
from .models.mano.image_processing_mano import ViTImageProcessorPil
from .models.mano.modeling_mano import ManoBackbone, ManoForImageClassification, ManoForMaskedImageModeling, ManoModel
from .models.mano_operator.configuration_mano_operator import ManoOperatorConfig
from .models.mano_operator.modeling_mano_operator import ManoOperatorModel
from .physics.baselines import FnoOperatorConfig, FnoOperatorModel, VitOperatorConfig, VitOperatorModel


# configuration class -> {Auto class: model class}
AUTO_MODELS: dict[type[PreTrainedConfig], dict[type, type[PreTrainedModel]]] = {
    # the SwinV2 family: the four SwinV2 classes, each with its multipole counterpart
    ManoConfig: {
        AutoModel: ManoModel,
        AutoModelForImageClassification: ManoForImageClassification,
        AutoModelForMaskedImageModeling: ManoForMaskedImageModeling,
        AutoBackbone: ManoBackbone,
    },
    # the neural operator, and the two baselines of the Darcy benchmark
    ManoOperatorConfig: {AutoModel: ManoOperatorModel},
    FnoOperatorConfig: {AutoModel: FnoOperatorModel},
    VitOperatorConfig: {AutoModel: VitOperatorModel},
}
# configuration class -> {backend: image processor class}; SwinV2 checkpoints use ViT's image processor, whose PIL
# backend needs no torchvision
AUTO_IMAGE_PROCESSORS: dict[type[PreTrainedConfig], dict[str, type]] = {ManoConfig: {"pil": ViTImageProcessorPil}}


def register_auto_classes() -> None:
    """Enter `AUTO_MODELS` and `AUTO_IMAGE_PROCESSORS` into transformers' Auto classes (again: no error)."""
    for config_class, models in AUTO_MODELS.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
    for config_class, processors in AUTO_IMAGE_PROCESSORS.items():
        AutoImageProcessor.register(config_class, image_processor_classes=processors, exist_ok=True)


__all__ = ["AUTO_IMAGE_PROCESSORS", "AUTO_MODELS", "register_auto_classes"]
