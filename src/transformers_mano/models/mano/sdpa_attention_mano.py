"""MANO's fused window attention: every level's windows of a `ManoLayer` through one `scaled_dot_product_attention`.

This is the "sdpa" entry of `modeling_mano.WINDOW_ATTENTION_FUNCTIONS`, the default attention implementation. It
computes what SwinV2's own (eager) window attention computes on each level, tested in float64 against it:

- one gather reads, for every level, SwinV2's padded, cyclically shifted and partitioned windows (a token
  permutation built once per grid layout), and one gather writes the results back;
- one q/k/v projection and one output projection serve all levels' windows;
- SwinV2's cosine attention softmax(s * cos(q, k) + B + S) v becomes SDPA with scale 1 by normalising q and k and
  folding the logit scale s into q; the continuous position bias B and the shift mask S go in as one additive mask.
- the attention core is SDPA, except in CPU inference on several threads, where batched matrix products over
  blocks of windows whose scores stay in cache run it faster (`use_blocked_core` says when, and why).

The derived tables live in the layer's `WindowCache`, never in its state dict. Each is keyed by everything it
depends on (grid layout, device, dtype) and the mask also by the position-bias values it was built from, so a cache
stays right through `.to()`, `copy.deepcopy` (a copy is independent), weight updates of any kind, and
`torch.compile` / `torch.export` (which trace the lookups; nothing built while tracing is kept).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F


if TYPE_CHECKING:
    from .modeling_mano import ManoLayer

# How many times transformers' `Swinv2SelfAttention` adds the shifted-window mask (of -100) to the attention scores:
# twice, so masked logits sit 200 below the rest. Cosine logits reach the logit scale (clamped at 100) plus a
# position bias of up to 16, so a single -100 does not mask at trained scales; the fused path repeats the eager
# path's -200 exactly. `modeling_tests/test_swinv2_hooks.py` checks this behaviour of the installed release.
SHIFT_MASK_REPEATS = 2


class WindowCache:
    """Derived tables of one layer's fused path: token permutations per grid layout, the last inference mask and
    the last inference position bias.

    Attributes:
        index: (layouts, device) -> (gather, scatter) token permutations; the 8 most recent layouts are kept.
        mask: (key, position bias, mask) of the last mask built without autograd, or None.
        position_bias: (copies of the tensors it was computed from, position bias) of the last bias computed
            without autograd, or None.
    """

    def __init__(self) -> None:
        self.index: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mask: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self.position_bias: tuple[list[torch.Tensor], torch.Tensor] | None = None


def sdpa_window_attention(
    layer: ManoLayer, grids: list[torch.Tensor], output_attentions: bool = False
) -> tuple[list[torch.Tensor], None]:
    """`ManoLayer.window_attention` of every level at once, through `scaled_dot_product_attention`.

    SwinV2's cosine attention is softmax(s * cos(q, k) + B + S) v, with a per-head logit scale s, the continuous
    position bias B (one table per layer, shared by all windows and levels) and the shift mask S. Normalising q
    and k, folding s into q and passing B + S as an additive mask gives the same result from SDPA with scale 1.
    One fused q/k/v projection, one attention call and one output projection serve all levels' windows.

    Args:
        layer: the `ManoLayer` whose SwinV2 attention weights, window, shift and cache serve.
        grids: per level, finest first, (B, h_l, w_l, C).
        output_attentions: not available here (no probabilities are formed); the eager path returns them.

    Returns:
        per level, (B, h_l, w_l, C), and None.
    """
    batch_size, channels = grids[0].shape[0], grids[0].shape[-1]
    layouts = level_layouts(layer, grids)
    gather, scatter = window_token_index(layer, layouts, grids[0].device)
    # every level's tokens, then one zero token that the padding of partial windows points to
    tokens_of_levels = [grid.reshape(batch_size, -1, channels) for grid in grids]
    flat = torch.cat(tokens_of_levels + [grids[0].new_zeros(batch_size, 1, channels)], dim=1)  # B, T+1, C
    tokens = layer.window_size**2  # M
    # index_select copies whole rows of C values (advanced indexing goes value by value: 5x slower on CPU)
    windows = flat.index_select(1, gather).view(batch_size, -1, tokens, channels)  # B, nW, M, C: pad, shift, split

    context = cosine_window_attention(layer, windows, attention_bias(layer, layouts, windows.dtype, windows.device))

    # merge windows, undo the shift and drop the padding: one gather back to the tokens of every level
    context = context.reshape(batch_size, -1, channels).index_select(1, scatter)  # B, T, C
    sizes = [height * width for height, width, *_ in layouts]
    outputs = [
        level.view(batch_size, height, width, channels)
        for level, (height, width, *_) in zip(context.split(sizes, dim=1), layouts)
    ]
    return outputs, None


def level_layouts(layer: ManoLayer, grids: list[torch.Tensor]) -> list[tuple[int, int, int, int, int]]:
    """Per level: (height, width, padded height, padded width, shift), what the window tables depend on."""
    window, layouts = layer.window_size, []
    for level, grid in enumerate(grids):
        height, width = grid.shape[1:3]
        height_pad, width_pad = -(-height // window) * window, -(-width // window) * window
        layouts.append((height, width, height_pad, width_pad, layer.level_shift(level, height, width)))
    return layouts


def cosine_window_attention(layer: ManoLayer, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SwinV2's attention (and output projection) in every window: (B, nW, M, C) -> (B, nW, M, C).

    `mask` is B + S, either one (heads, M, M) table for every window or (1, nW*heads, M, M). Cosine similarity
    becomes a dot product by normalising q and k and folding the logit scale into q (one pass each over q and k).
    The attention core is `blocked_window_attention` where `use_blocked_core` says so (CPU inference on several
    threads), SDPA everywhere else.
    """
    attention = layer.attention.self
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    batch_size, num_windows, tokens, channels = windows.shape
    dropout = attention.dropout.p if layer.training else 0.0
    core = blocked_core if use_blocked_core(windows, dropout) else sdpa_core
    context = core(attention, windows, mask, dropout)  # B*nW or B, (nW*)heads, M, d
    context = context.view(batch_size, num_windows, heads, tokens, head_dim).transpose(2, 3)  # B, nW, M, heads, d
    return layer.attention.output(context.reshape(batch_size, num_windows, tokens, channels), None)


def use_blocked_core(windows: torch.Tensor, dropout: float) -> bool:
    """Whether the attention core runs as `blocked_window_attention` rather than SDPA: on CPU, in float32 or float64
    without autocast, without autograd or dropout, outside tracing, on more than one thread.

    On one CPU thread torch's fused (flash) kernel is as fast or faster: it never writes the scores to memory. Its
    split of many small windows over threads gains little, though, where batched products on blocks of windows
    scale: stage 1 of a 256 px image (84 windows x 3 heads x 64 tokens) took 5.2 ms through SDPA and 6.0 ms blocked
    on one thread, 4.5 and 3.1 ms on two (`scripts/profile_forward.py --cores`, the project's 2-core machine; the
    README's Performance section has the rest). On GPUs and under autograd SDPA stays.
    """
    return (
        windows.device.type == "cpu"
        and windows.dtype in (torch.float32, torch.float64)  # in bfloat16 SDPA keeps float32 scores; products do not
        and not _cpu_autocast()
        and dropout == 0.0
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and torch.get_num_threads() > 1
    )


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # releases that take no device type
        return torch.is_autocast_cpu_enabled()


# Scores of one block of windows, in bytes: small enough that a block's scores stay in the core's cache between the
# product that writes them, the mask, the softmax and the product that reads them (1 MB: 21 windows of 3 heads x 64 x 64
# float32 scores in stage 1 of mano-tiny; the best of 256 KB, 1 MB and 4 MB measured at 256 px, batch 1, two threads).
BLOCK_BYTES = 1 << 20


def blocked_window_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor, block_bytes: int = BLOCK_BYTES
) -> torch.Tensor:
    """softmax(q k^T + mask) v over (N, heads, M, d) windows (N = B*nW, contiguous), a block of windows at a time.

    `mask` is (1, heads, M, M), one table for every window, or (nW, heads, M, M), window i of every image reading
    row i % nW. Returns (N, heads, M, d).
    """
    windows, heads, tokens, _ = query.shape
    per_window = mask.shape[0] > 1
    rows = mask.shape[0] if per_window else windows  # the windows that one pass over the mask covers
    step = max(1, block_bytes // (heads * tokens * tokens * query.element_size()))
    context = torch.empty_like(query)
    for first in range(0, windows, rows):
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            block = slice(first + start, first + stop)
            scores = torch.matmul(query[block], key[block].transpose(-1, -2))
            scores += mask[start:stop] if per_window else mask
            torch.matmul(torch.softmax(scores, dim=-1), value[block], out=context[block])
    return context


def blocked_core(attention, windows: torch.Tensor, mask: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
    """The attention core as `blocked_window_attention` (no dropout): (B, nW, M, C) windows -> (B*nW, heads, M, d)."""
    heads, tokens = attention.num_attention_heads, windows.shape[2]
    query, key, value = _project_heads(attention, windows)  # B, nW, heads, M, d: strided views
    query_scale, key_scale = cosine_scales(attention, query, key)
    # the products write q and k contiguous, as batched matrix products read them: no separate copy
    query = torch.mul(query, query_scale, out=query.new_empty(query.shape)).flatten(0, 1)
    key = torch.mul(key, key_scale, out=key.new_empty(key.shape)).flatten(0, 1)
    value = value.contiguous().flatten(0, 1)
    return blocked_window_attention(query, key, value, mask.view(-1, heads, tokens, tokens))


def sdpa_core(attention, windows: torch.Tensor, mask: torch.Tensor, dropout: float) -> torch.Tensor:
    """The attention core through SDPA: (B, nW, M, C) windows -> (B*nW, heads, M, d) or (B, nW*heads, M, d).

    SDPA sees windows as its batch and heads as its heads where the mask allows (one table for every window, or
    one image), reading q, k and v as strided views of the projections; a per-window mask over a batch of images
    broadcasts only with windows and heads flattened together, which takes one copy of q, k and v into that layout.
    """
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    batch_size, num_windows, tokens, _ = windows.shape
    windows_as_batch = mask.dim() == 3 or batch_size == 1
    project = _project_heads if windows_as_batch else _project_heads_contiguous
    query, key, value = project(attention, windows)
    query_scale, key_scale = cosine_scales(attention, query, key)
    query, key = query * query_scale, key * key_scale
    if windows_as_batch:
        # 4-D masks: CPU's flash kernel takes no 3-D mask and would fall back to the math path
        mask = mask[None] if mask.dim() == 3 else mask.view(num_windows, heads, tokens, tokens)
        shape = (batch_size * num_windows, heads, tokens, head_dim)
    else:
        shape = (batch_size, num_windows * heads, tokens, head_dim)
    return F.scaled_dot_product_attention(
        query.reshape(shape), key.reshape(shape), value.reshape(shape), attn_mask=mask, dropout_p=dropout, scale=1.0
    )


def cosine_scales(attention, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s / |q| and 1 / |k| per token and head: multiplied into q and k, SwinV2's s * cos(q, k) becomes q . k."""
    logit_scale = torch.clamp(attention.logit_scale, max=math.log(1.0 / 0.01)).exp()  # heads, 1, 1
    query_scale = logit_scale / query.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return query_scale, 1.0 / key.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _project_heads(attention, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of (B, nW, M, C) windows as (B, nW, heads, M, d) views of three projections (no weight concatenation,
    no permuting copy)."""
    batch_size, num_windows, tokens, _ = windows.shape
    split = (batch_size, num_windows, tokens, attention.num_attention_heads, attention.attention_head_size)
    projections = (
        F.linear(windows, attention.query.weight, attention.query.bias),
        F.linear(windows, attention.key.weight, attention.key.bias),
        F.linear(windows, attention.value.weight, attention.value.bias),
    )
    return tuple(x.view(split).transpose(2, 3) for x in projections)


def _project_heads_contiguous(attention, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of (B, nW, M, C) windows, each contiguous (B, nW, heads, M, d): one fused projection, one copy."""
    batch_size, num_windows, tokens, _ = windows.shape
    heads, head_dim = attention.num_attention_heads, attention.attention_head_size
    weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
    bias = None
    if attention.query.bias is not None:
        bias = torch.cat([attention.query.bias, torch.zeros_like(attention.query.bias), attention.value.bias])
    qkv = F.linear(windows, weight, bias).view(batch_size, num_windows, tokens, 3, heads, head_dim)
    return qkv.permute(3, 0, 1, 4, 2, 5).contiguous().unbind(0)  # each B, nW, heads, M, d


def window_token_index(
    layer: ManoLayer, layouts: list[tuple[int, ...]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token permutations between the levels' grids and their shifted windows, built once per grid layout.

    `gather` (nW*M,) lists, window after window, the token each window position reads: SwinV2's pad, cyclic
    shift and partition of every level at once, in the order of `torch.cat` over levels; padding positions read
    the extra zero token at index T. `scatter` (T,) gives each token of each level its window position, which
    merges windows, undoes the shift and drops the padding.
    """
    key = (tuple(layouts), device)
    if key in layer.window_cache.index:
        return layer.window_cache.index[key]
    window = layer.window_size
    total_tokens = sum(height * width for height, width, *_ in layouts)
    gathers, scatters, token_offset, window_offset = [], [], 0, 0
    for height, width, height_pad, width_pad, shift in layouts:
        # window position (row block, column block, i, j) reads padded cell ((row + shift) % H', (col + shift) % W')
        rows = (torch.arange(height_pad, device=device).view(-1, 1, window, 1) + shift) % height_pad
        cols = (torch.arange(width_pad, device=device).view(1, -1, 1, window) + shift) % width_pad
        rows, cols = (x.flatten() for x in torch.broadcast_tensors(rows, cols))  # nW_l * M each
        inside = (rows < height) & (cols < width)
        source = token_offset + rows * width + cols
        gathers.append(torch.where(inside, source, total_tokens))
        scatter = torch.empty(height * width, dtype=torch.long, device=device)
        scatter[source[inside] - token_offset] = window_offset + torch.nonzero(inside).flatten()
        scatters.append(scatter)
        token_offset += height * width
        window_offset += rows.numel()
    permutations = torch.cat(gathers), torch.cat(scatters)
    if torch.compiler.is_compiling():  # tracing tensors (fake ones under export) must not outlive the trace
        return permutations
    if len(layer.window_cache.index) >= 8:  # inputs of many sizes: keep the most recent layouts only
        del layer.window_cache.index[next(iter(layer.window_cache.index))]
    layer.window_cache.index[key] = permutations
    return permutations


def windows_per_level(window: int, layouts: list[tuple[int, ...]]) -> list[int]:
    """Number of windows nW_l of each level's padded grid."""
    return [(height_pad // window) * (width_pad // window) for _, _, height_pad, width_pad, _ in layouts]


def position_bias(layer: ManoLayer) -> torch.Tensor:
    """SwinV2's continuous relative position bias of this layer, (heads, M, M)."""
    attention = layer.attention.self
    table = attention.continuous_position_bias_mlp(attention.relative_coords_table).view(
        -1, attention.num_attention_heads
    )
    tokens = layer.window_size * layer.window_size
    bias = table[attention.relative_position_index.view(-1)].view(tokens, tokens, -1)  # M, M, heads
    return 16 * torch.sigmoid(bias.permute(2, 0, 1).contiguous())  # heads, M, M


def reused_position_bias(layer: ManoLayer) -> torch.Tensor:
    """`position_bias(layer)`, computed again only when a tensor it is computed from changed, value for value (the
    continuous-position-bias MLP's parameters, the coordinate table, the index): it costs about 0.3 ms a layer on
    two CPU threads (4 ms a forward of mano-tiny at 256 px), the comparison a few microseconds. For inference only:
    the caller makes sure no autograd and no tracing is on."""
    attention = layer.attention.self
    sources = [
        *attention.continuous_position_bias_mlp.parameters(),
        attention.relative_coords_table,
        attention.relative_position_index,
    ]
    cached = layer.window_cache.position_bias
    if (
        cached is not None
        and len(cached[0]) == len(sources)
        and all(
            kept.shape == source.shape
            and kept.dtype == source.dtype
            and kept.device == source.device
            and torch.equal(kept, source)
            for kept, source in zip(cached[0], sources)
        )
    ):
        return cached[1]
    bias = position_bias(layer)
    layer.window_cache.position_bias = ([source.detach().clone() for source in sources], bias)
    return bias


def attention_bias(
    layer: ManoLayer, layouts: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The additive mask of `sdpa_window_attention`: position bias plus the shift masks of shifted levels.

    (heads, M, M) when no level is shifted, else (1, nW*heads, M, M) with windows in level order. Without autograd
    the position bias is kept while the tensors it comes from are equal, value for value, and the per-window mask of
    a shifted layer for the next call with the same grid layout whose position bias is equal, value for value
    (which holds however the weights were changed: optimiser steps, loading, in-place edits).
    """
    # nothing kept while tracing: a trace would record a kept tensor as a constant, not as what it is computed from
    reuse = not torch.is_grad_enabled() and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
    bias = (reused_position_bias(layer) if reuse else position_bias(layer)).to(dtype)
    if all(shift == 0 for *_, shift in layouts):
        return bias
    key = (tuple(layouts), dtype, device)
    if reuse and layer.window_cache.mask is not None:
        cached_key, cached_bias, cached_mask = layer.window_cache.mask
        if cached_key == key and torch.equal(cached_bias, bias):
            return cached_mask
    per_level = []
    counts = windows_per_level(layer.window_size, layouts)
    for (_, _, height_pad, width_pad, shift), num_windows in zip(layouts, counts):
        if shift == 0:
            per_level.append(bias.expand(num_windows, -1, -1, -1))
        else:
            shift_mask = layer.get_attn_mask(height_pad, width_pad, dtype=dtype, device=device)  # nW_l, M, M
            # transformers' SwinV2 adds the -100 mask twice: -200 is what the eager path masks with
            per_level.append(bias + SHIFT_MASK_REPEATS * shift_mask[:, None])
    tokens = bias.shape[-1]
    mask = torch.cat(per_level).view(1, -1, tokens, tokens)
    if reuse:
        layer.window_cache.mask = (key, bias, mask)
    return mask


__all__ = [
    "SHIFT_MASK_REPEATS",
    "WindowCache",
    "attention_bias",
    "position_bias",
    "sdpa_window_attention",
    "window_token_index",
    "windows_per_level",
    "level_layouts",
    "cosine_window_attention",
    "blocked_window_attention",
    "use_blocked_core",
]
