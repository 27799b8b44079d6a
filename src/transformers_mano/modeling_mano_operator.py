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

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_mano_operator import ManoOperatorConfig
from .multipole import MultipoleDownsample, MultipoleUpsample, build_projectors, multipole_attention, projector_init_weight


def relative_l2(predictions: torch.Tensor, targets: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Per-sample relative L2 error `||p - t|| / ||t||` (or its square, the relative MSE), shape (B,).

    Args:
        predictions, targets: (B, ...) fields; every dimension after the first is reduced.
    """
    error = (predictions - targets).flatten(1).pow(2).sum(1)
    norm = targets.flatten(1).pow(2).sum(1).clamp_min(torch.finfo(targets.dtype).tiny)
    ratio = error / norm
    return ratio if squared else ratio.sqrt()


def grid_coordinates(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, H, W, 2) coordinates (y, x) of the grid points in [0, 1], the same domain at every resolution."""
    ys = torch.linspace(0.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(0.0, 1.0, width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)[None]  # 1, H, W, 2


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


class ManoOperatorWindowAttention(nn.Module):
    """Softmax attention in k x k windows taken with stride s; overlapping outputs are averaged per grid point.

    LayerNorm, then the QKV projection, then scaled dot-product attention inside each window, then the output
    projection. No positional bias: the kernel depends on the field values only, so it is the same at every level
    and every resolution. A grid smaller than a window, or whose windows would overhang, is padded and the padded
    keys are masked.
    """

    def __init__(self, config: ManoOperatorConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.window_size = config.window_size
        self.window_stride = config.window_stride
        inner = config.num_attention_heads * config.head_dim
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(config.hidden_size, 3 * inner)
        self.proj = nn.Linear(inner, config.hidden_size)

    def _padded_side(self, side: int) -> int:
        padded = max(side, self.window_size)
        return padded + (-(padded - self.window_size)) % self.window_stride

    def _window_masks(
        self, height: int, width: int, device: torch.device
    ) -> tuple[list[tuple[int, int]], dict[tuple[int, int], torch.Tensor], dict[tuple[int, int], torch.Tensor]]:
        """Window offsets, and per grid point: which keys exist at each displacement, which windows it belongs to.

        Returns:
            offsets: the k*k positions (dy, dx) inside a window.
            key_valid: displacement d -> (h, w) bool, the point x + d lies on the grid.
            role_valid: offset a -> (h, w) bool, a window starts at x - a (inside the padded grid, on the stride).
        """
        k, s = self.window_size, self.window_stride
        padded = (self._padded_side(height), self._padded_side(width))
        ys = torch.arange(height, device=device)[:, None]
        xs = torch.arange(width, device=device)[None, :]
        offsets = [(dy, dx) for dy in range(k) for dx in range(k)]
        key_valid = {
            (dy, dx): ((ys + dy >= 0) & (ys + dy < height)) & ((xs + dx >= 0) & (xs + dx < width))
            for dy in range(1 - k, k)
            for dx in range(1 - k, k)
        }
        role_valid = {}
        for ay, ax in offsets:
            start_y, start_x = ys - ay, xs - ax
            valid_y = (start_y >= 0) & (start_y <= padded[0] - k) & (start_y % s == 0)
            valid_x = (start_x >= 0) & (start_x <= padded[1] - k) & (start_x % s == 0)
            role_valid[(ay, ax)] = valid_y & valid_x
        return offsets, key_valid, role_valid

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) -> (B, h, w, C).

        Windows are never materialised. A point x in the window starting at x - a (its role a) attends to the keys
        at x + d for d = b - a, b over the window; the score `q(x) . k(x + d)` depends on d only, so the
        (2k - 1)^2 displacement maps are computed once and shared by all windows. Per role, a softmax over its k^2
        displacements; the probabilities of the roles x really has are averaged (the overlap average) into one
        weight per displacement, which then gathers the values. Elementwise work on (B, h, w, heads, d) maps,
        which on CPU beats batching millions of k^2 x k^2 attention matrices.
        """
        batch_size, height, width, _ = grid.shape
        k, heads, head_dim = self.window_size, self.num_heads, self.head_dim
        offsets, key_valid, role_valid = self._window_masks(height, width, grid.device)
        qkv = self.qkv(self.norm(grid)).view(batch_size, height, width, 3, heads, head_dim)
        query, key, value = qkv.unbind(3)  # each B, h, w, heads, d
        query = query * head_dim**-0.5
        margin = k - 1
        key = F.pad(key, (0, 0, 0, 0, margin, margin, margin, margin))  # B, h+2m, w+2m, heads, d
        value = F.pad(value, (0, 0, 0, 0, margin, margin, margin, margin))

        def shifted(tensor: torch.Tensor, d: tuple[int, int]) -> torch.Tensor:
            """The padded map read at x + d for every grid point x: (B, h+2m, w+2m, ...) -> (B, h, w, ...)."""
            return tensor[:, margin + d[0] : margin + d[0] + height, margin + d[1] : margin + d[1] + width]

        scores = {d: (query * shifted(key, d)).sum(-1) for d in key_valid}  # d -> B, h, w, heads
        weights = dict.fromkeys(key_valid, 0.0)
        roles = torch.zeros(height, width, device=grid.device)
        for a in offsets:
            displacements = [(b[0] - a[0], b[1] - a[1]) for b in offsets]
            role_scores = torch.stack([scores[d] for d in displacements], dim=-1)  # B, h, w, heads, k*k
            # keys off the grid are masked; where x lacks this role every key is allowed (finite), then zeroed
            allowed = torch.stack([key_valid[d] for d in displacements], dim=-1) | ~role_valid[a][..., None]
            probs = role_scores.masked_fill(~allowed[:, :, None, :], float("-inf")).softmax(-1)
            probs = probs * role_valid[a][:, :, None, None]
            for j, d in enumerate(displacements):
                weights[d] = weights[d] + probs[..., j]
            roles = roles + role_valid[a]
        attended = sum(
            (weight / roles[:, :, None])[..., None] * shifted(value, d) for d, weight in weights.items()
        )  # B, h, w, heads, d
        averaged = attended.reshape(batch_size, height, width, heads * head_dim)
        return self.proj(averaged)


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
    single level has no projectors.
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
        """(B, H, W, C) -> (B, H, W, C); the level count follows (H, W)."""
        num_levels = self.config.levels_for(grid.shape[1], grid.shape[2]) if self.down is not None else 1
        attend = lambda level_grid, level: self.attention(level_grid)  # noqa: E731  same kernel at every level
        grid = grid + multipole_attention(grid, attend, self.down, self.up, num_levels, self.config.level_weighting)
        return grid + self.feed_forward(grid)


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
            weight = projector_init_weight(module, self.config.projector_init)
            if weight is None:  # PyTorch's default for convolutions
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            else:
                init.copy_(module.weight, weight)


class ManoOperatorModel(ManoOperatorPreTrainedModel):
    """MANO neural operator: pointwise lift, multipole blocks, LayerNorm, then `Linear -> tanh -> Linear`.

    Maps (B, H, W, in_channels) input fields to (B, H, W, out_channels) output fields at any H, W: the level count
    of each block follows the grid, so a model trained at 16 x 16 runs at 32 x 32 or 64 x 64 unchanged.
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
        if self.config.positional_embedding == "grid":
            coords = grid_coordinates(height, width, grid.device, grid.dtype).expand(batch_size, -1, -1, -1)
            grid = torch.cat([grid, coords], dim=-1)  # B, H, W, in_channels + 2
        grid = self.lift(grid)  # B, H, W, C
        for layer in self.layers:
            grid = layer(grid)
        hidden = self.norm(grid)
        predictions = self.head_out(torch.tanh(self.head_hidden(hidden)))  # B, H, W, out_channels
        predictions = predictions * self.config.output_std + self.config.output_mean
        loss = relative_l2(predictions, labels).mean() if labels is not None else None
        if not return_dict:
            return tuple(value for value in (loss, predictions, hidden) if value is not None)
        return ManoOperatorOutput(loss=loss, predictions=predictions, last_hidden_state=hidden)


AUTO_MAP: dict[str, str] = {
    "AutoConfig": "configuration_mano_operator.ManoOperatorConfig",
    "AutoModel": "modeling_mano_operator.ManoOperatorModel",
}
# Saving a model marked this way copies this file and its siblings beside the weights.
ManoOperatorModel.register_for_auto_class("AutoModel")

__all__ = [
    "AUTO_MAP",
    "ManoOperatorFeedForward",
    "ManoOperatorLayer",
    "ManoOperatorModel",
    "ManoOperatorOutput",
    "ManoOperatorPreTrainedModel",
    "ManoOperatorWindowAttention",
    "grid_coordinates",
    "relative_l2",
]
