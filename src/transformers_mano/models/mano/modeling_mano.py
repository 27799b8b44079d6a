"""MANO models of the SwinV2 family: SwinV2 whose window attention becomes multipole attention.

Only `ManoLayer.forward` differs in computation from SwinV2: it runs the pretrained window attention of the
layer at full resolution and on coarser grids, and sums the levels back at full resolution
(see `multipole.multipole_attention`). Every other module, name and output is SwinV2's, so SwinV2 state dicts
load unchanged and the projector weights (`...blocks.N.down.weight`, `...blocks.N.up.weight`) are the only
new keys. The constructors below mirror those of transformers 5.23 (`Swinv2Stage`, `Swinv2Encoder`,
`Swinv2Model` and the heads) with the MANO classes swapped in; forwards are inherited.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.models.swinv2.modeling_swinv2 import (
    Swinv2Backbone,
    Swinv2Embeddings,
    Swinv2Encoder,
    Swinv2ForImageClassification,
    Swinv2ForMaskedImageModeling,
    Swinv2Layer,
    Swinv2Model,
    Swinv2PatchMerging,
    Swinv2PreTrainedModel,
    Swinv2Stage,
    window_partition,
    window_reverse,
)

from .configuration_mano import ManoConfig
from ...multipole import (
    MultipoleDownsample,
    MultipoleUpsample,
    accumulate_levels,
    build_projectors,
    coarsen_levels,
    multipole_attention,
    plan_num_levels,
    projector_init_weight,
)


# How many times transformers' `Swinv2SelfAttention` adds the shifted-window mask (of -100) to the attention scores:
# twice, so masked logits sit 200 below the rest. Cosine logits reach the logit scale (clamped at 100) plus a
# position bias of up to 16, so a single -100 does not mask at trained scales; the fused path repeats the eager
# path's -200 exactly. `modeling_tests/test_swinv2_hooks.py` checks this behaviour of the installed release.
SHIFT_MASK_REPEATS = 2


class ManoEmbeddings(Swinv2Embeddings):
    """SwinV2's patch embeddings, with clear errors for input SwinV2 turns into obscure shape errors later."""

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, num_channels, H, W) pixels -> (B, H/p * W/p, embed_dim) tokens and the token grid (H/p, W/p)."""
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must be (batch_size, num_channels, height, width), got shape {tuple(pixel_values.shape)}"
            )
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the model expects "
                f"config.num_channels = {self.config.num_channels}"
            )
        patch = self.patch_embeddings.patch_size
        if pixel_values.shape[2] < patch[0] or pixel_values.shape[3] < patch[1]:
            raise ValueError(
                f"images of {pixel_values.shape[2]}x{pixel_values.shape[3]} pixels are smaller than one "
                f"{patch[0]}x{patch[1]} patch"
            )
        return super().forward(pixel_values, bool_masked_pos, interpolate_pos_encoding)


class ManoLayer(Swinv2Layer):
    """A SwinV2 block whose attention sees the whole grid through a multipole V-cycle.

    Keeps every submodule of `Swinv2Layer` under its name and adds `down`/`up` when the layer is planned with more
    than one level at `config.image_size`. The residual, the res-post-norm and the MLP run once, on the summed
    attention output.

    Args:
        num_levels: levels at `config.image_size`, full resolution included; 1 is a plain SwinV2 layer.
        min_coarse_side: smallest side the coarsest grid may have when the level count is re-planned for the
            grid actually seen (`ManoConfig.min_coarse_sides`).
    """

    def __init__(
        self,
        config: ManoConfig,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        drop_path_rate: float = 0.0,
        shift_size: int = 0,
        pretrained_window_size: int | tuple[int, int] = 0,
        num_levels: int = 1,
        min_coarse_side: int = 1,
    ) -> None:
        super().__init__(config, dim, input_resolution, num_heads, drop_path_rate, shift_size, pretrained_window_size)
        self.config = config  # read at run time: `attn_implementation` may change after construction
        self.num_levels = num_levels
        self.min_coarse_side = min_coarse_side
        self.sampling_rate = config.sampling_rate
        self.level_weighting = config.level_weighting
        if num_levels > 1:
            self.down, self.up = build_projectors(dim, config.sampling_rate, config.projector_type)
        else:
            self.down = self.up = None
        # derived tables of the fused path, never saved: token permutations per grid layout, and the last
        # inference-time attention mask with its key and the position bias it was built from
        self._index_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bias_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def num_levels_for(self, height: int, width: int) -> int:
        """Level count for a (height, width) token grid: the far field follows the input size."""
        if self.down is None:
            return 1
        return plan_num_levels(height, width, self.min_coarse_side, self.sampling_rate)

    def level_shift(self, level: int, height: int, width: int) -> int:
        """Cyclic shift of a level: SwinV2's at full resolution; coarser grids shift only where larger than a window."""
        return self.shift_size if level == 0 or min(height, width) > self.window_size else 0

    def window_attention(
        self, grid: torch.Tensor, level: int = 0, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's SwinV2 window attention on one grid: pad, shift, partition, attend, merge, unshift, crop.

        At level 0 this is exactly what `Swinv2Layer.forward` computes. Coarser levels shift only where their grid
        is larger than a window (as SwinV2 decides per stage).

        Args:
            grid: (B, h, w, C).

        Returns:
            (B, h, w, C), and the attention probabilities (nW*B, heads, M, M) when asked for.
        """
        batch_size, height, width, channels = grid.shape
        window = self.window_size
        grid, pad_values = self.maybe_pad(grid, height, width)
        _, height_pad, width_pad, _ = grid.shape
        shift = self.level_shift(level, height, width)
        if shift > 0:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
            attn_mask = self.get_attn_mask(height_pad, width_pad, dtype=grid.dtype, device=grid.device)
        else:
            attn_mask = None

        windows = window_partition(grid, window).view(-1, window * window, channels)  # nW*B, M, C
        attention_outputs = self.attention(windows, attn_mask, output_attentions=output_attentions)
        windows = attention_outputs[0].view(-1, window, window, channels)  # nW*B, Wh, Ww, C
        grid = window_reverse(windows, window, height_pad, width_pad)  # B, H', W', C

        if shift > 0:
            grid = torch.roll(grid, shifts=(shift, shift), dims=(1, 2))
        if pad_values[3] > 0 or pad_values[5] > 0:
            grid = grid[:, :height, :width, :].contiguous()
        attentions = attention_outputs[1] if output_attentions else None
        return grid, attentions

    def fused_window_attention(self, grids: list[torch.Tensor]) -> list[torch.Tensor]:
        """`window_attention` of every level at once, through `scaled_dot_product_attention`.

        SwinV2's cosine attention is softmax(s * cos(q, k) + B + S) v, with a per-head logit scale s, the continuous
        position bias B (one table per layer, shared by all windows and levels) and the shift mask S. Normalising q
        and k, folding s into q and passing B + S as an additive mask gives the same result from SDPA with scale 1.
        One fused q/k/v projection, one attention call and one output projection serve all levels' windows.

        Args:
            grids: per level, finest first, (B, h_l, w_l, C).

        Returns:
            per level, (B, h_l, w_l, C).
        """
        attention = self.attention.self
        window, heads, head_dim = self.window_size, attention.num_attention_heads, attention.attention_head_size
        tokens = window * window  # M
        batch_size, channels = grids[0].shape[0], grids[0].shape[-1]

        layouts = []
        for level, grid in enumerate(grids):
            height, width = grid.shape[1:3]
            height_pad, width_pad = -(-height // window) * window, -(-width // window) * window
            layouts.append((height, width, height_pad, width_pad, self.level_shift(level, height, width)))
        gather, scatter = self.window_token_index(layouts, grids[0].device)
        # every level's tokens, then one zero token that the padding of partial windows points to
        tokens_of_levels = [grid.reshape(batch_size, -1, channels) for grid in grids]
        flat = torch.cat(tokens_of_levels + [grids[0].new_zeros(batch_size, 1, channels)], dim=1)  # B, T+1, C
        windows = flat[:, gather].view(batch_size, -1, tokens, channels)  # B, nW, M, C: pad, shift and partition
        num_windows = windows.shape[1]

        weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
        bias = None
        if attention.query.bias is not None:
            bias = torch.cat([attention.query.bias, torch.zeros_like(attention.query.bias), attention.value.bias])
        qkv = F.linear(windows, weight, bias).view(batch_size, num_windows, tokens, 3, heads, head_dim)
        qkv = qkv.permute(3, 0, 1, 4, 2, 5).contiguous()  # 3, B, nW, heads, M, d
        query, key, value = qkv.unbind(0)
        # cosine similarity with the logit scale folded into q: one pass each over q and k
        logit_scale = torch.clamp(attention.logit_scale, max=math.log(1.0 / 0.01)).exp()  # heads, 1, 1
        query = query * (logit_scale / query.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        key = key * (1.0 / key.norm(dim=-1, keepdim=True).clamp_min(1e-12))

        mask = self.attention_bias(layouts, windows.dtype, windows.device)
        if mask.dim() == 3:  # one (heads, M, M) bias for every window
            shape = (batch_size * num_windows, heads, tokens, head_dim)
            mask = mask[None]  # 4-D: CPU's flash kernel takes no 3-D mask and would fall back to the math path
        else:  # a (1, nW*heads, M, M) mask: windows and heads flattened together, broadcast over the batch
            shape = (batch_size, num_windows * heads, tokens, head_dim)
        dropout = attention.dropout.p if self.training else 0.0
        context = F.scaled_dot_product_attention(
            query.reshape(shape), key.reshape(shape), value.reshape(shape), attn_mask=mask, dropout_p=dropout, scale=1.0
        )
        context = context.view(batch_size, num_windows, heads, tokens, head_dim).transpose(2, 3)  # B, nW, M, heads, d
        context = self.attention.output(context.reshape(batch_size, num_windows, tokens, channels), None)

        # merge windows, undo the shift and drop the padding: one gather back to the tokens of every level
        context = context.reshape(batch_size, num_windows * tokens, channels)[:, scatter]  # B, T, C
        sizes = [height * width for height, width, *_ in layouts]
        return [
            level.view(batch_size, height, width, channels)
            for level, (height, width, *_) in zip(context.split(sizes, dim=1), layouts)
        ]

    def window_token_index(self, layouts: list[tuple[int, ...]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token permutations between the levels' grids and their shifted windows, built once per grid layout.

        `gather` (nW*M,) lists, window after window, the token each window position reads: SwinV2's pad, cyclic
        shift and partition of every level at once, in the order of `torch.cat` over levels; padding positions read
        the extra zero token at index T. `scatter` (T,) gives each token of each level its window position, which
        merges windows, undoes the shift and drops the padding.
        """
        key = (tuple(layouts), device)
        if key in self._index_cache:
            return self._index_cache[key]
        window = self.window_size
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
        if len(self._index_cache) >= 8:  # inputs of many sizes: keep the most recent layouts only
            del self._index_cache[next(iter(self._index_cache))]
        self._index_cache[key] = (torch.cat(gathers), torch.cat(scatters))
        return self._index_cache[key]

    def _windows_per_level(self, layouts: list[tuple[int, ...]]) -> list[int]:
        """Number of windows nW_l of each level's padded grid."""
        window = self.window_size
        return [(height_pad // window) * (width_pad // window) for _, _, height_pad, width_pad, _ in layouts]

    def position_bias(self) -> torch.Tensor:
        """SwinV2's continuous relative position bias of this layer, (heads, M, M)."""
        attention = self.attention.self
        table = attention.continuous_position_bias_mlp(attention.relative_coords_table).view(
            -1, attention.num_attention_heads
        )
        tokens = self.window_size * self.window_size
        bias = table[attention.relative_position_index.view(-1)].view(tokens, tokens, -1)  # M, M, heads
        return 16 * torch.sigmoid(bias.permute(2, 0, 1).contiguous())  # heads, M, M

    def attention_bias(self, layouts: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The additive mask of `fused_window_attention`: position bias plus the shift masks of shifted levels.

        (heads, M, M) when no level is shifted, else (1, nW*heads, M, M) with windows in level order. The position
        bias is cheap and recomputed at every call; the per-window mask of a shifted layer is not, so without autograd
        it is kept for the next call with the same grid layout whose position bias is equal, value for value (which
        holds however the weights were changed: optimiser steps, loading, in-place edits).
        """
        position_bias = self.position_bias().to(dtype)
        if all(shift == 0 for *_, shift in layouts):
            return position_bias
        reuse = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        key = (tuple(layouts), dtype, device)
        if reuse and self._bias_cache is not None:
            cached_key, cached_bias, cached_mask = self._bias_cache
            if cached_key == key and torch.equal(cached_bias, position_bias):
                return cached_mask
        per_level = []
        for (_, _, height_pad, width_pad, shift), num_windows in zip(layouts, self._windows_per_level(layouts)):
            if shift == 0:
                per_level.append(position_bias.expand(num_windows, -1, -1, -1))
            else:
                shift_mask = self.get_attn_mask(height_pad, width_pad, dtype=dtype, device=device)  # nW_l, M, M
                # transformers' SwinV2 adds the -100 mask twice: -200 is what the eager path masks with
                per_level.append(position_bias + SHIFT_MASK_REPEATS * shift_mask[:, None])
        tokens = position_bias.shape[-1]
        mask = torch.cat(per_level).view(1, -1, tokens, tokens)
        self._bias_cache = (key, position_bias, mask) if reuse else None
        return mask

    def multipole_window_attention(
        self, grid: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The token mixing of this layer: multipole attention over a (B, H, W, C) grid, levels following its size.

        Returns (B, H, W, C) and, with `output_attentions`, the full-resolution level's attention probabilities
        (nW*B, heads, M, M), as SwinV2 returns them. Those need the eager path; otherwise the fused SDPA path runs
        when `config._attn_implementation == "sdpa"`.
        """
        num_levels = self.num_levels_for(grid.shape[1], grid.shape[2])
        if output_attentions or self.config._attn_implementation != "sdpa":
            full_resolution_attentions = []

            def attend(level_grid: torch.Tensor, level: int) -> torch.Tensor:
                output, attentions = self.window_attention(level_grid, level, output_attentions and level == 0)
                if attentions is not None:
                    full_resolution_attentions.append(attentions)
                return output

            output = multipole_attention(grid, attend, self.down, self.up, num_levels, self.level_weighting)
            return output, (full_resolution_attentions[0] if output_attentions else None)
        # the same V-cycle with every level's windows in one attention call
        levels = coarsen_levels(grid, self.down, num_levels)
        return accumulate_levels(self.fused_window_attention(levels), self.up, self.level_weighting), None

    def forward(
        self,
        hidden_states: torch.Tensor,
        input_dimensions: tuple[int, int],
        output_attentions: bool | None = False,
    ) -> tuple[torch.Tensor, ...]:
        """(B, H*W, C) -> (B, H*W, C); with `output_attentions`, the full-resolution level's attention probabilities."""
        height, width = input_dimensions
        batch_size, _, channels = hidden_states.size()
        shortcut = hidden_states
        grid = hidden_states.view(batch_size, height, width, channels)
        attention_output, attentions = self.multipole_window_attention(grid, bool(output_attentions))
        attention_output = attention_output.reshape(batch_size, height * width, channels)

        hidden_states = shortcut + self.drop_path(self.layernorm_before(attention_output))
        layer_output = self.output(self.intermediate(hidden_states))
        layer_output = hidden_states + self.drop_path(self.layernorm_after(layer_output))
        return (layer_output, attentions) if output_attentions else (layer_output,)

    def extra_repr(self) -> str:
        return f"num_levels={self.num_levels}, min_coarse_side={self.min_coarse_side}"


class ManoStage(Swinv2Stage):
    """A SwinV2 stage of `ManoLayer`s. Mirrors `Swinv2Stage.__init__` of transformers 5.23."""

    def __init__(
        self,
        config: ManoConfig,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        drop_path: list[float],
        downsample: type[nn.Module] | None,
        pretrained_window_size: int = 0,
        num_levels: int = 1,
        min_coarse_side: int = 1,
    ) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.dim = dim
        self.blocks = nn.ModuleList(
            ManoLayer(
                config=config,
                dim=dim,
                input_resolution=input_resolution,
                num_heads=num_heads,
                drop_path_rate=drop_path[i],
                shift_size=0 if (i % 2 == 0) else config.window_size // 2,
                pretrained_window_size=pretrained_window_size,
                num_levels=num_levels,
                min_coarse_side=min_coarse_side,
            )
            for i in range(depth)
        )
        self.downsample = downsample(input_resolution, dim=dim, norm_layer=nn.LayerNorm) if downsample else None
        self.pointing = False


class ManoEncoder(Swinv2Encoder):
    """SwinV2 encoder of `ManoStage`s. Mirrors `Swinv2Encoder.__init__` of transformers 5.23."""

    def __init__(self, config: ManoConfig, grid_size: tuple[int, int], pretrained_window_sizes=(0, 0, 0, 0)):
        nn.Module.__init__(self)
        self.num_layers = len(config.depths)
        self.config = config
        if config.pretrained_window_sizes is not None:
            pretrained_window_sizes = config.pretrained_window_sizes
        dpr = [x.item() for x in torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu")]
        levels, min_coarse_sides = config.resolved_num_levels(), config.min_coarse_sides()
        self.layers = nn.ModuleList(
            ManoStage(
                config=config,
                dim=int(config.embed_dim * 2**i_layer),
                input_resolution=(grid_size[0] // (2**i_layer), grid_size[1] // (2**i_layer)),
                depth=config.depths[i_layer],
                num_heads=config.num_heads[i_layer],
                drop_path=dpr[sum(config.depths[:i_layer]) : sum(config.depths[: i_layer + 1])],
                downsample=Swinv2PatchMerging if (i_layer < self.num_layers - 1) else None,
                pretrained_window_size=pretrained_window_sizes[i_layer],
                num_levels=levels[i_layer],
                min_coarse_side=min_coarse_sides[i_layer],
            )
            for i_layer in range(self.num_layers)
        )
        self.gradient_checkpointing = False


class ManoPreTrainedModel(Swinv2PreTrainedModel):
    """Weight initialisation and loading for MANO models; checkpoints keep SwinV2's `swinv2.` prefix."""

    config: ManoConfig
    config_class = ManoConfig
    base_model_prefix = "swinv2"
    _no_split_modules = ["ManoStage"]
    _supports_sdpa = True
    # Trainer scales a loss by the world size for models taking **kwargs, unless told they do not use them.
    accepts_loss_kwargs = False

    def projector_parameter_names(self) -> list[str]:
        """Names of the learned multipole projector weights (`...blocks.N.down.weight`, `...up.weight`): the only
        parameters a SwinV2 checkpoint does not have. Empty with `projector_type="pool"` or a one-level plan."""
        return [
            f"{module_name}.{parameter_name}"
            for module_name, module in self.named_modules()
            if isinstance(module, (MultipoleDownsample, MultipoleUpsample))
            for parameter_name, _ in module.named_parameters()
        ]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, recording every MANO Auto class in `config.auto_map`.

        Listing all of them lets one checkpoint folder, with the code files that saving the config writes beside it,
        serve `AutoModel`, `AutoModelForImageClassification`, ... through `trust_remote_code=True` where this package
        is not installed.
        """
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, (MultipoleDownsample, MultipoleUpsample)):
            weight = projector_init_weight(module, self.config.projector_init)
            if weight is not None:
                init.copy_(module.weight, weight)


class ManoModel(ManoPreTrainedModel, Swinv2Model):
    """The bare MANO encoder. Mirrors `Swinv2Model.__init__` of transformers 5.23; forward is `Swinv2Model.forward`."""

    def __init__(self, config: ManoConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super(Swinv2PreTrainedModel, self).__init__(config)
        self.config = config
        self.num_layers = len(config.depths)
        self.num_features = int(config.embed_dim * 2 ** (self.num_layers - 1))
        self.embeddings = ManoEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = ManoEncoder(config, self.embeddings.patch_grid)
        self.layernorm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps)
        self.pooler = nn.AdaptiveAvgPool1d(1) if add_pooling_layer else None
        self.post_init()



class ManoForImageClassification(ManoPreTrainedModel, Swinv2ForImageClassification):
    """MANO with a linear classifier on the pooled output. Mirrors `Swinv2ForImageClassification.__init__` (5.23)."""

    def __init__(self, config: ManoConfig):
        super(Swinv2PreTrainedModel, self).__init__(config)
        self.num_labels = config.num_labels
        self.swinv2 = ManoModel(config)
        self.classifier = (
            nn.Linear(self.swinv2.num_features, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()


class ManoForMaskedImageModeling(ManoPreTrainedModel, Swinv2ForMaskedImageModeling):
    """MANO with SimMIM's pixel decoder. Mirrors `Swinv2ForMaskedImageModeling.__init__` of transformers 5.23."""

    def __init__(self, config: ManoConfig):
        super(Swinv2PreTrainedModel, self).__init__(config)
        self.swinv2 = ManoModel(config, add_pooling_layer=False, use_mask_token=True)
        num_features = int(config.embed_dim * 2 ** (config.num_layers - 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(num_features, config.encoder_stride**2 * config.num_channels, kernel_size=1),
            nn.PixelShuffle(config.encoder_stride),
        )
        self.post_init()


class ManoBackbone(ManoPreTrainedModel, Swinv2Backbone):
    """MANO feature maps for detection and segmentation heads. Mirrors `Swinv2Backbone.__init__` of transformers 5.23."""

    def __init__(self, config: ManoConfig):
        super(Swinv2Backbone, self).__init__(config)  # BackboneMixin's set-up, skipping Swinv2Backbone's modules
        self.num_features = [config.embed_dim] + [int(config.embed_dim * 2**i) for i in range(len(config.depths))]
        self.embeddings = ManoEmbeddings(config)
        self.encoder = ManoEncoder(config, self.embeddings.patch_grid)
        self.post_init()



# Auto class -> class, as `config.auto_map` names them for remote code (module file, then class name).
AUTO_CLASSES: dict[str, type[ManoPreTrainedModel]] = {
    "AutoModel": ManoModel,
    "AutoModelForImageClassification": ManoForImageClassification,
    "AutoModelForMaskedImageModeling": ManoForMaskedImageModeling,
    "AutoBackbone": ManoBackbone,
}
AUTO_MAP: dict[str, str] = {"AutoConfig": "configuration_mano.ManoConfig"} | {
    auto_class: f"modeling_mano.{model_class.__name__}" for auto_class, model_class in AUTO_CLASSES.items()
}
__all__ = [
    "AUTO_CLASSES",
    "AUTO_MAP",
    "ManoBackbone",
    "ManoForImageClassification",
    "ManoForMaskedImageModeling",
    "ManoLayer",
    "ManoModel",
    "ManoPreTrainedModel",
]
