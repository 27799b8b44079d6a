"""Conversion of SwinV2 checkpoints into MANO checkpoints (tooling on top of the models).

`convert_swinv2_checkpoint` is what `scripts/convert_swinv2_to_mano.py` runs; see its docstring and
docs/conversion.md.
"""

from .swinv2_to_mano import (
    ConversionError,
    ConversionReport,
    build_mano_config,
    convert_swinv2_checkpoint,
    push_folder_to_hub,
    swinv2_twin_config,
)


__all__ = [
    "ConversionError",
    "ConversionReport",
    "build_mano_config",
    "convert_swinv2_checkpoint",
    "push_folder_to_hub",
    "swinv2_twin_config",
]
