"""What a conversion did: the report the conversion script prints, and the model card of the converted folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

from huggingface_hub import ModelCard, ModelCardData

from ..models.mano.configuration_mano import ManoConfig
from ..multipole import coarse_grid_size, projector_parameter_count


CARD_TEMPLATE = "model_card_template.md"
_AUTO_CLASS_NAMES = {
    "ManoModel": "AutoModel",
    "ManoForImageClassification": "AutoModelForImageClassification",
    "ManoForMaskedImageModeling": "AutoModelForMaskedImageModeling",
    "ManoBackbone": "AutoBackbone",
}


@dataclass
class StagePlan:
    """Levels of one stage at `config.image_size`: the grid each level attends on, and its projector count."""

    stage: int
    grid: tuple[int, int]
    num_levels: int
    level_grids: list[tuple[int, int]]
    num_layers: int
    projector_parameters: int

    def describe(self) -> str:
        grids = " -> ".join(f"{h}x{w}" for h, w in self.level_grids)
        projectors = f", +{self.projector_parameters:,} projector parameters" if self.projector_parameters else ""
        return f"stage {self.stage}: {self.num_levels} level(s) ({grids}) in {self.num_layers} layer(s){projectors}"


def level_plan(config: ManoConfig) -> list[StagePlan]:
    """The per-stage level plan of `config` at its `image_size`."""
    plans = []
    r = config.sampling_rate
    for stage, (levels, (height, width), depth) in enumerate(
        zip(config.resolved_num_levels(), config.stage_grid_sizes(), config.depths), start=1
    ):
        channels = int(config.embed_dim * 2 ** (stage - 1))
        per_layer = projector_parameter_count(channels, r, config.projector_type) if levels > 1 else 0
        plans.append(
            StagePlan(
                stage=stage,
                grid=(height, width),
                num_levels=levels,
                level_grids=[coarse_grid_size(height, width, r, step) for step in range(levels)],
                num_layers=depth,
                projector_parameters=depth * per_layer,
            )
        )
    return plans


@dataclass
class ConversionReport:
    """What a conversion did; `format()` gives the text the conversion script prints.

    `max_abs_diff` is the largest |difference| between the outputs (`compared_output`) of the converted model and
    its SwinV2 twin (the source weights, and the same new classifier where one was added) on `num_check_inputs`
    random inputs, both run in float64, where the two compute the same function up to float64 rounding (~1e-12).
    `max_abs_diff_float32` is the same difference in float32, as the models usually run: at trained logit scales
    float32 rounding alone moves SwinV2's own outputs by about 1e-4, so it says nothing about exactness. Both are
    None when the check was skipped.
    """

    source: str
    output_dir: Path
    source_architecture: str
    target_architecture: str
    source_parameters: int
    source_body_parameters: int
    target_parameters: int
    projector_parameters: int
    level_plan: list[StagePlan]
    projector_init: str
    projector_type: str
    level_weighting: str
    compared_output: str
    num_check_inputs: int
    max_abs_diff: float | None
    max_abs_diff_float32: float | None
    exact_expected: bool
    head: str
    dropped: dict[str, str]
    files: list[str]
    notes: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    pushed_to: str | None = None

    @property
    def delta(self) -> int:
        """Target minus source parameter count."""
        return self.target_parameters - self.source_parameters

    def format(self) -> str:
        """The report as printed by `scripts/convert_swinv2_to_mano.py`."""
        relative = 100.0 * self.delta / self.source_parameters
        relative_body = 100.0 * self.projector_parameters / self.source_body_parameters
        if self.max_abs_diff is None:
            check = "not run (num_check_inputs = 0)"
        else:
            expectation = "the same function expected" if self.exact_expected else "differs by design"
            check = (
                f"{self.max_abs_diff:.3e} in float64 over {self.num_check_inputs} random input(s) "
                f"({expectation}); float32: {self.max_abs_diff_float32:.3e}"
            )
        lines = [
            f"source:            {self.source} ({self.source_architecture})",
            f"target:            {self.output_dir} ({self.target_architecture})",
            f"parameters:        {self.source_parameters:,} -> {self.target_parameters:,} "
            f"(delta {self.delta:+,}, {relative:+.2f} %)",
            f"projectors:        +{self.projector_parameters:,} ({relative_body:+.2f} % of the "
            f"{self.source_body_parameters:,} parameters of the source without its head)",
            f"                   type {self.projector_type}, init {self.projector_init}, "
            f"level weighting {self.level_weighting}",
            "level plan:",
            *(f"  {plan.describe()}" for plan in self.level_plan),
            f"head:              {self.head}",
            f"max |{self.compared_output} diff|: {check}",
        ]
        if self.dropped:
            reasons: dict[str, int] = {}
            for reason in self.dropped.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines.append("not carried over:  " + "; ".join(f"{n} x {reason}" for reason, n in reasons.items()))
        lines += [f"note:              {note}" for note in self.notes]
        lines.append("files:             " + ", ".join(self.files))
        if self.pushed_to:
            lines.append(f"pushed to:         {self.pushed_to}")
        return "\n".join(lines)


def render_model_card(
    report: ConversionReport,
    model_id: str,
    base_model: str | None,
    license: str,
    template: str | os.PathLike | None = None,
) -> ModelCard:
    """The model card of a converted checkpoint: Hub metadata from `ModelCardData`, text from the template
    (the one shipped in this package unless `template` names another file)."""
    text = _card_template_text(template)
    is_classifier = report.target_architecture == "ManoForImageClassification"
    pipeline_tag = "image-classification" if is_classifier else "image-feature-extraction"
    source = base_model or Path(report.source).name  # never a local path in a published card
    body = Template(text).substitute(
        metadata=_card_metadata(pipeline_tag, license, base_model).to_yaml(),
        model_id=model_id,
        source=source,
        starting_point=_starting_point_text(report, source),
        task=pipeline_tag,
        numeric_check=_numeric_check_text(report),
        **_card_architecture_fields(report),
    )
    return ModelCard(body)


def _card_template_text(template: str | os.PathLike | None) -> str:
    """The card template: the one shipped in this package, or the file `template` names."""
    if template is None:
        return resources.files(__package__).joinpath(CARD_TEMPLATE).read_text()
    if Path(template).is_file():
        return Path(template).read_text()
    raise FileNotFoundError(f"model card template {template} not found")


def _card_metadata(pipeline_tag: str, license: str, base_model: str | None) -> ModelCardData:
    """The card's Hub metadata (its YAML header)."""
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        base_model=base_model,
        tags=["mano", "multipole-attention", "swinv2", "vision", pipeline_tag],
    )


def _numeric_check_text(report: ConversionReport) -> str:
    """What the numeric check against the source found, in a sentence."""
    if report.max_abs_diff is None:
        return "The numeric check against the source was skipped at conversion time."
    return (
        f"At conversion, the largest |{report.compared_output} difference| between this model and the source "
        f"SwinV2 on {report.num_check_inputs} random inputs was {report.max_abs_diff:.3e} with both run in "
        f"float64 and {report.max_abs_diff_float32:.3e} in float32"
        + (
            " (the same function: float32 differences are rounding, which the logit scales of SwinV2 amplify)."
            if report.exact_expected
            else " (the far field is active from the start, so outputs differ by design)."
        )
    )


def _starting_point_text(report: ConversionReport, source: str) -> str:
    """Whether the converted model computes what its source computes, or needs fine-tuning first."""
    if report.exact_expected:
        return (
            f"Freshly converted: this model computes what `{source}` computes (the far field starts closed: "
            f"{'a gate at zero on' if report.projector_type == 'gated' else 'zero'} `up` projectors), so its coarse "
            "levels contribute nothing until the model is fine-tuned."
        )
    return (
        f"Freshly converted with projector initialisation `{report.projector_init}` (type "
        f"`{report.projector_type}`): the coarse levels contribute from the start, so outputs differ from "
        f"`{source}` and the model needs fine-tuning before use."
    )


def _card_architecture_fields(report: ConversionReport) -> dict[str, str]:
    """The template fields that describe the converted architecture: classes, levels, projectors, sizes, labels."""
    labels = report.labels
    shown_labels = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
    return {
        "auto_class": _AUTO_CLASS_NAMES[report.target_architecture],
        "target_architecture": report.target_architecture,
        "level_plan": "\n".join(f"  - {plan.describe()}" for plan in report.level_plan),
        "levels": " ".join(str(plan.num_levels) for plan in report.level_plan),
        "source_parameters": f"{report.source_parameters:,}",
        "target_parameters": f"{report.target_parameters:,}",
        "delta": f"{report.delta:+,}",
        "projector_init": report.projector_init,
        "projector_type": report.projector_type,
        "level_weighting": report.level_weighting,
        "head": report.head,
        "labels": shown_labels or "none (feature extractor)",
    }


__all__ = ["ConversionReport", "StagePlan", "level_plan", "render_model_card"]
