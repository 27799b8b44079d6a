"""Baseline neural operators for the Darcy benchmark, with the MANO operator's interface.

Every operator here maps channel-last input fields (B, H, W, in_channels) in physical units to output fields
(B, H, W, out_channels) in physical units, normalising inside with statistics fitted on the training set, and runs
at any grid size:

- `FNOOperator`: the Fourier Neural Operator of the `neuraloperator` package (optional extra `physics`), wrapped.
- `GlobalAttentionOperator`: a ViT-style transformer whose single attention window covers the whole grid (patch
  size 1, so one token per grid point); positions enter as (y, x) coordinates in [0, 1], defined at every resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .modeling_mano_operator import grid_coordinates


@dataclass
class FieldNormalization:
    """Affine maps fitted on the training set: inputs `(a - input_mean) / input_std`, outputs `u * output_std + output_mean`."""

    input_mean: float = 0.0
    input_std: float = 1.0
    output_mean: float = 0.0
    output_std: float = 1.0

    @classmethod
    def fit(cls, inputs: torch.Tensor, outputs: torch.Tensor) -> FieldNormalization:
        """Scalar statistics of (N, H, W, C) training inputs and outputs (a zero std becomes 1)."""
        stats = [inputs.mean(), inputs.std(), outputs.mean(), outputs.std()]
        stats = [float(value) for value in stats]
        stats[1] = stats[1] if stats[1] > 0 else 1.0
        stats[3] = stats[3] if stats[3] > 0 else 1.0
        return cls(*stats)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class FNOOperator(nn.Module):
    """`neuralop.models.FNO` on channel-last fields, with the normalisation of the other operators.

    The FNO approximates each layer's kernel integral `(K v)(x) = F^-1(R . F v)(x)` with learned weights R on the
    lowest `n_modes` Fourier modes, plus a pointwise linear skip; neuraloperator's default grid positional embedding
    is kept. Needs `pip install neuraloperator` (see docs/darcy.md for a light install).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        hidden_channels: int = 32,
        n_modes: int = 8,
        n_layers: int = 4,
        normalization: FieldNormalization | dict | None = None,
    ) -> None:
        super().__init__()
        try:
            from neuralop.models import FNO
        except ImportError as error:
            raise ImportError(
                "the FNO baseline needs the neuraloperator package: pip install 'transformers-mano[physics]' "
                "(or see docs/darcy.md for an install that keeps your torch)"
            ) from error
        self.hparams = {
            "in_channels": in_channels, "out_channels": out_channels, "hidden_channels": hidden_channels,
            "n_modes": n_modes, "n_layers": n_layers,
        }  # fmt: skip
        self.normalization = _as_normalization(normalization)
        self.fno = FNO(
            n_modes=(n_modes, n_modes),
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            n_layers=n_layers,
        )

    def forward(self, input_fields: torch.Tensor) -> torch.Tensor:
        """(B, H, W, in_channels) -> (B, H, W, out_channels)."""
        norm = self.normalization
        fields = ((input_fields - norm.input_mean) / norm.input_std).permute(0, 3, 1, 2)  # B, C, H, W
        outputs = self.fno(fields).permute(0, 2, 3, 1)  # B, H, W, out_channels
        return outputs * norm.output_std + norm.output_mean


class GlobalAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block with full self-attention over all grid points: (B, N, C) -> (B, N, C)."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch_size, length, channels = tokens.shape
        qkv = self.qkv(self.attention_norm(tokens)).view(batch_size, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, N, d
        attended = F.scaled_dot_product_attention(query, key, value)  # B, heads, N, d
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(batch_size, length, channels))
        return tokens + self.fc2(F.gelu(self.fc1(self.mlp_norm(tokens))))


class GlobalAttentionOperator(nn.Module):
    """ViT-style operator: one attention window covering the grid (cost quadratic in the number of points).

    Pointwise lift of (a, y, x), `num_layers` global-attention blocks, LayerNorm, `Linear -> tanh -> Linear`: the
    MANO operator with its multipole attention replaced by plain global attention.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        hidden_size: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        intermediate_size: int = 128,
        normalization: FieldNormalization | dict | None = None,
    ) -> None:
        super().__init__()
        self.hparams = {
            "in_channels": in_channels, "out_channels": out_channels, "hidden_size": hidden_size,
            "num_layers": num_layers, "num_heads": num_heads, "intermediate_size": intermediate_size,
        }  # fmt: skip
        self.normalization = _as_normalization(normalization)
        self.lift = nn.Linear(in_channels + 2, hidden_size)
        self.blocks = nn.ModuleList(
            GlobalAttentionBlock(hidden_size, num_heads, intermediate_size) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.head_hidden = nn.Linear(hidden_size, hidden_size)
        self.head_out = nn.Linear(hidden_size, out_channels)

    def forward(self, input_fields: torch.Tensor) -> torch.Tensor:
        """(B, H, W, in_channels) -> (B, H, W, out_channels)."""
        norm = self.normalization
        batch_size, height, width, _ = input_fields.shape
        fields = (input_fields - norm.input_mean) / norm.input_std
        coords = grid_coordinates(height, width, fields.device, fields.dtype).expand(batch_size, -1, -1, -1)
        tokens = self.lift(torch.cat([fields, coords], dim=-1)).flatten(1, 2)  # B, H*W, C
        for block in self.blocks:
            tokens = block(tokens)
        outputs = self.head_out(torch.tanh(self.head_hidden(self.norm(tokens))))  # B, H*W, out_channels
        outputs = outputs.view(batch_size, height, width, -1)  # B, H, W, out_channels
        return outputs * norm.output_std + norm.output_mean


def _as_normalization(normalization: FieldNormalization | dict | None) -> FieldNormalization:
    if normalization is None:
        return FieldNormalization()
    if isinstance(normalization, dict):
        return FieldNormalization(**normalization)
    return normalization


__all__ = ["FNOOperator", "FieldNormalization", "GlobalAttentionBlock", "GlobalAttentionOperator"]
