"""The SwinV2 internals this package subclasses, overrides or calls still exist in the installed transformers.

transformers rewrote Swin (v1) in 5.23 and SwinV2 may follow: this test fails first, naming what moved.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch.nn import functional as F
from transformers.models.swinv2 import modeling_swinv2


# class or function -> (methods and attributes used, constructor or call parameters relied on)
HOOKS = {
    "Swinv2Layer": (
        ["forward", "maybe_pad", "get_attn_mask", "_compute_window_shift"],
        ["config", "dim", "input_resolution", "num_heads", "drop_path_rate", "shift_size", "pretrained_window_size"],
    ),
    "Swinv2Stage": (
        ["forward"],
        [
            "config",
            "dim",
            "input_resolution",
            "depth",
            "num_heads",
            "drop_path",
            "downsample",
            "pretrained_window_size",
        ],
    ),
    "Swinv2Encoder": (["forward"], ["config", "grid_size", "pretrained_window_sizes"]),
    "Swinv2Embeddings": (["forward"], ["config", "use_mask_token"]),
    "Swinv2PatchMerging": (["forward"], ["input_resolution", "dim", "norm_layer"]),
    "Swinv2Attention": (["forward"], ["config", "dim", "num_heads", "window_size", "pretrained_window_size"]),
    "Swinv2SelfAttention": (
        ["forward", "create_coords_table_and_index"],
        ["config", "dim", "num_heads", "window_size", "pretrained_window_size"],
    ),
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


def test_manolayer_at_one_level_is_swinv2_layer_forward():
    """ManoLayer re-runs Swinv2Layer.forward around the same submodules (window partition, attention, residual
    with res-post-norm, MLP): at one level and on the eager path it must give Swinv2Layer.forward's output exactly."""
    from transformers_mano import ManoConfig
    from transformers_mano.models.mano.modeling_mano import ManoLayer

    config = ManoConfig(
        embed_dim=8, depths=[2], num_heads=[2], window_size=4, image_size=40, patch_size=4, num_levels=[1]
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    layer = ManoLayer(config, dim=8, input_resolution=(10, 10), num_heads=2, shift_size=2).eval()
    hidden_states = torch.randn(2, 100, 8)
    with torch.no_grad():
        expected = modeling_swinv2.Swinv2Layer.forward(layer, hidden_states, (10, 10))[0]
        assert torch.equal(layer(hidden_states, (10, 10))[0], expected)


def _attention(num_heads: int = 1, dim: int = 4, window: int = 2) -> torch.nn.Module:
    config = modeling_swinv2.Swinv2Config(embed_dim=dim, num_heads=[num_heads], depths=[1], window_size=window)
    return modeling_swinv2.Swinv2SelfAttention(config, dim=dim, num_heads=num_heads, window_size=window).double()


def test_swinv2_attention_adds_the_shift_mask_as_many_times_as_mano_repeats_it():
    """The fused path repeats transformers' masking (sdpa_attention_mano.SHIFT_MASK_REPEATS times the mask); measure how
    many times `Swinv2SelfAttention` adds a mask of -1 to one key's score."""
    from transformers_mano.models.mano.sdpa_attention_mano import SHIFT_MASK_REPEATS

    attention = _attention().eval()
    hidden_states = torch.randn(1, 4, 4, dtype=torch.float64)  # one window of 2x2 tokens
    mask = torch.zeros(1, 4, 4, dtype=torch.float64)
    mask[..., 0] = -1.0  # every query: key 0 down by one
    with torch.no_grad():
        plain = attention(hidden_states, None, output_attentions=True)[1]
        masked = attention(hidden_states, mask, output_attentions=True)[1]
    log_ratio = (plain[..., 0] / plain[..., 1]).log() - (masked[..., 0] / masked[..., 1]).log()
    torch.testing.assert_close(log_ratio, torch.full_like(log_ratio, float(SHIFT_MASK_REPEATS)))


def test_swinv2_attention_constants_that_the_fused_path_restates():
    """The fused path restates three facts of `Swinv2SelfAttention`: the logit scale is exp(min(s, log 100)), the
    position bias is 16 * sigmoid(CPB MLP), the key projection has no bias. Each is measured on the installed one."""
    attention = _attention().eval()
    assert attention.key.bias is None and attention.query.bias is not None
    hidden_states = torch.randn(1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        attention.continuous_position_bias_mlp[2].weight.zero_()  # bias 16 * sigmoid(0) = 8 everywhere
        for log_scale, scale in ((math.log(50.0), 50.0), (math.log(400.0), 100.0)):
            attention.logit_scale.fill_(log_scale)
            probs = attention(hidden_states, None, output_attentions=True)[1]
            query = F.normalize(attention.query(hidden_states), dim=-1)
            key = F.normalize(attention.key(hidden_states), dim=-1)
            expected = (scale * query @ key.transpose(-1, -2) + 8.0).softmax(-1)
            torch.testing.assert_close(probs[:, 0], expected)


def test_swinv2_layer_builds_its_shift_mask_on_a_given_device():
    """MANO's paths build SwinV2's shift mask directly on the device of the grid (`device=` exists since 5.18)."""
    parameters = inspect.signature(modeling_swinv2.Swinv2Layer.get_attn_mask).parameters
    assert list(parameters)[1:] == ["height", "width", "dtype", "device"]


def test_swinv2_stage_is_checkpointable():
    from transformers.modeling_layers import GradientCheckpointingLayer

    assert issubclass(modeling_swinv2.Swinv2Stage, GradientCheckpointingLayer)
