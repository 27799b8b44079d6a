"""MANO configuration: a SwinV2 configuration plus the multipole fields.

Fields are typed and checked the transformers way (`huggingface_hub.dataclasses.strict`): types, including the
`Literal` choices, and field validators run at init and on every assignment; class validators (`validate_*`, the
checks that involve several fields) run at init and again at save. No `from __future__ import annotations` here:
the checks read the annotations at run time.
"""

import difflib
from collections.abc import Sequence
from typing import Literal

from huggingface_hub.dataclasses import as_validated_field, strict
from transformers.models.swinv2.configuration_swinv2 import Swinv2Config

from ...multipole import LevelWeighting, ProjectorInit, ProjectorType, coarse_grid_size, plan_num_levels
from ...remote_code import RemoteCodeConfigMixin
from ..config_validators import at_least


def image_size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of an `image_size` or `patch_size` given as one int or a pair, as SwinV2 configs allow."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


# The fields ManoConfig adds to Swinv2Config.
MANO_FIELDS: tuple[str, ...] = ("num_levels", "sampling_rate", "projector_type", "level_weighting", "projector_init")


@as_validated_field
def level_counts(value) -> None:
    """`"auto"`, or one level count >= 1 per stage."""
    if isinstance(value, str):
        return  # the type check allows "auto" only
    bad = [count for count in value if count < 1]
    if bad:
        raise ValueError(f"num_levels holds counts below 1: {list(value)} (1 is plain window attention)")


@strict
class ManoConfig(RemoteCodeConfigMixin, Swinv2Config):
    r"""
    Configuration of a MANO model (Multipole Attention Neural Operator, arXiv 2507.02748) of the SwinV2 family.

    Every `Swinv2Config` argument is accepted with the same meaning, so a SwinV2 configuration is a valid MANO
    configuration. With no arguments this is mano-tiny: SwinV2-T (embed 96, depths [2, 2, 6, 2], heads
    [3, 6, 12, 24]) at 256 px with window 8, and levels [3, 2, 1, 1].

    num_levels (`str` or `list[int]`, *optional*, defaults to `"auto"`):
        Attention levels of every layer in each stage, counted including the full-resolution level (1 is plain
        SwinV2 window attention). `"auto"` takes, per stage, the largest count whose coarsest grid keeps at
        least two windows per side at `image_size`. Layers planned with more than one level own a `down`/`up`
        projector pair and re-plan their level count from the grid they see at run time, so the far field
        follows the input size; the others stay at one level.
    sampling_rate (`int`, *optional*, defaults to 2):
        Coarsening factor r per side between consecutive levels.
    projector_type (`str`, *optional*, defaults to `"conv"`):
        `"conv"`: learned r x r strided convolution down and transposed convolution up, without bias.
        `"gated"`: the same convolutions, and a learned gate per channel on `up`'s output (C values a layer), so
        the far field can start closed (gate at zero) while `up` already copies coarse tokens to their children.
        `"pool"`: average pooling down and nearest-neighbour up, without parameters (the paper's ablation).
    level_weighting (`str`, *optional*, defaults to `"vcycle"`):
        `"vcycle"` weighs the i-th upsampled coarse contribution (coarsest first) by 1 / (i + 1), as the
        official physics code does; `"sum"` adds them plainly, as the paper's text writes.
    projector_init (`str`, *optional*, defaults to `"avg_pool_zero_up"`):
        `"avg_pool_zero_up"`: `down` averages each r x r patch and the far field starts at zero (`up`'s weight, or
        with `"gated"` projectors the gate, is zero), so a model starts as (or, converted, stays exactly) its SwinV2
        counterpart and training grows the far field. `"avg_pool_nearest_up"`: `up`
        copies each coarse token to its children, so the far field is open from the first step: the better start
        from scratch on tasks that need long-range context (Pathfinder at 64 and 128 px in `docs/fine_tuning.md`),
        the slower one where windows suffice. `"random"`: PyTorch's default initialisation.

    Example:

    ```python
    >>> from transformers_mano import ManoConfig, ManoModel
    >>> config = ManoConfig()  # mano-tiny
    >>> config.resolved_num_levels()
    [3, 2, 1, 1]
    >>> model = ManoModel(config)
    ```"""

    model_type = "mano"
    # the modules whose code `save_pretrained` writes beside config.json (`RemoteCodeConfigMixin`)
    remote_code_modules = (__name__, __name__.rsplit(".", 1)[0] + ".modeling_mano")

    image_size: int | list[int] | tuple[int, int] = 256
    window_size: int = 8
    num_levels: Literal["auto"] | list[int] | tuple[int, ...] = level_counts(default="auto")
    sampling_rate: int = at_least(2)(default=2)
    projector_type: ProjectorType = "conv"
    level_weighting: LevelWeighting = "vcycle"
    projector_init: ProjectorInit = "avg_pool_zero_up"

    def __post_init__(self, **kwargs):
        # a SwinV2 config dict carries its model type; the instance must report MANO's
        source_type = kwargs.pop("model_type", self.model_type)
        if source_type not in (self.model_type, "swinv2"):
            raise ValueError(f"ManoConfig is built from MANO or SwinV2 settings, got model_type {source_type!r}")
        for key in kwargs:
            if hasattr(type(self), key):  # a property of PreTrainedConfig, such as num_labels
                continue
            close = difflib.get_close_matches(key, MANO_FIELDS, n=1, cutoff=0.8)
            if close:
                raise ValueError(f"ManoConfig got an unknown argument {key!r}; did you mean {close[0]!r}?")
        if isinstance(self.num_levels, tuple):
            self.num_levels = list(self.num_levels)
        super().__post_init__(**kwargs)

    def validate_num_levels(self) -> None:
        """The level plan fits the stages: one count per stage, none deeper than its token grid allows."""
        if isinstance(self.num_levels, str):
            return
        if len(self.num_levels) != len(self.depths):
            raise ValueError(
                f"ManoConfig.num_levels needs one entry per stage ({len(self.depths)} for depths {list(self.depths)}), "
                f"got {self.num_levels}"
            )
        for stage, (levels, (height, width)) in enumerate(zip(self.num_levels, self.stage_grid_sizes())):
            max_levels = plan_num_levels(height, width, 1, self.sampling_rate)
            if levels > max_levels:
                raise ValueError(
                    f"ManoConfig.num_levels[{stage}] = {levels} is too deep for the {height}x{width} token grid of "
                    f"stage {stage + 1} at image_size {self.image_size}: at most {max_levels} levels with "
                    f"sampling_rate {self.sampling_rate}"
                )

    @classmethod
    def get_config_dict(cls, *args, **kwargs):
        """`PreTrainedConfig.get_config_dict`, reading a SwinV2 `config.json` as a MANO one: every SwinV2
        configuration is a valid MANO configuration (loading a SwinV2 checkpoint into a MANO class is intended, and
        transformers would otherwise warn that the two model types differ)."""
        config_dict, kwargs = super().get_config_dict(*args, **kwargs)
        if config_dict.get("model_type") == "swinv2":
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    def stage_grid_sizes(self) -> list[tuple[int, int]]:
        """Token grid (height, width) of each stage at `image_size`, as SwinV2 plans its stages."""
        image, patch = image_size_pair(self.image_size), image_size_pair(self.patch_size)
        height, width = image[0] // patch[0], image[1] // patch[1]
        return [(height // 2**stage, width // 2**stage) for stage in range(len(self.depths))]

    def resolved_num_levels(self) -> list[int]:
        """Levels of each stage at `image_size`: `num_levels` itself, or the automatic rule's choice."""
        if self.num_levels != "auto":
            return list(self.num_levels)
        return [plan_num_levels(h, w, 2 * self.window_size, self.sampling_rate) for h, w in self.stage_grid_sizes()]

    def min_coarse_sides(self) -> list[int]:
        """Per stage, the smallest side the coarsest grid may have when a layer re-plans for another input size.

        The automatic rule keeps two windows per side; an explicit plan keeps the coarsest side it has at
        `image_size`, so the planned count is reproduced there and grows with larger inputs.
        """
        if self.num_levels == "auto":
            return [2 * self.window_size] * len(self.depths)
        return [
            min(coarse_grid_size(h, w, self.sampling_rate, levels - 1))
            for levels, (h, w) in zip(self.num_levels, self.stage_grid_sizes())
        ]


__all__ = ["MANO_FIELDS", "ManoConfig", "image_size_pair"]
