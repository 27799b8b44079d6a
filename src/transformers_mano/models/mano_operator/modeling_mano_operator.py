"""The MANO neural operator: multipole attention on a grid of physical fields (arXiv 2507.02748, physics model).

The operator approximates a map G: a -> u between functions on the unit square, as a stack of residual blocks

    v_0(x) = P(a(x)),    v_{j+1} = v_j + K_j(v_j),    v_{j+1} = v_{j+1} + MLP_j(v_{j+1}),    u(x) = Q(v_J(x))

with P, Q pointwise and K_j the multipole attention `(K v)(x) = sum_l U^l A(D^l v)(x)`: a local softmax kernel
integral `A` on k x k windows of every level l of a grid coarsened by r per level. The coarsest level fits in one
window, so each K_j couples every pair of points of the domain at a cost linear in the number of points, and the
number of levels follows the input grid, so one set of weights runs at any resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...multipole import (
    MultipoleDownsample,
    MultipoleUpsample,
    accumulate_levels,
    build_projectors,
    coarsen_levels,
    projector_initial_values,
)
from .configuration_mano_operator import ManoOperatorConfig
from .window_kernel import fused_window_attention, kernel_applies


def relative_l2(predictions: torch.Tensor, targets: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Per-sample relative L2 error `||p - t|| / ||t||` (or its square, the relative MSE), shape (B,).

    Args:
        predictions, targets: (B, ...) fields; every dimension after the first is reduced.
    """
    error = (predictions - targets).flatten(1).pow(2).sum(1)
    norm = targets.flatten(1).pow(2).sum(1).clamp_min(torch.finfo(targets.dtype).tiny)
    ratio = error / norm
    return ratio if squared else ratio.sqrt()


def axis_positions(side: int, target: int, layout: str) -> torch.Tensor:
    """(side,) float64: where the points of a `side`-point axis sit, in index units of a `target`-point axis of the
    same interval; `layout` "corners" puts n points at i / (n - 1), "strided" at i / n."""
    index = torch.arange(side, dtype=torch.float64)
    if layout == "corners":
        return index * (target - 1) / max(side - 1, 1)
    return index * target / side


def interpolation_matrix(fine: int, coarse: int, layout: str) -> torch.Tensor:
    """(fine, coarse) float64: linear interpolation of values at `coarse` points onto `fine` points of the same
    interval (held constant past the last coarse point)."""
    if coarse == 1:
        return torch.ones(fine, 1, dtype=torch.float64)
    position = axis_positions(fine, coarse, layout).clamp(0, coarse - 1)
    low = position.floor().long().clamp(max=coarse - 2)
    fraction = position - low
    rows = torch.arange(fine)
    matrix = torch.zeros(fine, coarse, dtype=torch.float64)
    matrix[rows, low] = 1 - fraction
    matrix[rows, low + 1] += fraction
    return matrix


def nearest_matrix(fine: int, coarse: int, layout: str) -> torch.Tensor:
    """(coarse, fine) float64: for each point of a `coarse`-point axis, the value of the nearest of `fine` points of
    the same interval (on nested grids, the coarse point itself)."""
    nearest = axis_positions(coarse, fine, layout).round().long().clamp(0, fine - 1)
    return torch.eye(fine, dtype=torch.float64)[nearest]


def sampled_interpolation_matrix(fine: int, coarse: int, layout: str) -> torch.Tensor:
    """(fine, coarse) float64: linear interpolation of values held at the `fine` points nearest each of `coarse`
    points (the points `nearest_matrix` reads) onto all `fine` points (held constant past the last one). It is a
    right inverse of that sampling, `nearest_matrix(fine, coarse) @ this == I`, on nested grids or not; on nested
    grids it is `interpolation_matrix`."""
    if coarse == 1:
        return torch.ones(fine, 1, dtype=torch.float64)
    nodes = axis_positions(coarse, fine, layout).round().clamp(0, fine - 1)  # increasing when fine >= coarse
    position = torch.arange(fine, dtype=torch.float64)
    high = torch.searchsorted(nodes, position, right=True).clamp(1, coarse - 1)
    low = high - 1
    fraction = ((position - nodes[low]) / (nodes[high] - nodes[low])).clamp(0, 1)
    rows = torch.arange(fine)
    matrix = torch.zeros(fine, coarse, dtype=torch.float64)
    matrix[rows, low] = 1 - fraction
    matrix[rows, high] += fraction
    return matrix


@lru_cache(maxsize=64)
def resampling_matrix(
    source: int, target: int, layout: str, restriction: str = "sample", prolongation: str = "nominal"
) -> torch.Tensor:
    """(target, source) float64 resampling of an axis between two grids of one interval.

    Onto a finer grid, linear interpolation: with `prolongation` "nominal" from the coarse points' positions, with
    "consistent" and restriction "sample" from the positions of the fine points that "sample" reads (so that
    sampling the interpolated values gives back the coarse ones, on grids that are not nested too; with the other
    restrictions, whose values stand at the coarse points' positions, the same as "nominal"). Onto a coarser one, by
    `restriction`: "sample" the value at the fine point nearest each coarse point (on nested grids, the coarse
    points' own values), "linear" linear interpolation at the coarse points' positions, "average" the transpose of
    interpolation with rows normalised to 1 (multigrid's full weighting for a factor 2: weights 1/4, 1/2, 1/4), a
    local mean."""
    if target >= source and prolongation == "consistent" and restriction == "sample":
        return sampled_interpolation_matrix(target, source, layout)
    if target >= source or restriction == "linear":
        return interpolation_matrix(target, source, layout)
    if restriction == "sample":
        return nearest_matrix(source, target, layout)
    weights = interpolation_matrix(source, target, layout).T
    return weights / weights.sum(-1, keepdim=True)


def resample_grid(
    grid: torch.Tensor,
    height: int,
    width: int,
    layout: str,
    restriction: str = "sample",
    prolongation: str = "nominal",
) -> torch.Tensor:
    """(B, h, w, C) -> (B, height, width, C) by `resampling_matrix` along each axis."""
    rows = resampling_matrix(grid.shape[1], height, layout, restriction, prolongation).to(grid.device, grid.dtype)
    cols = resampling_matrix(grid.shape[2], width, layout, restriction, prolongation).to(grid.device, grid.dtype)
    return torch.einsum("yh,xw,bhwc->byxc", rows, cols, grid)


def grid_coordinates(
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    reference: int | None = None,
    layout: str = "corners",
) -> torch.Tensor:
    """(1, H, W, 2) coordinates (y, x) of the grid points in [0, 1], the same domain at every resolution.

    With `reference` n0 (a trained grid's side), a point's coordinate is its position in that grid's index units
    (`axis_positions` under `layout`) over n0 - 1: the trained grid's own coordinates (exactly) at its side, and on
    any other grid the ones the trained grid gives the same places of the domain."""

    def axis(side: int) -> torch.Tensor:
        if reference is None or reference < 2 or side == reference:
            return torch.linspace(0.0, 1.0, side, device=device, dtype=dtype)
        return (axis_positions(side, reference, layout) / (reference - 1)).to(device, dtype)

    return torch.stack(torch.meshgrid(axis(height), axis(width), indexing="ij"), dim=-1)[None]  # 1, H, W, 2


@dataclass
class ManoOperatorOutput(ModelOutput):
    """Output of `ManoOperatorModel`.

    Args:
        loss: scalar, mean relative L2 error against `labels` (when given).
        predictions: (B, H, W, out_channels), the output field in physical units.
        last_hidden_state: (B, H, W, hidden_size), the token grid after the last block and its LayerNorm.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


@dataclass(frozen=True)
class WindowTables:
    """Index tables of overlapping-window attention over the tokens of several grids, concatenated, in tiles.

    With k x k windows, a token x that sits at offset a inside a window (its *role* a) attends to the keys at
    x + (b - a) for the k^2 offsets b of that window, so every key of x lies within k - 1 of it per axis. The
    tokens of each grid are cut into m x m tiles; a tile's queries see their keys inside the tile's halo of side
    m + 2(k - 1), so one small dense product per tile scores every pair that any window needs.

    Attributes:
        queries: (n_tiles * m^2,) long, the token at each query slot of each tile; 0 for slots off the grid
            (their outputs are never read).
        halo: (n_tiles * H^2,) long, the token at each halo slot (H = m + 2(k - 1)); 0 off the grid (such a key is
            masked in every window its query really has, so its weight is exactly 0).
        pairs: (k^2 * k^2 * n_tiles * m^2,) long, for key b, role a, tile t and query slot i (in that order), the
            position t * m^2 * H^2 + i * H^2 + (halo slot of i + b - a) in the flattened (n_tiles, m^2, H^2) scores.
        key_mask: (k^2, k^2, n_tiles * m^2), 0 or -inf, per key, role, tile and slot: -inf where role a of the
            slot's token reads key b off the grid (padding).
        role_weight: (1, k^2, n_tiles * m^2), 1 / (number of windows holding the token) for the roles it really
            has (a window starts at x - a, on the stride, inside the padded grid), else 0: the overlap average.
        tokens: (T,) long, each token's slot in the flattened (n_tiles * m^2) query slots.

    The tables put the tiles and slots last, so that the softmax over a window's keys and the overlap average run
    over long contiguous rows.
    """

    queries: torch.Tensor
    halo: torch.Tensor
    pairs: torch.Tensor
    key_mask: torch.Tensor
    role_weight: torch.Tensor
    tokens: torch.Tensor

    def to(self, device: torch.device) -> WindowTables:
        return WindowTables(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})


class ManoOperatorWindowAttention(nn.Module):
    """Softmax attention in k x k windows taken with stride s; overlapping outputs are averaged per grid point.

    LayerNorm, then the QKV projection, then scaled dot-product attention inside each window, then the output
    projection. No positional bias: the kernel depends on the field values only, so it is the same at every level
    and every resolution. A grid smaller than a window, or whose windows would overhang, is padded and the padded
    keys are masked.

    `forward` takes the grids of every level at once and runs each step once over all their tokens (see
    `WindowTables` for the tiling): one LayerNorm and QKV projection, one batched product of tile queries with
    their halo keys, one softmax, one batched product with the halo values, one output projection.
    """

    tile_size = 4  # m: query tiles of 4 x 4 tokens, halos of 6 x 6 for 2 x 2 windows

    def __init__(self, config: ManoOperatorConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.window_size = config.window_size
        self.window_stride = config.window_stride
        inner = config.num_attention_heads * config.head_dim
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(config.hidden_size, 3 * inner)
        self.proj = nn.Linear(inner, config.hidden_size)
        # derived index tables, never saved: one entry per layout of level grids (and device)
        self._tables: dict[tuple, WindowTables] = {}

    def _padded_side(self, side: int) -> int:
        padded = max(side, self.window_size)
        return padded + (-(padded - self.window_size)) % self.window_stride

    def window_tables(
        self, sizes: tuple[tuple[int, int], ...], device: torch.device, dtype: torch.dtype
    ) -> WindowTables:
        """The `WindowTables` of grids of these (height, width), concatenated in order, with `key_mask` and
        `role_weight` in `dtype`; built once per layout."""
        key = (sizes, device, dtype)
        if key not in self._tables:
            if len(self._tables) >= 8:  # inputs of many sizes: keep the most recent layouts only
                del self._tables[next(iter(self._tables))]
            self._tables[key] = self._build_tables(sizes, dtype).to(device)
        return self._tables[key]

    def _build_tables(self, sizes: tuple[tuple[int, int], ...], dtype: torch.dtype) -> WindowTables:
        """The tiling of every grid (`_grid_tables`), concatenated, with the inverse map and the halo pairs."""
        total = sum(height * width for height, width in sizes)
        firsts = [sum(h * w for h, w in sizes[:index]) for index in range(len(sizes))]
        queries, halo, key_masks, role_valid = map(
            torch.cat, zip(*(self._grid_tables(h, w, first, total) for (h, w), first in zip(sizes, firsts)))
        )
        role_valid = role_valid.double()  # 1 / count rounded once, in the tables' dtype
        role_weight = (role_valid / role_valid.sum(-1, keepdim=True).clamp_min(1.0)).to(dtype)  # n_tiles, m^2, role
        tokens = torch.empty(total, dtype=torch.long)
        on_grid_slots = (queries < total).nonzero().flatten()
        tokens[queries[on_grid_slots]] = on_grid_slots
        queries, halo = queries.masked_fill(queries == total, 0), halo.masked_fill(halo == total, 0)
        key_mask = torch.zeros(key_masks.shape, dtype=dtype).masked_fill(key_masks, float("-inf"))
        return WindowTables(
            queries=queries,
            halo=halo,
            pairs=self._halo_pairs(len(queries) // self.tile_size**2),
            key_mask=key_mask.permute(2, 3, 0, 1).flatten(2).contiguous(),  # key, role, n_tiles * m^2
            role_weight=role_weight.permute(2, 0, 1).flatten(1)[None].contiguous(),  # 1, role, n_tiles * m^2
            tokens=tokens,
        )

    def _offsets(self) -> list[tuple[int, int]]:
        return [(ay, ax) for ay in range(self.window_size) for ax in range(self.window_size)]

    def _tile_slots(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(y, x) of the m^2 query slots of a tile and of its halo's slots, relative to the tile's corner."""
        k, m = self.window_size, self.tile_size
        halo_side = m + 2 * (k - 1)
        slot_y, slot_x = torch.arange(m).repeat_interleave(m), torch.arange(m).repeat(m)  # m^2
        halo_y = torch.arange(halo_side).repeat_interleave(halo_side) - (k - 1)  # H^2
        halo_x = torch.arange(halo_side).repeat(halo_side) - (k - 1)
        return slot_y, slot_x, halo_y, halo_x

    def _grid_tables(
        self, height: int, width: int, first: int, total: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One grid's tiles: query and halo token indices (`total` off the grid), key mask and valid roles."""
        m = self.tile_size
        slot_y, slot_x, halo_y, halo_x = self._tile_slots()
        tile_y = torch.arange(0, height, m).repeat_interleave(-(-width // m))  # corner of each tile
        tile_x = torch.arange(0, width, m).repeat(-(-height // m))
        ys, xs = tile_y[:, None] + slot_y, tile_x[:, None] + slot_x  # n_tiles, m^2
        on_grid = (ys < height) & (xs < width)
        queries = torch.where(on_grid, first + ys * width + xs, total).flatten()
        hy, hx = tile_y[:, None] + halo_y, tile_x[:, None] + halo_x  # n_tiles, H^2
        inside = (hy >= 0) & (hy < height) & (hx >= 0) & (hx < width)
        halo = torch.where(inside, first + hy * width + hx, total).flatten()
        key_mask, role_valid = self._role_masks(ys, xs, on_grid, height, width)
        return queries, halo, key_mask, role_valid

    def _role_masks(
        self, ys: torch.Tensor, xs: torch.Tensor, on_grid: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each token and role a (its offset in a window): whether it has that role, and which keys of that
        window lie off the grid. Shapes (n_tiles, m^2, key, role) and (n_tiles, m^2, role)."""
        k, s = self.window_size, self.window_stride
        padded_height, padded_width = self._padded_side(height), self._padded_side(width)
        offsets = self._offsets()
        masks, weights = [], []
        for ay, ax in offsets:
            top, left = ys - ay, xs - ax  # the start of the window in which the token has role a
            valid_y = (top >= 0) & (top <= padded_height - k) & (top % s == 0)
            valid_x = (left >= 0) & (left <= padded_width - k) & (left % s == 0)
            role = valid_y & valid_x & on_grid  # n_tiles, m^2
            keys = []
            for by, bx in offsets:
                y, x = ys - ay + by, xs - ax + bx
                keys.append((y >= 0) & (y < height) & (x >= 0) & (x < width))
            # a role the token does not have keeps every key (a finite softmax); its weight is 0
            masks.append(role[..., None] & ~torch.stack(keys, dim=-1))  # n_tiles, m^2, key
            weights.append(role)
        return torch.stack(masks, dim=-1), torch.stack(weights, dim=-1)

    def _halo_pairs(self, num_tiles: int) -> torch.Tensor:
        """For key b, role a, tile t and query slot i: the position of the score of i with its halo slot displaced
        by b - a, in the flattened (n_tiles, m^2, H^2) scores."""
        k, m = self.window_size, self.tile_size
        halo_side = m + 2 * (k - 1)
        slot_y, slot_x, _, _ = self._tile_slots()
        offsets = self._offsets()
        pairs = torch.stack(
            [
                torch.stack(
                    [(slot_y + (k - 1) + by - ay) * halo_side + (slot_x + (k - 1) + bx - ax) for ay, ax in offsets]
                )
                for by, bx in offsets
            ]
        )  # key, role, m^2
        pairs = pairs + torch.arange(m * m) * halo_side**2
        tile_starts = torch.arange(num_tiles) * (m * halo_side) ** 2
        return (tile_starts[:, None] + pairs[:, :, None, :]).flatten()

    def forward(self, grids: list[torch.Tensor]) -> list[torch.Tensor]:
        """Window attention of every level's grid, all levels in one pass.

        Args:
            grids: per level, (B, h_l, w_l, C).

        Returns:
            per level, (B, h_l, w_l, C).

        One LayerNorm and QKV projection over the tokens of every level, the attention (the fused kernel of
        `window_kernel.py` where `config.attention_kernel` allows and it applies, else `_tiled_attention`), one
        output projection.
        """
        batch_size, channels = grids[0].shape[0], grids[0].shape[-1]
        sizes = tuple((grid.shape[1], grid.shape[2]) for grid in grids)
        tokens = torch.cat([grid.reshape(batch_size, -1, channels) for grid in grids], dim=1)  # B, T, C
        # the query scale folded into the projection's weights
        inner, scale = self.num_heads * self.head_dim, self.head_dim**-0.5
        qkv_scale = torch.cat([self.qkv.weight.new_full((inner,), scale), self.qkv.weight.new_ones(2 * inner)])
        qkv_weight, qkv_bias = self.qkv.weight * qkv_scale[:, None], self.qkv.bias * qkv_scale
        qkv = F.linear(self.norm(tokens), qkv_weight, qkv_bias)  # B, T, 3 * inner
        if self.config.attention_kernel == "auto" and kernel_applies(qkv):
            padded = [(h, w, self._padded_side(h), self._padded_side(w)) for h, w in sizes]
            attended = fused_window_attention(
                qkv,
                padded,
                self.num_heads,
                self.head_dim,
                self.window_size,
                self.window_stride,
                reference=lambda tensor: self._tiled_attention(tensor, sizes),  # for second derivatives
            )  # B, T, inner
        else:
            attended = self._tiled_attention(qkv, sizes)
        output = self.proj(attended)  # B, T, C
        return [
            level.view(batch_size, height, width, channels)
            for level, (height, width) in zip(output.split([h * w for h, w in sizes], dim=1), sizes)
        ]

    def _tiled_attention(self, qkv: torch.Tensor, sizes: tuple[tuple[int, int], ...]) -> torch.Tensor:
        """(B, T, 3 * inner) -> (B, T, inner): the attention in tensor operations, over tiles (`WindowTables`).

        Per tile and head: scores of the m^2 queries against the H^2 halo keys (one batched product); from them
        each query's role a takes the k^2 scores of its window and a softmax; the probabilities of the roles the
        token really has are averaged (the overlap average) into a sparse (m^2, H^2) weight matrix, which gathers
        the halo values (one batched product).
        """
        batch_size, num_tokens = qkv.shape[:2]
        heads, head_dim, roles, m2 = self.num_heads, self.head_dim, self.window_size**2, self.tile_size**2
        inner, rows = heads * head_dim, batch_size * heads
        tables = self.window_tables(sizes, qkv.device, qkv.dtype)
        num_slots = tables.queries.numel()  # n_tiles * m^2
        num_tiles = num_slots // m2
        halo_size = tables.halo.numel() // num_tiles  # H^2
        # laid out (B * heads, T, d) before the gathers: rows of one head's values
        qkv = qkv.view(batch_size, num_tokens, 3, heads, head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).reshape(3, rows, num_tokens, head_dim).unbind(0)
        query = query.index_select(1, tables.queries).view(rows * num_tiles, m2, head_dim)
        key = key.index_select(1, tables.halo).view(rows * num_tiles, halo_size, head_dim)
        value = value.index_select(1, tables.halo).view(rows * num_tiles, halo_size, head_dim)

        scores = torch.bmm(query, key.transpose(1, 2)).view(rows, num_tiles * m2 * halo_size)
        pair_scores = scores.index_select(1, tables.pairs).view(rows, roles, roles, num_slots)  # key, role, slot
        # under autocast the scores may be in another dtype than the grids (and the tables)
        probs = (pair_scores + tables.key_mask.to(pair_scores.dtype)).softmax(dim=1)  # over each role's keys
        probs = probs * tables.role_weight.to(probs.dtype)  # the overlap average
        weights = scores.new_zeros(scores.shape).index_add_(1, tables.pairs, probs.view(rows, -1))
        attended = torch.bmm(weights.view(rows * num_tiles, m2, halo_size), value)  # B * heads * n_tiles, m^2, d
        attended = attended.view(rows, num_slots, head_dim).index_select(1, tables.tokens)
        attended = attended.view(batch_size, heads, num_tokens, head_dim).transpose(1, 2)
        return attended.reshape(batch_size, num_tokens, inner)


class ManoOperatorFeedForward(nn.Module):
    """Pre-LayerNorm GELU MLP applied pointwise: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, config: ManoOperatorConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(grid))))


class ManoOperatorLayer(nn.Module):
    """One block: `x = x + multipole_attention(x); x = x + feed_forward(x)` on a (B, H, W, C) grid.

    One window attention and one (down, up) projector pair serve every level. A block configured with a fixed
    single level has no projectors. With `config.attention_resolution` n, the multipole attention of a grid of
    another size runs on the grid resampled to n x n and its output is interpolated back (`resample_grid`).
    """

    def __init__(self, config: ManoOperatorConfig) -> None:
        super().__init__()
        self.config = config
        self.attention = ManoOperatorWindowAttention(config)
        if config.num_levels == 1:
            self.down = self.up = None
        else:
            self.down, self.up = build_projectors(config.hidden_size, config.sampling_rate, config.projector_type)
        self.feed_forward = ManoOperatorFeedForward(config)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C): the multipole attention (on the grid its stencils belong to), then the MLP,
        each with a residual."""
        height, width = grid.shape[1], grid.shape[2]
        side = self.config.attention_resolution
        if side is None or (height, width) == (side, side):
            grid = grid + self.multipole_attention(grid)
        else:
            layout, restriction = self.config.grid_layout, self.config.attention_restriction
            update = self.multipole_attention(resample_grid(grid, side, side, layout, restriction))
            grid = grid + resample_grid(update, height, width, layout, restriction, self.config.attention_prolongation)
        return grid + self.feed_forward(grid)

    def multipole_attention(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), the level count following (H, W): the V-cycle of
        `multipole.multipole_attention` with the attention of every level in one call: coarsen, attend (all levels
        at once), upsample and accumulate."""
        num_levels = self.config.levels_for(grid.shape[1], grid.shape[2]) if self.down is not None else 1
        levels = coarsen_levels(grid, self.down, num_levels)
        return accumulate_levels(self.attention(levels), self.up, self.config.level_weighting)


class ManoOperatorPreTrainedModel(PreTrainedModel):
    """Weight initialisation, saving and loading of MANO operators."""

    config: ManoOperatorConfig
    config_class = ManoOperatorConfig
    base_model_prefix = "mano_operator"
    main_input_name = "input_fields"
    _no_split_modules = ["ManoOperatorLayer"]
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, recording the config and model classes in `config.auto_map`."""
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (MultipoleDownsample, MultipoleUpsample)):
            values = projector_initial_values(module, self.config.projector_init)
            if "weight" not in values:  # PyTorch's default for convolutions
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            for name, value in values.items():
                init.copy_(getattr(module, name), value)


class ManoOperatorModel(ManoOperatorPreTrainedModel):
    """MANO neural operator: pointwise lift, multipole blocks, LayerNorm, then `Linear -> tanh -> Linear`.

    Maps (B, H, W, in_channels) input fields to (B, H, W, out_channels) output fields at any H, W: the level count
    of each block follows the grid, so a model trained at 16 x 16 runs at 32 x 32 or 64 x 64 unchanged. With
    `config.native_resolution` set, a grid r times finer runs as its r x r interleaved sub-grids, each at the
    spacing the learned stencils were trained on (see `ManoOperatorConfig.native_resolution`). With
    `config.attention_resolution` set, every block's attention runs on the grid resampled to that side and the rest
    on the input grid (see `ManoOperatorConfig.attention_resolution`).
    """

    def __init__(self, config: ManoOperatorConfig) -> None:
        super().__init__(config)
        extra = 2 if config.positional_embedding == "grid" else 0
        self.lift = nn.Linear(config.in_channels + extra, config.hidden_size)
        self.layers = nn.ModuleList(ManoOperatorLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head_hidden = nn.Linear(config.hidden_size, config.hidden_size)
        self.head_out = nn.Linear(config.hidden_size, config.out_channels)
        self.post_init()

    def forward(
        self,
        input_fields: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ManoOperatorOutput | tuple:
        """
        Args:
            input_fields: (B, H, W, in_channels), channel-last, in physical units (e.g. the Darcy coefficient).
            labels: (B, H, W, out_channels), the target field; the loss is the mean relative L2 error.
            kwargs: accepted for Trainer compatibility (e.g. `num_items_in_batch`) and ignored.

        Returns:
            `ManoOperatorOutput` with `predictions` (B, H, W, out_channels) in physical units.
        """
        if input_fields.ndim != 4 or input_fields.shape[-1] != self.config.in_channels:
            raise ValueError(
                f"input_fields must be (batch, height, width, {self.config.in_channels}) channel-last, "
                f"got shape {tuple(input_fields.shape)}"
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, height, width, _ = input_fields.shape
        grid = (input_fields - self.config.input_mean) / self.config.input_std
        coords = grid_coordinates(
            height, width, grid.device, grid.dtype, self.config.attention_resolution, self.config.grid_layout
        ).expand(batch_size, -1, -1, -1)
        rate = self.sub_grid_rate(height, width)
        if rate > 1:  # the r x r interleaved sub-grids at the native spacing, as one batch
            grid, coords = (split_sub_grids(tensor, rate) for tensor in (grid, coords))
        hidden = self.encode(grid, coords)
        predictions = self.head_out(torch.tanh(self.head_hidden(hidden)))  # B, H, W, out_channels
        if rate > 1:
            hidden, predictions = (merge_sub_grids(tensor, rate) for tensor in (hidden, predictions))
        predictions = predictions * self.config.output_std + self.config.output_mean
        loss = relative_l2(predictions, labels).mean() if labels is not None else None
        if not return_dict:
            return tuple(value for value in (loss, predictions, hidden) if value is not None)
        return ManoOperatorOutput(loss=loss, predictions=predictions, last_hidden_state=hidden)

    def sub_grid_rate(self, height: int, width: int) -> int:
        """r when `config.native_resolution` is set and the grid is r > 1 times finer than it on both sides, else 1."""
        native = self.config.native_resolution
        if native is None or height % native or width % native or height // native != width // native:
            return 1
        return height // native

    def encode(self, grid: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Normalised fields (B, H, W, in_channels) and their coordinates (B, H, W, 2) -> (B, H, W, C) after the
        blocks and the final LayerNorm."""
        if self.config.positional_embedding == "grid":
            grid = torch.cat([grid, coords], dim=-1)  # B, H, W, in_channels + 2
        grid = self.lift(grid)  # B, H, W, C
        for layer in self.layers:
            grid = layer(grid)
        return self.norm(grid)


def split_sub_grids(fields: torch.Tensor, rate: int) -> torch.Tensor:
    """(B, r*h, r*w, C) -> (B*r*r, h, w, C): the r x r interleaved sub-grids `fields[:, i::r, j::r]`, i, j < r."""
    batch_size, height, width, channels = fields.shape
    fields = fields.reshape(batch_size, height // rate, rate, width // rate, rate, channels)
    return fields.permute(0, 2, 4, 1, 3, 5).reshape(-1, height // rate, width // rate, channels)


def merge_sub_grids(fields: torch.Tensor, rate: int) -> torch.Tensor:
    """The inverse of `split_sub_grids`: (B*r*r, h, w, C) -> (B, r*h, r*w, C)."""
    _, height, width, channels = fields.shape
    fields = fields.reshape(-1, rate, rate, height, width, channels).permute(0, 3, 1, 4, 2, 5)
    return fields.reshape(-1, height * rate, width * rate, channels)


AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_mano_operator.ManoOperatorConfig",
    "AutoModel": "modeling_mano_operator.ManoOperatorModel",
}

__all__ = [
    "AUTO_MAP",
    "ManoOperatorFeedForward",
    "ManoOperatorLayer",
    "ManoOperatorModel",
    "ManoOperatorOutput",
    "ManoOperatorPreTrainedModel",
    "ManoOperatorWindowAttention",
    "WindowTables",
    "axis_positions",
    "grid_coordinates",
    "interpolation_matrix",
    "nearest_matrix",
    "merge_sub_grids",
    "relative_l2",
    "resample_grid",
    "resampling_matrix",
    "split_sub_grids",
]
