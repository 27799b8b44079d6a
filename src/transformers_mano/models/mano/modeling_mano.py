"""MANO models of the SwinV2 family: SwinV2 whose window attention becomes multipole attention.

Only `ManoLayer.forward` differs in computation from SwinV2: it runs the pretrained window attention of the
layer at full resolution and on coarser grids, and sums the levels back at full resolution
(see `multipole.multipole_attention`). Every other module, name and output is SwinV2's, so SwinV2 state dicts
load unchanged and the projector weights (`...blocks.N.down.weight`, `...blocks.N.up.weight`) are the only
new keys. The constructors below mirror those of transformers 5.18-5.25, identical across that range
(`Swinv2Stage`, `Swinv2Encoder`, `Swinv2Model` and the heads), with the MANO classes swapped in; forwards are
inherited.
"""

from __future__ import annotations

import torch
from torch import nn
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

from ...multipole import (
    MultipoleDownsample,
    MultipoleUpsample,
    accumulate_levels,
    build_projectors,
    coarsen_levels,
    plan_num_levels,
    projector_initial_values,
)
from .configuration_mano import ManoConfig
from .sdpa_attention_mano import WindowCache, sdpa_window_attention


class ManoEmbeddings(Swinv2Embeddings):
    """SwinV2's patch embeddings, with clear errors for input SwinV2 turns into obscure shape errors later."""

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, num_channels, H, W) pixels -> (B, H/p * W/p, embed_dim) tokens and the token grid (H/p, W/p)."""
        if pixel_values is None:
            raise ValueError("pixel_values are required: (batch_size, num_channels, height, width) images")
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
        self.window_cache = WindowCache()  # derived tables of the fused path, never saved

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

    def multipole_window_attention(
        self, grid: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The token mixing of this layer, the V-cycle of `multipole.multipole_attention` over a (B, H, W, C) grid:
        plan the levels for the grid's size, coarsen, attend on every level, upsample and accumulate.

        The attention runs as `config._attn_implementation` says (`WINDOW_ATTENTION_FUNCTIONS`): "sdpa" (the
        default) puts every level's windows through one `scaled_dot_product_attention` call; "eager" runs SwinV2's own
        attention per level, and is the one that returns `output_attentions` (the full-resolution level's attention
        probabilities, (nW*B, heads, M, M), as SwinV2 returns them).

        Returns (B, H, W, C) and the attentions (None unless asked for).
        """
        levels = coarsen_levels(grid, self.down, self.num_levels_for(grid.shape[1], grid.shape[2]))
        implementation = "eager" if output_attentions else self.config._attn_implementation
        if implementation not in WINDOW_ATTENTION_FUNCTIONS:
            raise ValueError(f"MANO layers run {sorted(WINDOW_ATTENTION_FUNCTIONS)} attention, not {implementation!r}")
        outputs, attentions = WINDOW_ATTENTION_FUNCTIONS[implementation](self, levels, output_attentions)
        return accumulate_levels(outputs, self.up, self.level_weighting), attentions

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


def eager_window_attention(
    layer: ManoLayer, grids: list[torch.Tensor], output_attentions: bool = False
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """SwinV2's own window attention on every level's grid in turn; the full-resolution level's probabilities when
    asked for. Grids finest first, each (B, h_l, w_l, C)."""
    outputs, attentions = [], None
    for level, grid in enumerate(grids):
        output, level_attentions = layer.window_attention(grid, level, output_attentions and level == 0)
        outputs.append(output)
        attentions = level_attentions if level == 0 else attentions
    return outputs, attentions


# config._attn_implementation -> the attention of every level of a ManoLayer: (layer, grids, output_attentions) ->
# (outputs, attentions), grids and outputs finest first, each (B, h_l, w_l, C)
WINDOW_ATTENTION_FUNCTIONS = {"eager": eager_window_attention, "sdpa": sdpa_window_attention}


class ManoStage(Swinv2Stage):
    """A SwinV2 stage of `ManoLayer`s. Mirrors `Swinv2Stage.__init__` (transformers 5.18-5.25)."""

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


class ManoEncoder(Swinv2Encoder):
    """SwinV2 encoder of `ManoStage`s. Mirrors `Swinv2Encoder.__init__` (transformers 5.18-5.25)."""

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
            for name, value in projector_initial_values(module, self.config.projector_init).items():
                init.copy_(getattr(module, name), value)


class ManoModel(ManoPreTrainedModel, Swinv2Model):
    """The bare MANO encoder. Mirrors `Swinv2Model.__init__` (transformers 5.18-5.25); forward is `Swinv2Model.forward`."""

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
    """MANO with SimMIM's pixel decoder. Mirrors `Swinv2ForMaskedImageModeling.__init__` (transformers 5.18-5.25)."""

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
    """MANO feature maps for detection and segmentation heads. Mirrors `Swinv2Backbone.__init__` (transformers 5.18-5.25)."""

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
