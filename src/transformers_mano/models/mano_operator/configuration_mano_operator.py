"""Configuration of the MANO neural operator (the physics model of arXiv 2507.02748).

Typed and checked the transformers way, as `ManoConfig` is: types (`Literal` choices included) and field validators at
init and on assignment, class validators (`validate_*`) at init and at save.
"""

from typing import Literal, get_args

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ...multipole import LevelWeighting, ProjectorInit, ProjectorType, plan_num_levels
from ...remote_code import RemoteCodeConfigMixin
from ..config_validators import above, at_least


PositionalEmbedding = Literal["none", "grid"]
POSITIONAL_EMBEDDINGS: tuple[str, ...] = get_args(PositionalEmbedding)
GridLayout = Literal["corners", "strided"]
GRID_LAYOUTS: tuple[str, ...] = get_args(GridLayout)
Restriction = Literal["sample", "linear", "average"]
Prolongation = Literal["nominal", "consistent"]
AttentionKernel = Literal["auto", "torch"]


@strict
class ManoOperatorConfig(RemoteCodeConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a `ManoOperatorModel`: a neural operator mapping fields on a 2-D grid to fields on the same grid
    with multipole attention (arXiv 2507.02748, physics model). Defaults are the settings seen in the official physics
    code: dim 128, depth 8, 4 heads of 32, 2 x 2 windows with stride 1, sampling rate 2.

    in_channels (`int`, *optional*, defaults to 1):
        Channels of the input field (the Darcy coefficient a(x): 1).
    out_channels (`int`, *optional*, defaults to 1):
        Channels of the output field (the Darcy solution u(x): 1).
    hidden_size (`int`, *optional*, defaults to 128):
        Width of the token grid after the pointwise lift.
    num_hidden_layers (`int`, *optional*, defaults to 8):
        Number of multipole blocks (attention + feed-forward, each with a residual).
    num_attention_heads (`int`, *optional*, defaults to 4):
        Heads of every attention.
    head_dim (`int`, *optional*, defaults to 32):
        Width of one head; the attention's inner width is `num_attention_heads * head_dim`.
    intermediate_size (`int`, *optional*, defaults to 256):
        Hidden width of the feed-forward MLP (inferred: the official code's value was not available).
    window_size (`int`, *optional*, defaults to 2):
        Side k of the local k x k attention windows, at every level.
    window_stride (`int`, *optional*, defaults to 1):
        Stride s between windows; s < k gives overlapping windows whose outputs are averaged per grid point.
    sampling_rate (`int`, *optional*, defaults to 2):
        Coarsening factor r per side between consecutive levels.
    num_levels (`str` or `int`, *optional*, defaults to `"auto"`):
        Levels of every block, full resolution included. `"auto"` follows the input grid: the largest count whose
        coarsest grid keeps max(r, k) points per side, i.e. floor(log_r(side)) for k <= r, so the coarsest level fits
        in one window and every head sees the whole domain at any resolution. An integer fixes the count (1 is
        local window attention only, the ablation without far field).
    projector_type (`str`, *optional*, defaults to `"conv"`):
        `"conv"`: learned r x r strided convolution down and transposed convolution up (no bias).
        `"pool"`: average pooling down and nearest-neighbour up, without parameters.
    level_weighting (`str`, *optional*, defaults to `"vcycle"`):
        `"vcycle"`: the i-th upsampled coarse contribution (coarsest first) is weighed by 1 / (i + 1), as in the
        official physics code; `"sum"`: plain sum.
    projector_init (`str`, *optional*, defaults to `"random"`):
        Initialisation of learned projectors (see `multipole.projector_initial_values`). An operator trains from
        scratch, so PyTorch's default is the default.
    positional_embedding (`str`, *optional*, defaults to `"none"`):
        `"none"`: no positional information, as in the official code. `"grid"`: the lift also sees the (y, x)
        coordinates of each point in [0, 1], which are defined at every resolution.
    native_resolution (`int`, *optional*):
        The grid side the operator was trained at. Its k x k windows and r x r projectors learn stencils tied to
        that grid spacing; on a grid r times finer (an integer r on both sides) the operator then runs on the
        r x r interleaved sub-grids `fields[:, i::r, j::r]`, each at the trained spacing, and interleaves their
        outputs. `None` (default): every grid runs as given.
    attention_resolution (`int`, *optional*):
        The grid side whose spacings the learned stencils belong to (the training grid's). On a grid of another
        side, every block resamples its input to this side for the multipole attention, at the same points of the
        domain (see `grid_layout` and `attention_restriction`), and interpolates the attention's output back
        linearly; the residual stream, the MLPs, the lift and the head stay on the input grid, so the operator keeps
        the input's detail and its attention the trained spacings. Grid coordinates (`positional_embedding="grid"`)
        are then taken in this grid's units, so the same place of the domain gets the same coordinates at every
        side. On a grid of this side nothing changes. `None` (default): the attention runs on every grid as given.
        With `native_resolution` too, it applies within each sub-grid.
    attention_restriction (`str`, *optional*, defaults to `"sample"`):
        How a finer grid is resampled to `attention_resolution`. `"sample"`: at each trained point, the value of the
        nearest point of the finer grid, as training grids made by subsampling a finer field hold (on nested grids,
        the trained points' own values: the blocks then compute there exactly what they compute on the trained
        grid). `"linear"`: linear interpolation at the trained points' positions (the same on nested grids; between
        the points of a discontinuous field it makes values no training grid holds). `"average"`: the local mean of
        linear interpolation's transpose (full weighting, anti-aliased), for fields whose grid values are cell
        averages.
    attention_prolongation (`str`, *optional*, defaults to `"consistent"`):
        How the attention's output at `attention_resolution` is interpolated back onto a finer grid, linearly from
        where its values stand. `"consistent"`: from the points `attention_restriction="sample"` read (the finer
        grid's points nearest the trained ones), so that the next block's restriction reads back exactly what the
        attention wrote, and at those points every block computes what it computes on the trained grid. `"nominal"`:
        from the trained points' positions (the behaviour before the option). On nested grids the two coincide; on
        grids that are not nested (a 64 x 64 grid with both ends against a 32 x 32 one) `"nominal"` moves the
        update by up to a quarter of a trained spacing at the points the attention reads, and the blocks compound
        it. With the other restrictions, whose values stand at the trained points, both are `"nominal"`.
    grid_layout (`str`, *optional*, defaults to `"corners"`):
        Where the n points of an axis sit in [0, 1], which the resampling of `attention_resolution` follows:
        `"corners"`: at i / (n - 1), both ends included (`generate_darcy`); `"strided"`: at i / n, the first end
        kept and the last dropped, as grids subsampled by a stride are (the neuraloperator and PDEBench files, where
        the 16 x 16 grid is the 32 x 32 one's even points).
    attention_kernel (`str`, *optional*, defaults to `"auto"`):
        How the window attention runs; both compute the same function. `"auto"`: on the CPU in float32 or float64,
        the fused kernel of `window_kernel.py` (compiled with the system's C++ compiler on first use; where none
        builds, the tensor path); elsewhere, inside `torch.compile` and `torch.func` transforms, the tensor path
        (second derivatives differentiate the kernel's backward through the tensor path). `"torch"`: always the
        tensor path (batched products over tiles of tokens), the reference.
    layer_norm_eps (`float`, *optional*, defaults to 1e-5):
        Epsilon of every LayerNorm.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the truncated normal initialisation of linear layers.
    input_mean, input_std, output_mean, output_std (`float`, *optional*, defaults to 0, 1, 0, 1):
        Affine normalisation of the input field and de-normalisation of the output, fitted on the training set, so
        that a saved operator maps physical fields to physical fields.

    Example:

    ```python
    >>> from transformers_mano import ManoOperatorConfig, ManoOperatorModel
    >>> config = ManoOperatorConfig(hidden_size=64, num_hidden_layers=4)
    >>> config.levels_for(16, 16), config.levels_for(32, 32)
    (4, 5)
    >>> model = ManoOperatorModel(config)
    ```"""

    model_type = "mano_operator"
    # the modules whose code `save_pretrained` writes beside config.json (`RemoteCodeConfigMixin`)
    remote_code_modules = (__name__, __name__.rsplit(".", 1)[0] + ".modeling_mano_operator")
    # `Trainer` keeps only the predicted fields of an evaluation, not the hidden states
    keys_to_ignore_at_inference = ["last_hidden_state"]

    in_channels: int = at_least(1)(default=1)
    out_channels: int = at_least(1)(default=1)
    hidden_size: int = at_least(1)(default=128)
    num_hidden_layers: int = at_least(1)(default=8)
    num_attention_heads: int = at_least(1)(default=4)
    head_dim: int = at_least(1)(default=32)
    intermediate_size: int = at_least(1)(default=256)
    window_size: int = at_least(1)(default=2)
    window_stride: int = at_least(1)(default=1)
    sampling_rate: int = at_least(2)(default=2)
    num_levels: Literal["auto"] | int = at_least(1)(default="auto")
    projector_type: ProjectorType = "conv"
    level_weighting: LevelWeighting = "vcycle"
    projector_init: ProjectorInit = "random"
    positional_embedding: PositionalEmbedding = "none"
    native_resolution: int | None = at_least(2)(default=None)
    attention_resolution: int | None = at_least(2)(default=None)
    attention_restriction: Restriction = "sample"
    attention_prolongation: Prolongation = "consistent"
    grid_layout: GridLayout = "corners"
    attention_kernel: AttentionKernel = "auto"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    input_mean: float = 0.0
    input_std: float = above(0.0)(default=1.0)
    output_mean: float = 0.0
    output_std: float = above(0.0)(default=1.0)

    def validate_window_stride(self) -> None:
        """Windows taken with a stride above their size would leave grid points out."""
        if self.window_stride > self.window_size:
            raise ValueError(
                f"window_stride ({self.window_stride}) must not exceed window_size ({self.window_size}): windows "
                "would leave grid points out"
            )

    def levels_for(self, height: int, width: int) -> int:
        """Level count of every block on a (height, width) grid (see `num_levels`)."""
        if self.num_levels != "auto":
            return int(self.num_levels)
        min_side = max(self.sampling_rate, self.window_size)
        return plan_num_levels(height, width, min_side, self.sampling_rate)


__all__ = ["GRID_LAYOUTS", "POSITIONAL_EMBEDDINGS", "ManoOperatorConfig"]
