"""The MANO neural operator: configuration and modeling."""

from .configuration_mano_operator import ManoOperatorConfig
from .modeling_mano_operator import ManoOperatorModel


__all__ = ["ManoOperatorConfig", "ManoOperatorModel"]
