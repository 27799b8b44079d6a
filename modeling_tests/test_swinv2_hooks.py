"""The SwinV2 internals this package subclasses, overrides or calls still exist in the installed transformers.

transformers rewrote Swin (v1) in 5.23 and SwinV2 may follow: this test fails first, naming what moved.
"""

from __future__ import annotations

import inspect

import pytest
from transformers.models.swinv2 import modeling_swinv2

# class or function -> (methods and attributes used, constructor or call parameters relied on)
HOOKS = {
    "Swinv2Layer": (
        ["forward", "maybe_pad", "get_attn_mask", "_compute_window_shift"],
        ["config", "dim", "input_resolution", "num_heads", "drop_path_rate", "shift_size", "pretrained_window_size"],
    ),
    "Swinv2Stage": (["forward"], ["config", "dim", "input_resolution", "depth", "num_heads", "drop_path", "downsample",
                                  "pretrained_window_size"]),
    "Swinv2Encoder": (["forward"], ["config", "grid_size", "pretrained_window_sizes"]),
    "Swinv2Embeddings": (["forward"], ["config", "use_mask_token"]),
    "Swinv2PatchMerging": (["forward"], ["input_resolution", "dim", "norm_layer"]),
    "Swinv2Attention": (["forward"], ["config", "dim", "num_heads", "window_size", "pretrained_window_size"]),
    "Swinv2SelfAttention": (["forward", "create_coords_table_and_index"],
                            ["config", "dim", "num_heads", "window_size", "pretrained_window_size"]),
    "Swinv2PreTrainedModel": (["_init_weights"], []),
    "Swinv2Model": (["forward", "get_input_embeddings"], ["config", "add_pooling_layer", "use_mask_token"]),
    "Swinv2ForImageClassification": (["forward"], ["config"]),
    "Swinv2ForMaskedImageModeling": (["forward"], ["config"]),
    "Swinv2Backbone": (["forward"], ["config"]),
    "window_partition": ([], ["input_feature", "window_size"]),
    "window_reverse": ([], ["windows", "window_size", "height", "width"]),
}


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_swinv2_hook_point_exists(name):
    assert hasattr(modeling_swinv2, name), f"transformers.models.swinv2.modeling_swinv2.{name} is gone"
    obj = getattr(modeling_swinv2, name)
    methods, parameters = HOOKS[name]
    for method in methods:
        assert callable(getattr(obj, method, None)), f"{name}.{method} is gone"
    signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    missing = [p for p in parameters if p not in signature.parameters]
    assert not missing, f"{name} no longer takes {missing}"


def test_swinv2_layer_forward_reads_the_attributes_mano_relies_on():
    """ManoLayer.forward re-implements Swinv2Layer.forward around these submodules and attributes."""
    source = inspect.getsource(modeling_swinv2.Swinv2Layer)
    for attribute in ("self.window_size", "self.shift_size", "self.attention", "self.layernorm_before",
                      "self.drop_path", "self.intermediate", "self.output", "self.layernorm_after"):
        assert attribute in source, f"Swinv2Layer no longer uses {attribute}"


def test_swinv2_stage_is_checkpointable():
    from transformers.modeling_layers import GradientCheckpointingLayer

    assert issubclass(modeling_swinv2.Swinv2Stage, GradientCheckpointingLayer)
