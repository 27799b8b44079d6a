"""Baseline neural operators of the Darcy benchmark, as Transformers models beside the MANO operator.

Every operator here is a `PreTrainedModel` with its own configuration, so the three models of the benchmark train
with the same `Trainer`, save with `save_pretrained`, load with `AutoModel.from_pretrained` (importing
`transformers_mano` registers them: `transformers_mano.auto`) and evaluate the same way. Like `ManoOperatorModel`,
each maps channel-last input fields (B, H, W, in_channels) in physical units to output fields (B, H, W,
out_channels) in physical units, with the normalisation fitted on the training set stored in its configuration,
runs at any grid size, and returns the mean relative L2 error as `loss` when given `labels`.

- `FnoOperatorModel`: the Fourier Neural Operator of the `neuraloperator` package (optional extra `physics`).
  Each layer approximates the kernel integral `(K v)(x) = F^-1(R . F v)(x)` with learned weights R on the lowest
  `num_modes` Fourier modes per axis, plus a pointwise linear path; neuraloperator's default positional embedding
  (the grid coordinates) is kept.
- `VitOperatorModel`: a ViT-style transformer with patch size 1 (one token per grid point) whose single attention
  window covers the whole grid: the MANO operator with multipole attention replaced by global attention. Positions
  enter as the (y, x) coordinates of each point in [0, 1], defined at every resolution.
"""

from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..models.config_validators import above, at_least
from ..models.mano_operator.modeling_mano_operator import grid_coordinates, relative_l2


@dataclass
class FieldOperatorOutput(ModelOutput):
    """Output of the baseline operators.

    Args:
        loss: scalar, mean relative L2 error against `labels` (when given).
        predictions: (B, H, W, out_channels), the output field in physical units.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None


@strict
class FieldOperatorConfig(PreTrainedConfig):
    r"""
    What every baseline operator's configuration holds: its field channels and the normalisation fitted on the
    training set (as `ManoOperatorConfig` does).

    in_channels, out_channels (`int`, default 1): channels of the input and output fields.
    input_mean, input_std, output_mean, output_std (`float`): inputs become `(a - input_mean) / input_std`, outputs
        `u * output_std + output_mean`.
    """

    in_channels: int = at_least(1)(default=1)
    out_channels: int = at_least(1)(default=1)
    input_mean: float = 0.0
    input_std: float = above(0.0)(default=1.0)
    output_mean: float = 0.0
    output_std: float = above(0.0)(default=1.0)


class FieldOperatorPreTrainedModel(PreTrainedModel):
    """What the baselines share: fields named as MANO's, the normalisation, the input check, the relative-L2 loss
    and the initialisation of the layers they define."""

    config: FieldOperatorConfig
    config_class = FieldOperatorConfig
    main_input_name = "input_fields"
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Linear layers: truncated normal weights (std `config.initializer_range`), zero biases; LayerNorm: ones and
        zeros (as the MANO operator's). Other modules keep the values they were built with: FNO's layers are
        neuraloperator's, which initialises them itself (its FNO has no Linear or LayerNorm, so this adds nothing)."""
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def normalize_inputs(self, input_fields: torch.Tensor) -> torch.Tensor:
        """(B, H, W, in_channels) fields in physical units -> normalised, with the training set's statistics."""
        config = self.config
        if input_fields.ndim != 4 or input_fields.shape[-1] != config.in_channels:
            raise ValueError(
                f"input_fields must be (batch, height, width, {config.in_channels}) channel-last, "
                f"got shape {tuple(input_fields.shape)}"
            )
        return (input_fields - config.input_mean) / config.input_std

    def output(
        self, normalized: torch.Tensor, labels: torch.Tensor | None, return_dict: bool | None
    ) -> FieldOperatorOutput | tuple:
        """Normalised (B, H, W, out_channels) outputs -> `predictions` in physical units, with the loss if `labels`."""
        predictions = normalized * self.config.output_std + self.config.output_mean
        loss = relative_l2(predictions, labels).mean() if labels is not None else None
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(value for value in (loss, predictions) if value is not None)
        return FieldOperatorOutput(loss=loss, predictions=predictions)


# --- FNO ------------------------------------------------------------------------------------------------------


@strict
class FnoOperatorConfig(FieldOperatorConfig):
    r"""
    Configuration of `FnoOperatorModel` (with the fields of `FieldOperatorConfig`).

    hidden_channels (`int`, defaults to 32): width of every Fourier layer.
    num_modes (`int`, defaults to 8): Fourier modes kept per axis.
    num_hidden_layers (`int`, defaults to 4): Fourier layers.
    """

    model_type = "fno_operator"

    hidden_channels: int = at_least(1)(default=32)
    num_modes: int = at_least(1)(default=8)
    num_hidden_layers: int = at_least(1)(default=4)


class FnoOperatorModel(FieldOperatorPreTrainedModel):
    """`neuralop.models.FNO` on channel-last fields in physical units. Needs `pip install neuraloperator`."""

    config: FnoOperatorConfig
    config_class = FnoOperatorConfig
    base_model_prefix = "fno_operator"
    # neuraloperator keeps its constructor arguments as module "extra state": not a tensor, rebuilt from the config
    _keys_to_ignore_on_load_missing = [r"fno\._metadata"]

    def __init__(self, config: FnoOperatorConfig) -> None:
        super().__init__(config)
        try:
            from neuralop.models import FNO
        except ImportError as error:
            raise ImportError(
                "the FNO baseline needs the neuraloperator package: pip install 'transformers-mano[physics]' "
                "(docs/darcy.md shows an install that keeps your torch)"
            ) from error
        self.fno = FNO(
            n_modes=(config.num_modes, config.num_modes),
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            hidden_channels=config.hidden_channels,
            n_layers=config.num_hidden_layers,
        )
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the complex spectral weights trainable again.

        transformers re-creates loaded parameters with `requires_grad` only for floating-point dtypes, which leaves
        complex tensors frozen; a reloaded FNO must fine-tune like a fresh one.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for parameter in model.parameters():
            if parameter.is_complex():
                parameter.requires_grad_(True)
        return loaded

    def state_dict(self, *args, **kwargs):
        """The weights without neuraloperator's extra state (`fno._metadata`, a dict of its constructor arguments)."""
        state = super().state_dict(*args, **kwargs)
        for key in [key for key, value in state.items() if not isinstance(value, torch.Tensor)]:
            del state[key]
        return state

    def forward(
        self, input_fields: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs
    ) -> FieldOperatorOutput | tuple:
        """(B, H, W, in_channels) -> `predictions` (B, H, W, out_channels); `kwargs` (Trainer's) are ignored."""
        fields = self.normalize_inputs(input_fields).permute(0, 3, 1, 2)  # B, C, H, W
        return self.output(self.fno(fields).permute(0, 2, 3, 1), labels, return_dict)


# --- ViT (global attention) -----------------------------------------------------------------------------------


@strict
class VitOperatorConfig(FieldOperatorConfig):
    r"""
    Configuration of `VitOperatorModel` (with the fields of `FieldOperatorConfig`).

    hidden_size (`int`, defaults to 64): token width.
    num_hidden_layers (`int`, defaults to 4): transformer blocks.
    num_attention_heads (`int`, defaults to 4): heads of every attention (must divide `hidden_size`).
    intermediate_size (`int`, defaults to 128): hidden width of the MLPs.
    layer_norm_eps, initializer_range (`float`): as in `ManoOperatorConfig`.
    """

    model_type = "vit_operator"

    hidden_size: int = at_least(1)(default=64)
    num_hidden_layers: int = at_least(1)(default=4)
    num_attention_heads: int = at_least(1)(default=4)
    intermediate_size: int = at_least(1)(default=128)
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def validate_heads(self) -> None:
        """Heads split the width evenly."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )


class VitOperatorBlock(nn.Module):
    """Pre-LayerNorm transformer block with full self-attention over all grid points: (B, N, C) -> (B, N, C)."""

    def __init__(self, config: VitOperatorConfig) -> None:
        super().__init__()
        width, eps = config.hidden_size, config.layer_norm_eps
        self.num_heads = config.num_attention_heads
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch_size, length, channels = tokens.shape
        qkv = self.qkv(self.attention_norm(tokens)).view(batch_size, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, N, d
        attended = F.scaled_dot_product_attention(query, key, value)  # B, heads, N, d
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(batch_size, length, channels))
        return tokens + self.fc2(F.gelu(self.fc1(self.mlp_norm(tokens))))


class VitOperatorModel(FieldOperatorPreTrainedModel):
    """Pointwise lift of (a, y, x), global-attention blocks, LayerNorm, then `Linear -> tanh -> Linear`.

    The cost of each block is quadratic in the number of grid points.
    """

    config: VitOperatorConfig
    config_class = VitOperatorConfig
    base_model_prefix = "vit_operator"
    _no_split_modules = ["VitOperatorBlock"]
    _supports_sdpa = True

    def __init__(self, config: VitOperatorConfig) -> None:
        super().__init__(config)
        self.lift = nn.Linear(config.in_channels + 2, config.hidden_size)
        self.blocks = nn.ModuleList(VitOperatorBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head_hidden = nn.Linear(config.hidden_size, config.hidden_size)
        self.head_out = nn.Linear(config.hidden_size, config.out_channels)
        self.post_init()

    def forward(
        self, input_fields: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs
    ) -> FieldOperatorOutput | tuple:
        """(B, H, W, in_channels) -> `predictions` (B, H, W, out_channels); `kwargs` (Trainer's) are ignored."""
        fields = self.normalize_inputs(input_fields)
        batch_size, height, width, _ = fields.shape
        coords = grid_coordinates(height, width, fields.device, fields.dtype).expand(batch_size, -1, -1, -1)
        tokens = self.lift(torch.cat([fields, coords], dim=-1)).flatten(1, 2)  # B, H*W, C
        for block in self.blocks:
            tokens = block(tokens)
        outputs = self.head_out(torch.tanh(self.head_hidden(self.norm(tokens))))  # B, H*W, out_channels
        return self.output(outputs.view(batch_size, height, width, -1), labels, return_dict)


__all__ = [
    "FieldOperatorConfig",
    "FieldOperatorOutput",
    "FieldOperatorPreTrainedModel",
    "FnoOperatorConfig",
    "FnoOperatorModel",
    "VitOperatorBlock",
    "VitOperatorConfig",
    "VitOperatorModel",
]
