"""Multipole attention: the level loop of MANO (arXiv 2507.02748), free of any config object.

The fast multipole method splits an n-body sum into a near field, computed exactly, and a far field,
computed on coarser and coarser groupings of the bodies. MANO does the same for attention on a grid:

    out = A(x_0) + w_0 * U(A(x_1) + w_1 * U(A(x_2) + ...)),    x_l = D(x_{l-1})

where A is a windowed attention (the near field of one level), D a learned r x r strided projector
that coarsens the grid by r per side and U its transposed counterpart. One A, one D and one U serve
every level. Level l holds N / r^(2l) tokens, each attending within a window of M tokens, so the sum
costs O(N M d): linear in the number N of grid points, with a receptive field that covers the grid.

Everything here works on channel-last grids of shape (B, H, W, C) and on callables, so the SwinV2
layers and the neural operator share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F


LevelWeighting = Literal["vcycle", "sum"]
ProjectorType = Literal["conv", "gated", "pool"]
ProjectorInit = Literal["avg_pool_zero_up", "avg_pool_nearest_up", "random"]

LEVEL_WEIGHTINGS: tuple[str, ...] = get_args(LevelWeighting)
PROJECTOR_TYPES: tuple[str, ...] = get_args(ProjectorType)
PROJECTOR_INITS: tuple[str, ...] = get_args(ProjectorInit)


def level_weights(num_levels: int, weighting: LevelWeighting = "vcycle") -> list[float]:
    """Weights `w_i` of the upsampled coarse contributions, coarsest first (`num_levels - 1` of them).

    `"vcycle"` is `w_i = 1 / (i + 1)` as in the official physics code; `"sum"` is the plain sum of the
    paper's text.
    """
    if weighting == "vcycle":
        return [1.0 / (i + 1) for i in range(num_levels - 1)]
    if weighting == "sum":
        return [1.0] * (num_levels - 1)
    raise ValueError(f"level weighting must be one of {LEVEL_WEIGHTINGS}, got {weighting!r}")


def coarse_grid_size(height: int, width: int, sampling_rate: int, steps: int = 1) -> tuple[int, int]:
    """Grid size after `steps` coarsenings by `sampling_rate` (each pads up to a multiple first)."""
    for _ in range(steps):
        height, width = math.ceil(height / sampling_rate), math.ceil(width / sampling_rate)
    return height, width


def plan_num_levels(height: int, width: int, min_coarse_side: int, sampling_rate: int) -> int:
    """Largest level count (full resolution included) whose coarsest grid keeps `min_coarse_side` tokens per side.

    A grid smaller than `min_coarse_side` gets one level: plain windowed attention.
    """
    if min_coarse_side < 1 or sampling_rate < 2:
        raise ValueError(f"need min_coarse_side >= 1 and sampling_rate >= 2, got {min_coarse_side}, {sampling_rate}")
    num_levels = 1
    while True:
        next_height, next_width = coarse_grid_size(height, width, sampling_rate)
        if min(next_height, next_width) < min_coarse_side or (next_height, next_width) == (height, width):
            return num_levels
        height, width, num_levels = next_height, next_width, num_levels + 1


def _pad_to_multiple(grid: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) grid at the bottom and right so that H and W are multiples of `multiple`."""
    pad_bottom = -grid.shape[1] % multiple
    pad_right = -grid.shape[2] % multiple
    if pad_bottom or pad_right:
        grid = F.pad(grid, (0, 0, 0, pad_right, 0, pad_bottom))
    return grid


class MultipoleDownsample(nn.Conv2d):
    """Learned coarsening `D`: an r x r convolution with stride r and no bias, on (B, H, W, C) grids.

    (B, H, W, C) -> (B, ceil(H / r), ceil(W / r), C); the grid is zero-padded to a multiple of r first.
    """

    def __init__(self, channels: int, sampling_rate: int = 2):
        super().__init__(channels, channels, kernel_size=sampling_rate, stride=sampling_rate, bias=False)
        self.sampling_rate = sampling_rate

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        # the strided convolution as one matrix product over the r*r*C values of each patch, channel-last
        # throughout: no NCHW round trip
        rate = self.sampling_rate
        grid = _pad_to_multiple(grid, rate)
        batch_size, height, width, channels = grid.shape
        patches = grid.view(batch_size, height // rate, rate, width // rate, rate, channels).transpose(2, 3)
        patches = patches.reshape(batch_size, height // rate, width // rate, rate * rate * channels)  # B, h, w, r*r*C
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)  # C_out, r*r*C_in
        return F.linear(patches, weight)  # B, H/r, W/r, C

    def average_pooling_weight(self) -> torch.Tensor:
        """Identity over channels, `1 / r^2` per tap: the coarse token is the mean of its r x r children."""
        eye = torch.eye(self.out_channels, device=self.weight.device, dtype=self.weight.dtype)
        taps = torch.full_like(self.weight[0, 0], 1.0 / self.sampling_rate**2)
        return eye[:, :, None, None] * taps  # C_out, C_in, r, r


class MultipoleUpsample(nn.ConvTranspose2d):
    """Learned refinement `U`: an r x r transposed convolution with stride r and no bias, on (B, H, W, C) grids.

    (B, h, w, C) -> (B, r * h, r * w, C); the caller crops to the finer grid.
    """

    def __init__(self, channels: int, sampling_rate: int = 2):
        super().__init__(channels, channels, kernel_size=sampling_rate, stride=sampling_rate, bias=False)
        self.sampling_rate = sampling_rate

    def children_weight(self) -> torch.Tensor:
        """The transposed convolution as a matrix: (r*r*C_out, C_in), rows ordered (tap row, tap column, channel)."""
        return self.weight.permute(2, 3, 1, 0).reshape(-1, self.in_channels)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        # the stride-r transposed convolution as one matrix product giving every token its r*r children
        rate = self.sampling_rate
        batch_size, height, width, _ = grid.shape
        children = F.linear(grid, self.children_weight()).view(
            batch_size, height, width, rate, rate, self.out_channels
        )
        children = children.transpose(2, 3)  # B, h, r, w, r, C
        return children.reshape(batch_size, height * rate, width * rate, self.out_channels)  # B, r*h, r*w, C

    def nearest_weight(self) -> torch.Tensor:
        """Identity over channels on every tap: each coarse token is copied to its r x r children."""
        eye = torch.eye(self.in_channels, device=self.weight.device, dtype=self.weight.dtype)
        return eye[:, :, None, None] * torch.ones_like(self.weight[0, 0])  # C_in, C_out, r, r


class GatedMultipoleUpsample(MultipoleUpsample):
    """`U` with a learned gate per output channel: `U(x) = g * ConvT(x)`, the gate folded into the matrix product.

    The gate lets the far field start closed without starting `U` at zero. With `g = 0` and the transposed
    convolution at nearest copies (`projector_init="avg_pool_zero_up"`), the layer computes its single-level
    attention exactly, as a zero `U` does. A zero `U` opens by growing r*r*C^2 weights from nothing, each along its
    own noisy gradient; the gate opens along the copies, one number per channel whose gradient sums the
    correlation of the copied far field with the loss gradient over every token. (B, h, w, C) -> (B, r*h, r*w, C).
    """

    def __init__(self, channels: int, sampling_rate: int = 2):
        super().__init__(channels, sampling_rate)
        self.gate = nn.Parameter(torch.ones(channels))

    def children_weight(self) -> torch.Tensor:
        rate = self.sampling_rate
        return super().children_weight() * self.gate.repeat(rate * rate)[:, None]  # r*r*C_out, C_in

    def extra_repr(self) -> str:
        return super().extra_repr() + ", gated"


class PoolDownsample(nn.Module):
    """Parameter-free coarsening (the paper's ablation): r x r average pooling on (B, H, W, C) grids."""

    def __init__(self, sampling_rate: int = 2):
        super().__init__()
        self.sampling_rate = sampling_rate

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        grid = _pad_to_multiple(grid, self.sampling_rate).permute(0, 3, 1, 2)  # B, C, H, W
        return F.avg_pool2d(grid, self.sampling_rate).permute(0, 2, 3, 1)  # B, H/r, W/r, C

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}"


class NearestUpsample(nn.Module):
    """Parameter-free refinement (the paper's ablation): nearest-neighbour upsampling by r on (B, h, w, C) grids."""

    def __init__(self, sampling_rate: int = 2):
        super().__init__()
        self.sampling_rate = sampling_rate

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        rate = self.sampling_rate
        return grid.repeat_interleave(rate, dim=1).repeat_interleave(rate, dim=2)  # B, r*h, r*w, C

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}"


def build_projectors(
    channels: int, sampling_rate: int = 2, projector_type: ProjectorType = "conv"
) -> tuple[nn.Module, nn.Module]:
    """The (down, up) pair of one multipole layer, shared by all its levels."""
    if projector_type == "conv":
        return MultipoleDownsample(channels, sampling_rate), MultipoleUpsample(channels, sampling_rate)
    if projector_type == "gated":
        return MultipoleDownsample(channels, sampling_rate), GatedMultipoleUpsample(channels, sampling_rate)
    if projector_type == "pool":
        return PoolDownsample(sampling_rate), NearestUpsample(sampling_rate)
    raise ValueError(f"projector type must be one of {PROJECTOR_TYPES}, got {projector_type!r}")


def projector_initial_values(projector: nn.Module, projector_init: ProjectorInit) -> dict[str, torch.Tensor]:
    """The initial values of a learned projector's parameters under `projector_init`, by parameter name; a parameter
    left out keeps its default initialisation (`"random"`: PyTorch's, for the convolution weights).

    `projector_init` says what the far field is at the start: `"avg_pool_zero_up"`: `down` averages and the far
    field is zero (`up`'s weight is zero; a gated `up` copies each coarse token to its children behind a gate at
    zero), so the layer computes exactly its single-level attention until training opens it.
    `"avg_pool_nearest_up"`: `down` averages and `up` copies each coarse token to its r x r children (a gate at one).
    """
    if projector_init not in PROJECTOR_INITS:
        raise ValueError(f"projector init must be one of {PROJECTOR_INITS}, got {projector_init!r}")
    if not isinstance(projector, (MultipoleDownsample, MultipoleUpsample)):
        raise TypeError(f"{type(projector).__name__} has no learned weight to initialise")
    values = {}
    if isinstance(projector, GatedMultipoleUpsample):
        closed = projector_init == "avg_pool_zero_up"
        values["gate"] = torch.zeros_like(projector.gate) if closed else torch.ones_like(projector.gate)
        if projector_init != "random":
            values["weight"] = projector.nearest_weight()
    elif isinstance(projector, MultipoleDownsample) and projector_init != "random":
        values["weight"] = projector.average_pooling_weight()
    elif projector_init == "avg_pool_zero_up":
        values["weight"] = torch.zeros_like(projector.weight)
    elif projector_init == "avg_pool_nearest_up":
        values["weight"] = projector.nearest_weight()
    return values


def projector_parameter_count(channels: int, sampling_rate: int = 2, projector_type: ProjectorType = "conv") -> int:
    """Parameters of one layer's (down, up) pair: two r x r convolutions of C x C, and a gate of C if gated."""
    if projector_type not in PROJECTOR_TYPES:
        raise ValueError(f"projector type must be one of {PROJECTOR_TYPES}, got {projector_type!r}")
    convolutions = 2 * channels * channels * sampling_rate * sampling_rate if projector_type != "pool" else 0
    return convolutions + (channels if projector_type == "gated" else 0)


def far_field_closed_at_start(projector_type: ProjectorType, projector_init: ProjectorInit) -> bool:
    """Whether a freshly initialised layer computes exactly its single-level attention: learned projectors whose
    `up` (or its gate) starts at zero. Parameter-free projectors are always open."""
    return projector_type != "pool" and projector_init == "avg_pool_zero_up"


@torch.no_grad()
def init_projectors(down: nn.Module, up: nn.Module, projector_init: ProjectorInit) -> None:
    """Initialise a (down, up) pair in place; parameter-free projectors are left alone."""
    for projector in (down, up):
        if isinstance(projector, (MultipoleDownsample, MultipoleUpsample)):
            values = projector_initial_values(projector, projector_init)
            if "weight" not in values:
                projector.reset_parameters()
            for name, value in values.items():
                getattr(projector, name).copy_(value)


def multipole_attention(
    grid: torch.Tensor,
    attend: Callable[[torch.Tensor, int], torch.Tensor],
    down: Callable[[torch.Tensor], torch.Tensor] | None,
    up: Callable[[torch.Tensor], torch.Tensor] | None,
    num_levels: int,
    weighting: LevelWeighting = "vcycle",
) -> torch.Tensor:
    """One multipole attention: the V-cycle of the paper's Figure 1.

    1. coarsen: `x_l = down(x_{l-1})` for l = 1 .. L-1 (the same `down` at every level);
    2. attend: `o_l = attend(x_l, l)`, the near field of level l (the same attention at every level);
    3. upsample and accumulate, coarse to fine: `res = o_l + w_i * up(res)`, cropped to the size of `o_l`.

    Args:
        grid: (B, H, W, C) tokens at full resolution.
        attend: maps a (B, h, w, C) grid and its level index to a (B, h, w, C) grid.
        down, up: the shared projectors; unused (may be None) when `num_levels == 1`.
        num_levels: L, counted including the full-resolution level. L = 1 is `attend(grid, 0)` exactly.
        weighting: how coarse contributions are weighted, see `level_weights`.

    Returns:
        (B, H, W, C), the sum of every level's attention output at full resolution.
    """
    grids = coarsen_levels(grid, down, num_levels)
    outputs = [attend(level_grid, level) for level, level_grid in enumerate(grids)]
    return accumulate_levels(outputs, up, weighting)


def coarsen_levels(
    grid: torch.Tensor, down: Callable[[torch.Tensor], torch.Tensor] | None, num_levels: int
) -> list[torch.Tensor]:
    """The grids of every level, finest first: `x_0 = grid`, `x_l = down(x_{l-1})`, each (B, h_l, w_l, C)."""
    grids = [grid]
    for _ in range(1, num_levels):
        grids.append(down(grids[-1]))  # B, ceil(h/r), ceil(w/r), C
    return grids


def accumulate_levels(
    outputs: Sequence[torch.Tensor],
    up: Callable[[torch.Tensor], torch.Tensor] | None,
    weighting: LevelWeighting = "vcycle",
) -> torch.Tensor:
    """Fold per-level outputs (finest first, each (B, h_l, w_l, C)) into the finest grid, coarse to fine."""
    weights = level_weights(len(outputs), weighting)
    result = outputs[-1]
    for weight, finer in zip(weights, reversed(outputs[:-1])):
        upsampled = up(result)[:, : finer.shape[1], : finer.shape[2]]  # crop the padding of the coarsening
        result = finer + weight * upsampled if weight != 1.0 else finer + upsampled
    return result


__all__ = [
    "LEVEL_WEIGHTINGS",
    "PROJECTOR_INITS",
    "PROJECTOR_TYPES",
    "GatedMultipoleUpsample",
    "MultipoleDownsample",
    "MultipoleUpsample",
    "NearestUpsample",
    "PoolDownsample",
    "accumulate_levels",
    "build_projectors",
    "coarse_grid_size",
    "coarsen_levels",
    "far_field_closed_at_start",
    "init_projectors",
    "level_weights",
    "multipole_attention",
    "plan_num_levels",
    "projector_initial_values",
    "projector_parameter_count",
]
