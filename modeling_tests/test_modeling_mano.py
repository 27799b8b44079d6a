"""The MANO models of the SwinV2 family: shapes, SwinV2 parity, far field, transformers behaviours."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import FLOAT64_ATOL, FLOAT64_RTOL, assert_as_accurate, make_trained_like
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
    Swinv2Backbone,
    Swinv2Config,
    Swinv2ForImageClassification,
    Swinv2ForMaskedImageModeling,
    Swinv2Model,
)

from transformers_mano import (
    ManoBackbone,
    ManoConfig,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoLayer,
    ManoModel,
)


HEADS = [
    pytest.param(ManoModel, Swinv2Model, id="model"),
    pytest.param(ManoForImageClassification, Swinv2ForImageClassification, id="classification"),
    pytest.param(ManoForMaskedImageModeling, Swinv2ForMaskedImageModeling, id="masked-image-modeling"),
    pytest.param(ManoBackbone, Swinv2Backbone, id="backbone"),
]


def first_output(outputs) -> torch.Tensor:
    """The main tensor of any head's output: hidden states, logits, reconstruction or the last feature map."""
    for name in ("logits", "reconstruction", "last_hidden_state"):
        if getattr(outputs, name, None) is not None:
            return getattr(outputs, name)
    return outputs.feature_maps[-1]


def swinv2_config(tester) -> Swinv2Config:
    """The tester's configuration without the MANO fields."""
    mano_fields = {"num_levels", "sampling_rate", "projector_type", "level_weighting", "projector_init"}
    return Swinv2Config(**{k: v for k, v in tester.config_kwargs.items() if k not in mano_fields})


def projector_keys(model: torch.nn.Module) -> set[str]:
    """The state-dict keys a MANO model holds beyond SwinV2's, told by name (independently of the model's own
    `projector_parameter_names`, which the tests below hold to it)."""
    return {key for key in model.state_dict() if key.endswith((".down.weight", ".up.weight"))}


# ----------------------------------------------------------------------------------------------------------------------
# Shapes computed from the config


def test_model_shapes(tester):
    config = tester.get_config()
    model = ManoModel(config).eval()
    with torch.no_grad():
        outputs = model(tester.pixel_values(), output_hidden_states=True)
    height, width = tester.expected_grid()
    assert outputs.last_hidden_state.shape == (tester.batch_size, height * width, tester.hidden_size)
    assert outputs.pooler_output.shape == (tester.batch_size, tester.hidden_size)
    # embeddings + one state per stage, reshaped to (B, C, H, W)
    assert len(outputs.reshaped_hidden_states) == len(config.depths) + 1
    side = config.image_size // config.patch_size
    assert outputs.reshaped_hidden_states[0].shape == (tester.batch_size, config.embed_dim, side, side)
    assert outputs.reshaped_hidden_states[-1].shape == (tester.batch_size, tester.hidden_size, height, width)


def test_head_shapes(tester):
    config = tester.get_config()
    pixel_values = tester.pixel_values()
    with torch.no_grad():
        logits = ManoForImageClassification(config).eval()(pixel_values).logits
        reconstruction = ManoForMaskedImageModeling(config).eval()(pixel_values).reconstruction
        feature_maps = ManoBackbone(config).eval()(pixel_values).feature_maps
    assert logits.shape == (tester.batch_size, config.num_labels)
    assert reconstruction.shape == pixel_values.shape
    height, width = tester.expected_grid()
    assert [tuple(f.shape) for f in feature_maps] == [(tester.batch_size, tester.hidden_size, height, width)]


def test_masked_image_modeling_loss(tester):
    config = tester.get_config()
    model = ManoForMaskedImageModeling(config).eval()
    num_patches = (config.image_size // config.patch_size) ** 2
    bool_masked_pos = torch.zeros(tester.batch_size, num_patches, dtype=torch.bool)
    bool_masked_pos[:, ::3] = True
    outputs = model(tester.pixel_values(), bool_masked_pos=bool_masked_pos)
    assert outputs.loss is not None and torch.isfinite(outputs.loss)


def test_level_plan_of_tiny_tester(tester):
    model = ManoModel(tester.get_config())
    levels = [[block.num_levels for block in stage.blocks] for stage in model.encoder.layers]
    assert levels == [[3, 3], [2, 2]]
    # one shared down/up pair per multi-level layer, nothing more
    assert len(projector_keys(model)) == 2 * 4 and set(model.projector_parameter_names()) == projector_keys(model)


# ----------------------------------------------------------------------------------------------------------------------
# SwinV2 parity


def one_level_config(tester) -> ManoConfig:
    return tester.get_config().__class__(**{**tester.config_kwargs, "num_levels": [1, 1]})


# Three stages of 16, 8 and 4 tokens per side with window 8: stage 1 alternates unshifted and shifted layers, stage 2
# fits one window (no shift), stage 3 clips the window to its 4x4 grid; position tables scaled as for checkpoints
# fine-tuned from smaller windows.
PARITY_CONFIG = {
    "image_size": 32,
    "patch_size": 2,
    "num_channels": 3,
    "embed_dim": 16,
    "depths": [2, 2, 2],
    "num_heads": [2, 2, 4],
    "window_size": 8,
    "pretrained_window_sizes": [6, 6, 3],
    "mlp_ratio": 2.0,
    "drop_path_rate": 0.0,
    "num_labels": 5,
    "encoder_stride": 8,
}


def parity_pair(mano_class, swinv2_class, attn_implementation: str, seed: int = 0):
    """A one-level MANO model with trained-like SwinV2 weights, and the SwinV2 model holding the same weights."""
    torch.manual_seed(seed)
    swinv2 = make_trained_like(swinv2_class(Swinv2Config(**PARITY_CONFIG)), seed).eval()
    mano = mano_class(ManoConfig(**PARITY_CONFIG, num_levels=[1, 1, 1])).eval()
    mano.set_attn_implementation(attn_implementation)
    assert projector_keys(mano) == set()
    mano.load_state_dict(swinv2.state_dict())
    return mano, swinv2


@pytest.mark.parametrize("mano_class, swinv2_class", HEADS)
def test_one_level_equals_swinv2_bit_for_bit_on_the_eager_path(mano_class, swinv2_class):
    """At one level the eager path runs SwinV2's own attention: the same output, bit for bit, at trained scales."""
    mano, swinv2 = parity_pair(mano_class, swinv2_class, "eager")
    pixel_values = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))  # 40: padded windows
    with torch.no_grad():
        assert torch.equal(first_output(mano(pixel_values)), first_output(swinv2(pixel_values)))


@pytest.mark.parametrize("mano_class, swinv2_class", HEADS)
def test_one_level_fused_path_equals_swinv2_at_trained_scales(mano_class, swinv2_class):
    """The fused SDPA path computes SwinV2's function: equal in float64 (masks, scales, biases, padding all
    included) and, in float32, as close to the float64 value as SwinV2's own float32 output."""
    mano, swinv2 = parity_pair(mano_class, swinv2_class, "sdpa")
    pixel_values = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mano32, swinv2_32 = first_output(mano(pixel_values)), first_output(swinv2(pixel_values))
        mano.double(), swinv2.double()
        mano64, swinv2_64 = first_output(mano(pixel_values.double())), first_output(swinv2(pixel_values.double()))
    torch.testing.assert_close(mano64, swinv2_64, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)
    assert_as_accurate(mano32, swinv2_32, swinv2_64, what=mano_class.__name__)


def test_fused_path_masks_shifted_windows_as_hard_as_transformers():
    """Queries aligned with the keys across a shifted-window boundary and opposed to their own region's keys: at
    the clamped logit scale a -100 mask would let the other region win; the fused path must match the eager one."""
    config = ManoConfig(**PARITY_CONFIG, num_levels=[1, 1, 1])
    layer = ManoModel(config).encoder.layers[0].blocks[1]  # stage 1, shifted
    assert layer.shift_size > 0
    attention = layer.attention.self
    with torch.no_grad():
        attention.logit_scale.fill_(math.log(100.0))
        eye = torch.eye(config.embed_dim)
        attention.query.weight.copy_(eye)
        attention.key.weight.copy_(-eye)  # cos(q_i, k_j) = -cos(x_i, x_j)
        attention.query.bias.zero_()
    grid = torch.ones(1, 16, 16, config.embed_dim)
    grid[:, 12:, :] = -1.0  # the bottom rows wrap around into other windows under the cyclic shift
    grid = grid.double()
    layer.double()
    with torch.no_grad():
        config._attn_implementation = "eager"
        eager, _ = layer.multipole_window_attention(grid)
        config._attn_implementation = "sdpa"
        fused, _ = layer.multipole_window_attention(grid)
    torch.testing.assert_close(fused, eager, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_zero_up_projector_reproduces_swinv2_at_trained_scales():
    """The default initialisation (average down, zero up) computes what SwinV2 computes with the same weights,
    levels planned: the coarse levels run and add exactly zero."""
    torch.manual_seed(0)
    swinv2 = make_trained_like(Swinv2ForImageClassification(Swinv2Config(**PARITY_CONFIG))).eval()
    mano = ManoForImageClassification(ManoConfig(**PARITY_CONFIG, num_levels=[2, 1, 1])).eval()
    assert mano.config.projector_init == "avg_pool_zero_up" and projector_keys(mano)
    missing, unexpected = swinv2.load_state_dict(mano.state_dict(), strict=False)
    assert not missing and set(unexpected) == projector_keys(mano)
    mano.load_state_dict(swinv2.state_dict(), strict=False)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        torch.testing.assert_close(
            mano.double()(pixel_values).logits,
            swinv2.double()(pixel_values).logits,
            rtol=FLOAT64_RTOL,
            atol=FLOAT64_ATOL,
        )


def test_swinv2_checkpoint_loads_with_projectors_as_only_missing_keys(tester, tmp_path):
    swinv2 = Swinv2ForImageClassification(swinv2_config(tester))
    swinv2.save_pretrained(tmp_path)
    mano, info = ManoForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(mano.config, ManoConfig)
    assert set(info["missing_keys"]) == projector_keys(mano) != set()
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    # the loaded SwinV2 weights are untouched, the missing projectors follow config.projector_init (zero up)
    assert torch.equal(mano.classifier.weight, swinv2.classifier.weight)
    assert all(
        block.up.weight.abs().sum() == 0
        for stage in mano.swinv2.encoder.layers
        for block in stage.blocks
        if block.up is not None
    )


def test_mano_tiny_parameter_delta():
    """mano-tiny adds 737,280 projector parameters to SwinV2-T: the paper's +2.67 %."""
    with torch.device("meta"):
        mano = ManoModel(ManoConfig())
        swinv2 = Swinv2Model(Swinv2Config(image_size=256, window_size=8))
    mano_count = sum(p.numel() for p in mano.parameters())
    swinv2_count = sum(p.numel() for p in swinv2.parameters())
    assert ManoConfig().resolved_num_levels() == [3, 2, 1, 1]
    assert mano_count - swinv2_count == 737_280
    assert round(100 * (mano_count - swinv2_count) / swinv2_count, 2) == 2.67


# ----------------------------------------------------------------------------------------------------------------------
# The far field


def stage1_layer_input_gradient(layer: torch.nn.Module, grid: int, channels: int, token: tuple[int, int]):
    hidden_states = torch.randn(1, grid * grid, channels, requires_grad=True)
    output = layer(hidden_states, (grid, grid))[0]
    # a random read-out: a plain channel sum of the LayerNorm-ed output would have zero gradient
    readout = torch.randn(channels, generator=torch.Generator().manual_seed(0))
    (output[0, token[0] * grid + token[1]] @ readout).backward()
    return hidden_states.grad[0].abs().sum(-1).view(grid, grid)


def test_far_field_reaches_the_whole_grid(tester):
    """One output token of a stage-1 layer whose coarsest grid fits one window depends on every input token;
    the same layer at one level (SwinV2's) depends only on the tokens of its window."""
    config = tester.get_config().__class__(**tester.config_kwargs | {"num_levels": [4, 3]})  # 16 -> 8 -> 4 -> 2
    layer = ManoModel(config).encoder.layers[0].blocks[0]
    assert isinstance(layer, ManoLayer) and layer.num_levels == 4
    torch.nn.init.normal_(layer.up.weight)
    grid = config.image_size // config.patch_size
    mano_influence = stage1_layer_input_gradient(layer, grid, config.embed_dim, token=(0, 0))
    assert (mano_influence > 0).all()

    single = copy.deepcopy(layer)
    single.down = single.up = None  # what SwinV2's layer computes
    window = config.window_size
    swinv2_influence = stage1_layer_input_gradient(single, grid, config.embed_dim, token=(0, 0))
    assert (swinv2_influence[:window, :window] > 0).all()
    swinv2_influence[:window, :window] = 0
    assert (swinv2_influence == 0).all()


def test_automatic_plan_reaches_a_window_of_the_coarsest_grid(tester):
    """The automatic rule keeps two coarsest windows per side: one layer reaches window * r^(L-1) tokens per side."""
    config = tester.get_config()
    layer = ManoModel(config).encoder.layers[0].blocks[0]
    assert layer.num_levels == 3
    torch.nn.init.normal_(layer.up.weight)
    grid = config.image_size // config.patch_size
    reach = config.window_size * config.sampling_rate ** (layer.num_levels - 1)  # 8 of 16
    influence = stage1_layer_input_gradient(layer, grid, config.embed_dim, token=(0, 0))
    assert (influence[:reach, :reach] > 0).all()
    influence[:reach, :reach] = 0
    assert (influence == 0).all()


@pytest.mark.parametrize("size", [48, 40, 22], ids=["larger", "not-a-window-multiple", "smaller"])
def test_other_image_sizes(tester, size):
    config = tester.get_config()
    model = ManoForImageClassification(config).eval()
    with torch.no_grad():
        outputs = model(tester.pixel_values(size), output_hidden_states=True)
    assert outputs.logits.shape == (tester.batch_size, config.num_labels)
    assert torch.isfinite(outputs.logits).all()
    height, width = tester.expected_grid(size)
    assert outputs.reshaped_hidden_states[-1].shape[-2:] == (height, width)


def test_level_count_follows_the_grid(tester):
    config = tester.get_config()
    layer = ManoModel(config).encoder.layers[0].blocks[0]
    side = config.image_size // config.patch_size  # 16: 16 -> 8 -> 4
    assert layer.num_levels_for(side, side) == 3
    assert layer.num_levels_for(2 * side, 2 * side) == 4  # larger input, one more level, far field kept
    assert layer.num_levels_for(20, 20) == 3  # 20 -> 10 -> 5
    assert layer.num_levels_for(side // 2, side // 2) == 2
    last_stage_layer = ManoModel(config.__class__(**tester.config_kwargs | {"num_levels": [3, 1]})).encoder.layers[1]
    assert last_stage_layer.blocks[0].up is None and last_stage_layer.blocks[0].num_levels_for(64, 64) == 1


def test_far_field_is_used_at_other_sizes(tester):
    """At a larger input the projectors still act: zeroing `up` changes the output."""
    config = tester.get_config()
    model = ManoModel(config).eval()
    pixel_values = tester.pixel_values(48)
    with torch.no_grad():
        with_far_field = model(pixel_values).last_hidden_state
        for stage in model.encoder.layers:
            for block in stage.blocks:
                if block.up is not None:
                    block.up.weight.zero_()
        without_far_field = model(pixel_values).last_hidden_state
    assert (with_far_field - without_far_field).abs().max() > 1e-4


# ----------------------------------------------------------------------------------------------------------------------
# Training behaviour


def test_every_parameter_gets_a_gradient_and_no_nan(tester):
    config = tester.get_config()
    model = ManoForImageClassification(config).train()
    labels = torch.arange(tester.batch_size) % config.num_labels
    outputs = model(tester.pixel_values(), labels=labels)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_projector_type_pool_has_no_parameters(tester):
    config = tester.get_config()
    config.projector_type = "pool"
    model = ManoModel(config).eval()
    assert projector_keys(model) == set()
    layer = model.encoder.layers[0].blocks[0]
    assert layer.num_levels == 3 and layer.down is not None
    with torch.no_grad():
        assert torch.isfinite(model(tester.pixel_values()).last_hidden_state).all()


def test_level_weighting_matters_from_three_levels_on(tester):
    """`vcycle` weighs the i-th coarse contribution by 1 / (i + 1), `sum` by 1: with two levels both give the one
    weight 1 (the same output); with three, the second-coarsest contribution is halved under `vcycle` only."""
    pixel_values = tester.pixel_values()
    outputs = {}
    for levels in ([2, 2], [3, 2]):
        for weighting in ("vcycle", "sum"):
            torch.manual_seed(0)
            config = tester.get_config().__class__(
                **tester.config_kwargs | {"level_weighting": weighting, "num_levels": levels}
            )
            with torch.no_grad():
                outputs[levels[0], weighting] = ManoModel(config).eval()(pixel_values).last_hidden_state
    assert torch.equal(outputs[2, "vcycle"], outputs[2, "sum"])
    assert not torch.allclose(outputs[3, "vcycle"], outputs[3, "sum"])


def test_gradient_checkpointing_gives_the_same_gradients(tester):
    config = tester.get_config()
    model = ManoForImageClassification(config).train()
    checkpointed = copy.deepcopy(model)
    if hasattr(checkpointed, "activation_checkpointing_enable"):  # transformers 5.23 and later
        checkpointed.activation_checkpointing_enable()
        assert checkpointed.is_activation_checkpointing
    else:
        checkpointed.gradient_checkpointing_enable()
        assert checkpointed.is_gradient_checkpointing
    labels = torch.arange(tester.batch_size) % config.num_labels
    pixel_values = tester.pixel_values()
    model(pixel_values, labels=labels).loss.backward()
    checkpointed(pixel_values, labels=labels).loss.backward()
    # Recomputing the forward runs the same float32 kernels on the same inputs, so the gradients agree to rounding
    # at most; assert_close's float32 default (rtol 1.3e-6, atol 1e-5) is a few ulps on this tiny model, while a
    # recomputation that saw other inputs (dropout state, stale caches) would be off at 1e-2.
    for (name, parameter), other in zip(model.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(parameter.grad, other.grad, msg=name)


# ----------------------------------------------------------------------------------------------------------------------
# The fused SDPA path against the eager path


def outputs_and_gradients(model, pixel_values, labels, implementation: str):
    model.set_attn_implementation(implementation)
    model.zero_grad(set_to_none=True)
    outputs = model(pixel_values, labels=labels)
    outputs.loss.backward()
    return outputs.logits.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize(
    "size, one_image",
    [(32, False), (40, False), (22, False), (32, True)],
    ids=["planned-size", "padded", "smaller", "one-image"],
)
def test_sdpa_path_equals_eager_path(tester, size, one_image):
    """Every level's windows in one SDPA call compute the eager V-cycle, outputs and gradients, at trained scales:
    equal in float64, and in float32 as close to the float64 values as the eager path's own float32 results.
    One image takes the other layout of the fused path (windows as SDPA's batch under a per-window shift mask)."""
    config = tester.get_config()
    assert ManoModel(config).config._attn_implementation == "sdpa"  # the default where SDPA is available
    config.level_weighting = "sum"
    model = make_trained_like(ManoForImageClassification(config)).train()  # dropout 0: train mode only adds autograd
    batch_size = 1 if one_image else tester.batch_size
    pixel_values = tester.pixel_values(size)[:batch_size]
    labels = torch.arange(batch_size) % config.num_labels
    float32 = {impl: outputs_and_gradients(model, pixel_values, labels, impl) for impl in ("eager", "sdpa")}
    model.double()
    float64 = {impl: outputs_and_gradients(model, pixel_values.double(), labels, impl) for impl in ("eager", "sdpa")}
    torch.testing.assert_close(float64["sdpa"][0], float64["eager"][0], rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)
    assert_as_accurate(float32["sdpa"][0], float32["eager"][0], float64["eager"][0], what="logits")
    names = [name for name, _ in model.named_parameters()]
    for name, sdpa64, eager64 in zip(names, float64["sdpa"][1], float64["eager"][1]):
        # at the smaller size stage 2 plans one level: its projectors get no gradient on either path
        assert (sdpa64 is None) == (eager64 is None), name
        if sdpa64 is not None:
            torch.testing.assert_close(sdpa64, eager64, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL, msg=name)

    # float32 gradients: the fused path folds the logit scale into the query, so the scale's gradient (a sum over
    # every window of softmax gradients that cancel) is summed in another order. At trained scales both paths are
    # off the float64 gradient by about 1e-4 relative (measured 1e-5 to 1.6e-4); a fault in a float32 kernel would
    # be of order 1. 1e-2 sits between the two.
    def flat(gradients):
        return torch.cat([g.double().flatten() for g in gradients if g is not None])

    reference = flat(float64["eager"][1])
    assert (flat(float32["sdpa"][1]) - reference).norm() <= 1e-2 * reference.norm()


@pytest.fixture
def torch_threads(request):
    """Runs the test with `request.param` torch threads (which core the fused path takes depends on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("torch_threads", [1, 2], ids=["sdpa-core", "blocked-core"], indirect=True)
@pytest.mark.parametrize(
    "size, one_image",
    [(32, False), (40, False), (22, False), (32, True)],
    ids=["planned-size", "padded", "smaller", "one-image"],
)
def test_fused_path_inference_equals_eager_path(tester, size, one_image, torch_threads):
    """Without autograd the fused path runs its attention core through SDPA on one CPU thread and through the
    blocked matrix products on more (both mask layouts: one image, or a batch under per-window shift masks): every
    level's result equals the eager V-cycle's in float64 at trained scales."""
    from transformers_mano.models.mano.sdpa_attention_mano import use_blocked_core

    config = tester.get_config()
    config.level_weighting = "sum"
    model = make_trained_like(ManoForImageClassification(config)).eval().double()
    pixel_values = tester.pixel_values(size)[: 1 if one_image else tester.batch_size].double()
    with torch.no_grad():
        assert use_blocked_core(pixel_values, 0.0) == (torch_threads > 1)
        logits = {}
        for implementation in ("eager", "sdpa"):
            model.set_attn_implementation(implementation)
            logits[implementation] = model(pixel_values).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_blocked_core_runs_where_it_pays_only():
    """The blocked core serves CPU inference in float32/64 on several threads; autograd, dropout, bfloat16, autocast
    and one thread keep SDPA."""
    from transformers_mano.models.mano.sdpa_attention_mano import use_blocked_core

    windows, before = torch.zeros(1), torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            assert use_blocked_core(windows, 0.0) and not use_blocked_core(windows, 0.1)
            assert use_blocked_core(windows.double(), 0.0)
            assert not use_blocked_core(windows.bfloat16(), 0.0)  # SDPA keeps float32 scores in bfloat16
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert not use_blocked_core(windows, 0.0)
        assert not use_blocked_core(windows, 0.0)  # autograd on
        torch.set_num_threads(1)
        with torch.no_grad():
            assert not use_blocked_core(windows, 0.0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("per_window", [False, True], ids=["one-table", "per-window-mask"])
@pytest.mark.parametrize("block_bytes", [1, 3 * 4 * 4 * 8 * 2, 1 << 20], ids=["one-window", "two-windows", "all"])
def test_blocked_window_attention_equals_sdpa(per_window, block_bytes):
    """Blocks of any size, ones that do not divide the windows of an image included (5 windows in blocks of 2),
    give softmax(q k^T + mask) v as SDPA computes it, per image of a batch under a per-window mask."""
    from torch.nn import functional as F

    from transformers_mano.models.mano.sdpa_attention_mano import blocked_window_attention

    generator = torch.Generator().manual_seed(0)
    images, num_windows, heads, tokens, head_dim = 2, 5, 3, 4, 6
    query, key, value = (
        torch.randn(images * num_windows, heads, tokens, head_dim, generator=generator, dtype=torch.float64)
        for _ in range(3)
    )
    mask = 10 * torch.randn(num_windows if per_window else 1, heads, tokens, tokens, generator=generator).double()
    expected = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask.repeat(images, 1, 1, 1) if per_window else mask, scale=1.0
    )
    blocked = blocked_window_attention(query, key, value, mask, block_bytes=block_bytes)
    torch.testing.assert_close(blocked, expected, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_inference_position_bias_is_kept_until_what_it_is_computed_from_changes(tester):
    """Without autograd the fused path computes a layer's position bias once and keeps it while the MLP's
    parameters and the coordinate table are equal by value; an edit of either (no version counter needed) makes it
    compute the bias again, equal to a fresh computation."""
    from transformers_mano.models.mano.sdpa_attention_mano import position_bias, reused_position_bias

    layer = ManoModel(tester.get_config()).eval().encoder.layers[0].blocks[0]
    attention = layer.attention.self
    with torch.no_grad():
        first = reused_position_bias(layer)
        assert reused_position_bias(layer) is first
        for edit in (attention.continuous_position_bias_mlp[0].bias.data, attention.relative_coords_table):
            edit.add_(0.25)
            again = reused_position_bias(layer)
            assert again is not first and not torch.equal(again, first)
            assert torch.equal(again, position_bias(layer))
            first = again


@pytest.mark.parametrize("update", ["in-place", "fused-adamw"])
def test_inference_mask_cache_follows_the_weights(tester, update):
    """The cached attention mask of the fused path is rebuilt when the position-bias weights change, including
    through a fused optimiser step, which does not bump the parameters' version counters. In float64, so that the
    cached path must equal the eager one up to reordered rounding."""
    model = ManoModel(tester.get_config()).double().eval()
    pixel_values = tester.pixel_values().double()
    with torch.no_grad():
        first = model(pixel_values).last_hidden_state
        assert torch.equal(model(pixel_values).last_hidden_state, first)  # served from the cache
    if update == "in-place":
        with torch.no_grad():
            for stage in model.encoder.layers:
                for block in stage.blocks:
                    block.attention.self.continuous_position_bias_mlp[2].weight.mul_(3.0)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
        model.train()
        model(pixel_values).last_hidden_state.square().mean().backward()
        optimizer.step()
        model.eval()
    with torch.no_grad():
        cached = model(pixel_values).last_hidden_state
        model.set_attn_implementation("eager")
        eager = model(pixel_values).last_hidden_state
    assert not torch.allclose(cached, first)
    torch.testing.assert_close(cached, eager, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_torch_compile(tester):
    """`aot_eager` traces the fused path (caches included) into one graph that runs the same operations; float64
    leaves only reordered rounding between the two."""
    model = ManoForImageClassification(tester.get_config()).double().eval()
    pixel_values = tester.pixel_values().double()
    with torch.no_grad():
        expected = model(pixel_values).logits
        compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
        torch.testing.assert_close(compiled(pixel_values).logits, expected, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_bf16_autocast_has_no_nan(tester, attn_implementation):
    model = ManoForImageClassification(tester.get_config()).train()
    model.set_attn_implementation(attn_implementation)
    labels = torch.arange(tester.batch_size) % model.config.num_labels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(tester.pixel_values(40), labels=labels)
    outputs.loss.backward()
    assert torch.isfinite(outputs.logits.float()).all() and torch.isfinite(outputs.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------------
# transformers behaviours


def test_output_attentions_and_hidden_states_like_swinv2(tester):
    mano = ManoModel(tester.get_config()).eval()
    swinv2 = Swinv2Model(swinv2_config(tester)).eval()
    pixel_values = tester.pixel_values()
    with torch.no_grad():
        mano_out = mano(pixel_values, output_attentions=True, output_hidden_states=True)
        swinv2_out = swinv2(pixel_values, output_attentions=True, output_hidden_states=True)
    # MANO returns the full-resolution level's attention: the same shapes as SwinV2
    assert [a.shape for a in mano_out.attentions] == [a.shape for a in swinv2_out.attentions]
    assert [h.shape for h in mano_out.hidden_states] == [h.shape for h in swinv2_out.hidden_states]
    assert [h.shape for h in mano_out.reshaped_hidden_states] == [h.shape for h in swinv2_out.reshaped_hidden_states]
    probabilities = mano_out.attentions[0]
    torch.testing.assert_close(probabilities.sum(-1), torch.ones_like(probabilities.sum(-1)))


def test_return_dict_false(tester):
    model = ManoForImageClassification(tester.get_config()).eval()
    pixel_values = tester.pixel_values()
    with torch.no_grad():
        as_dict = model(pixel_values, output_hidden_states=True)
        as_tuple = model(pixel_values, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.logits)
    assert len(as_tuple[1]) == len(as_dict.hidden_states)


def test_meta_device_construction():
    with torch.device("meta"):
        model = ManoForImageClassification(ManoConfig(num_labels=10))
    assert all(p.device.type == "meta" for p in model.parameters())
    assert len(projector_keys(model)) == 2 * (2 + 2)


def test_save_load_and_auto_round_trip(tester, tmp_path):
    config = tester.get_config()
    model = ManoForImageClassification(config).eval()
    model.save_pretrained(tmp_path)
    pixel_values = tester.pixel_values()
    with torch.no_grad():
        expected = model(pixel_values).logits
        reloaded = ManoForImageClassification.from_pretrained(tmp_path).eval()
        auto = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
        assert type(auto) is ManoForImageClassification
        assert torch.equal(reloaded(pixel_values).logits, expected)
        assert torch.equal(auto(pixel_values).logits, expected)
        base = AutoModel.from_pretrained(tmp_path).eval()
        assert type(base) is ManoModel
        assert torch.equal(base(pixel_values).pooler_output, model.swinv2(pixel_values).pooler_output)


def test_bf16_loading(tester, tmp_path):
    model = ManoForImageClassification(tester.get_config())
    model.save_pretrained(tmp_path)
    bf16 = ManoForImageClassification.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    with torch.no_grad():
        logits = bf16(tester.pixel_values().to(torch.bfloat16)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_torch_export_and_jit_trace(tester):
    model = ManoForImageClassification(tester.get_config()).eval()
    pixel_values = tester.pixel_values()
    # the exported and traced graphs run the eager float32 ops (possibly fused or reordered by the tracer): the
    # float32 default of assert_close (a few ulps on this tiny model) separates that from a graph that lost a level
    with torch.no_grad():
        expected = model(pixel_values).logits
        exported = torch.export.export(model, (pixel_values,))
        torch.testing.assert_close(exported.module()(pixel_values).logits, expected)
        traced = torch.jit.trace(model, (pixel_values,), strict=False)
        torch.testing.assert_close(traced(pixel_values)["logits"], expected)
        # the trace computes the position bias from the weights (nothing kept from the traced call is a constant)
        for stage in model.base_model.encoder.layers:
            for block in stage.blocks:
                block.attention.self.continuous_position_bias_mlp[2].weight.mul_(3.0)
        changed = model(pixel_values).logits
        assert not torch.allclose(changed, expected)
        torch.testing.assert_close(traced(pixel_values)["logits"], changed)


def test_auto_registration(tester, tmp_path):
    config = AutoConfig.for_model("mano")
    assert isinstance(config, ManoConfig) and config.resolved_num_levels() == [3, 2, 1, 1]
    tiny = tester.get_config()
    assert type(AutoModel.from_config(tiny)) is ManoModel
    assert type(AutoModelForImageClassification.from_config(tiny)) is ManoForImageClassification
    assert type(AutoModelForMaskedImageModeling.from_config(tiny)) is ManoForMaskedImageModeling
    assert type(AutoBackbone.from_config(tiny)) is ManoBackbone
    tiny.save_pretrained(tmp_path)
    # a processor file that names no class: the class comes from the registration of the config's model type
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == "ViTImageProcessorPil"
    assert processor.size == {"height": 32, "width": 32}


# ----------------------------------------------------------------------------------------------------------------------
# Configuration


def test_default_config_is_mano_tiny():
    config = ManoConfig()
    assert (config.image_size, config.window_size, config.embed_dim) == (256, 8, 96)
    assert list(config.depths) == [2, 2, 6, 2] and list(config.num_heads) == [3, 6, 12, 24]
    assert config.resolved_num_levels() == [3, 2, 1, 1]
    assert (config.sampling_rate, config.projector_type, config.level_weighting) == (2, "conv", "vcycle")


def test_swinv2_arguments_alone_make_a_valid_config():
    swinv2 = Swinv2Config(
        image_size=384, window_size=12, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]
    )
    config = ManoConfig(**swinv2.to_dict())
    # 96 -> 48 -> 24 (two windows of 12), 48 -> 24, 24, 12
    assert config.resolved_num_levels() == [3, 2, 1, 1]
    assert config.model_type == "mano" and config.to_dict()["model_type"] == "mano"
    with pytest.raises(ValueError, match="'vit'"):
        ManoConfig(model_type="vit")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"projector_type": "fft"}, "projector_type"),
        ({"level_weighting": "mean"}, "level_weighting"),
        ({"projector_init": "xavier"}, "projector_init"),
        ({"num_levels": "deep"}, "num_levels"),
        ({"num_levels": [3, 2, 1]}, "num_levels"),
        ({"num_levels": [8, 2, 1, 1]}, "num_levels[0]"),
        ({"num_levels": [0, 1, 1, 1]}, "num_levels holds counts below 1"),
        ({"sampling_rate": 1}, "sampling_rate"),
        ({"num_level": [1, 1, 1, 1]}, "num_level"),
        ({"sampling_rate": 2.5}, "sampling_rate"),
        ({"num_levels": 3}, "num_levels"),
    ],
    ids=[
        "projector-type",
        "weighting",
        "init",
        "levels-string",
        "levels-length",
        "levels-too-deep",
        "levels-zero",
        "sampling-rate",
        "typo",
        "sampling-rate-float",
        "levels-int",
    ],
)
def test_invalid_config_values_name_the_field(kwargs, field):
    with pytest.raises((ValueError, StrictDataclassError), match=field.replace("[", r"\[").replace("]", r"\]")):
        ManoConfig(**kwargs)


@pytest.mark.parametrize(
    "field, value",
    [("projector_type", "fft"), ("sampling_rate", 2.5), ("num_levels", 3), ("num_levels", [0, 1, 1, 1])],
    ids=["choice", "type", "levels-type", "levels-value"],
)
def test_config_assignments_are_checked_like_arguments(field, value):
    config = ManoConfig()
    with pytest.raises(StrictDataclassError, match=f"field '{field}'"):
        setattr(config, field, value)
    assert getattr(config, field) == getattr(ManoConfig(), field)


def test_embeddings_without_pixel_values_name_them():
    # Swinv2Model.forward checks first; the embeddings module (also reached by the backbone) checks on its own
    config = ManoConfig(image_size=32, embed_dim=8, depths=[1], num_heads=[1], window_size=4)
    with pytest.raises(ValueError, match="pixel_values are required"):
        ManoModel(config).embeddings(None)


def test_config_checks_that_involve_several_fields_run_again_at_save(tmp_path):
    config = ManoConfig(num_levels=[3, 2, 1, 1])
    config.depths = [2, 2]  # each assignment is valid alone; together they leave two counts too many
    with pytest.raises(StrictDataclassError, match=r"num_levels needs one entry per stage \(2"):
        config.save_pretrained(tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_config_round_trip(tmp_path):
    config = ManoConfig(num_levels=[2, 2, 1, 1], level_weighting="sum", projector_type="pool")
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, ManoConfig)
    assert (reloaded.num_levels, reloaded.level_weighting, reloaded.projector_type) == ([2, 2, 1, 1], "sum", "pool")


# ----------------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "shape, message",
    [((2, 1, 32, 32), "channels"), ((2, 3, 1, 32), "smaller than one"), ((3, 32, 32), "batch_size, num_channels")],
    ids=["greyscale", "smaller-than-a-patch", "no-batch-dimension"],
)
def test_bad_pixel_values(tester, shape, message):
    model = ManoForImageClassification(tester.get_config())
    with pytest.raises(ValueError, match=message):
        model(torch.randn(*shape))


def test_fused_path_caches_follow_to_deepcopy_and_compile(tester):
    """The fused path's derived tables (token permutations, the inference mask) are keyed by what they depend on:
    after `.to(float64)` a float64 mask is built, a deep copy keeps an independent cache, and a compiled model
    (which traces the lookups) computes what the eager path computes."""
    model = ManoModel(tester.get_config()).eval()
    pixel_values = tester.pixel_values()
    layer = model.encoder.layers[0].blocks[1]  # shifted: it keeps an inference mask
    with torch.no_grad():
        model(pixel_values)
        assert layer.window_cache.index and layer.window_cache.mask[2].dtype == torch.float32
        model.double()
        float64 = model(pixel_values.double()).last_hidden_state
        assert layer.window_cache.mask[2].dtype == torch.float64
        copy_ = copy.deepcopy(model)
        assert copy_.encoder.layers[0].blocks[1].window_cache is not layer.window_cache
        with torch.no_grad():
            copy_.encoder.layers[0].blocks[1].attention.self.logit_scale.mul_(0.5)
        changed = copy_(pixel_values.double()).last_hidden_state
        torch.testing.assert_close(model(pixel_values.double()).last_hidden_state, float64, rtol=0, atol=0)
        assert not torch.allclose(changed, float64)
        copy_.set_attn_implementation("eager")
        torch.testing.assert_close(
            changed, copy_(pixel_values.double()).last_hidden_state, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
        )
        compiled = torch.compile(model, backend="aot_eager")
        torch.testing.assert_close(
            compiled(pixel_values.double()).last_hidden_state, float64, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
        )


def test_an_attention_implementation_mano_has_not_is_refused(tester):
    model = ManoModel(tester.get_config()).eval()
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(ValueError, match="MANO layers run \\['eager', 'sdpa'\\] attention, not 'flex_attention'"):
        model(tester.pixel_values())


def test_tracing_a_fresh_model_leaves_its_caches_usable(tester):
    """`torch.export` traces with fake tensors: tables built while tracing must not stay in the caches."""
    model = ManoForImageClassification(tester.get_config()).eval()
    pixel_values = tester.pixel_values()
    with torch.no_grad():
        exported = torch.export.export(model, (pixel_values,))
        layers = [block for stage in model.swinv2.encoder.layers for block in stage.blocks]
        assert all(not layer.window_cache.index and layer.window_cache.mask is None for layer in layers)
        torch.testing.assert_close(exported.module()(pixel_values).logits, model(pixel_values).logits)
