"""The torch-only level loop, against a written-out reference."""

from __future__ import annotations

import pytest
import torch

from transformers_mano.multipole import (
    GatedMultipoleUpsample,
    MultipoleDownsample,
    MultipoleUpsample,
    NearestUpsample,
    PoolDownsample,
    build_projectors,
    far_field_closed_at_start,
    init_projectors,
    level_weights,
    multipole_attention,
    plan_num_levels,
    projector_parameter_count,
)


@pytest.mark.parametrize(
    "weighting, expected", [("vcycle", [1.0, 0.5, 1 / 3]), ("sum", [1.0, 1.0, 1.0])], ids=["vcycle", "sum"]
)
def test_level_weights(weighting, expected):
    assert level_weights(4, weighting) == pytest.approx(expected)
    assert level_weights(1, weighting) == []


@pytest.mark.parametrize(
    "grid, min_side, expected",
    [
        ((64, 64), 16, 3),
        ((32, 32), 16, 2),
        ((16, 16), 16, 1),
        ((8, 8), 16, 1),
        ((128, 128), 16, 4),
        ((15, 15), 4, 3),
        ((64, 16), 8, 2),
        ((1, 1), 1, 1),
        ((16, 16), 1, 5),
    ],
    ids=lambda value: str(value),
)
def test_plan_num_levels(grid, min_side, expected):
    assert plan_num_levels(*grid, min_side, 2) == expected


def test_multipole_attention_against_written_out_sum():
    """L = 3 with a pointwise `attend`: o_0 + 1 * up(o_1 + 1/2 * up(o_2)), written out by hand."""
    torch.manual_seed(0)
    grid = torch.randn(2, 7, 9, 4)  # odd sides: both coarsenings pad
    weight = torch.randn(4, 4)

    def attend(x, level):
        return torch.tanh(x @ weight) * (level + 1)

    down, up = PoolDownsample(2), NearestUpsample(2)
    x1 = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(grid, (0, 0, 0, 1, 0, 1)).permute(0, 3, 1, 2), 2)
    x1 = x1.permute(0, 2, 3, 1)  # 2, 4, 5, 4
    x2 = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x1, (0, 0, 0, 1, 0, 0)).permute(0, 3, 1, 2), 2)
    x2 = x2.permute(0, 2, 3, 1)  # 2, 2, 3, 4
    o0, o1, o2 = attend(grid, 0), attend(x1, 1), attend(x2, 2)
    level1 = o1 + 1.0 * o2.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :4, :5]
    expected = o0 + 0.5 * level1.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :7, :9]
    # vcycle weights are given coarsest first: the first upsampling gets 1, the next 1/2
    result = multipole_attention(grid, attend, down, up, num_levels=3, weighting="vcycle")
    torch.testing.assert_close(result, expected)


def test_one_level_is_the_attention_itself():
    grid = torch.randn(1, 5, 5, 3)
    result = multipole_attention(grid, lambda x, level: x * 2, None, None, num_levels=1)
    assert torch.equal(result, grid * 2)


def test_learned_projectors_initialised_as_pooling_match_the_parameter_free_ones():
    torch.manual_seed(0)
    grid = torch.randn(2, 6, 10, 8)
    down, up = build_projectors(8, 2, "conv")
    assert isinstance(down, MultipoleDownsample) and isinstance(up, MultipoleUpsample)
    init_projectors(down, up, "avg_pool_nearest_up")
    torch.testing.assert_close(down(grid), PoolDownsample(2)(grid))
    torch.testing.assert_close(up(grid), NearestUpsample(2)(grid))
    init_projectors(down, up, "avg_pool_zero_up")
    assert up(grid).abs().max() == 0
    with pytest.raises(ValueError, match="projector init"):
        init_projectors(down, up, "orthogonal")
    with pytest.raises(ValueError, match="projector type"):
        build_projectors(8, 2, "fft")


def test_shared_projectors_appear_once_in_named_parameters():
    down, up = build_projectors(4, 2, "conv")
    module = torch.nn.ModuleDict({"down": down, "up": up})
    seen = []
    multipole_attention(torch.randn(1, 16, 16, 4), lambda x, level: seen.append(x.shape) or x, down, up, num_levels=4)
    assert [tuple(shape[1:3]) for shape in seen] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [name for name, _ in module.named_parameters()] == ["down.weight", "up.weight"]


@pytest.mark.parametrize("rate", [2, 4])
def test_learned_projectors_equal_their_convolutions(rate):
    """The channel-last matrix-product forms compute the strided (transposed) convolutions they hold weights for."""
    torch.manual_seed(0)
    down, up = MultipoleDownsample(6, rate), MultipoleUpsample(6, rate)
    grid = torch.randn(2, 9, 13, 6)  # odd sides: the coarsening pads
    padded = torch.nn.functional.pad(grid, (0, 0, 0, -13 % rate, 0, -9 % rate)).permute(0, 3, 1, 2)
    expected_down = torch.nn.functional.conv2d(padded, down.weight, stride=rate).permute(0, 2, 3, 1)
    expected_up = torch.nn.functional.conv_transpose2d(grid.permute(0, 3, 1, 2), up.weight, stride=rate)
    torch.testing.assert_close(down(grid), expected_down)
    torch.testing.assert_close(up(grid), expected_up.permute(0, 2, 3, 1))


@pytest.mark.parametrize("rate", [2, 4])
def test_gated_upsample_is_its_gate_times_the_transposed_convolution(rate):
    torch.manual_seed(0)
    up = GatedMultipoleUpsample(6, rate)
    torch.nn.init.normal_(up.gate)
    grid = torch.randn(2, 3, 5, 6)
    convolution = torch.nn.functional.conv_transpose2d(grid.permute(0, 3, 1, 2), up.weight, stride=rate)
    torch.testing.assert_close(up(grid), (convolution * up.gate[:, None, None]).permute(0, 2, 3, 1))


def test_gated_projectors_start_closed_along_copies_and_open_through_the_gate():
    """Under the closed start the far field is exactly zero, `up` already copies, and of the projectors' parameters
    only the gate has a gradient (the loss sees `up`'s weight and `down` through the gate alone)."""
    torch.manual_seed(0)
    down, up = build_projectors(4, 2, "gated")
    init_projectors(down, up, "avg_pool_zero_up")
    grid = torch.randn(2, 8, 8, 4)
    assert torch.equal(up.gate, torch.zeros(4))
    torch.testing.assert_close(up.children_weight(), torch.zeros(16, 4))
    torch.testing.assert_close(up.weight, up.nearest_weight())
    result = multipole_attention(grid, lambda x, level: torch.tanh(x) * (level + 1), down, up, num_levels=3)
    assert torch.equal(result, torch.tanh(grid))
    result.square().sum().backward()
    assert up.gate.grad.abs().min() > 0
    assert up.weight.grad.abs().max() == 0 and down.weight.grad.abs().max() == 0
    init_projectors(down, up, "avg_pool_nearest_up")  # the open start: the gate at one, `up` copies
    torch.testing.assert_close(up(grid), NearestUpsample(2)(grid))
    assert projector_parameter_count(4, 2, "gated") == projector_parameter_count(4, 2, "conv") + 4
    assert far_field_closed_at_start("gated", "avg_pool_zero_up") and not far_field_closed_at_start(
        "pool", "avg_pool_zero_up"
    )
