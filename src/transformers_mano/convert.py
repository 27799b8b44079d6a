"""Convert SwinV2 checkpoints (Hub ids or local folders) into MANO checkpoints, and optionally publish them.

A MANO model of the SwinV2 family holds every SwinV2 weight under the same name and adds one `down`/`up` projector
pair per layer planned with more than one level. Conversion therefore

1. reads the SwinV2 configuration and weights (safetensors; a `.bin` file only through `torch.load(weights_only=True)`),
2. builds a `ManoConfig` from the SwinV2 one plus the level plan and projector initialisation,
3. renames the SwinV2 tensors for the target class (`convert_state_dict`, pure and offline) and loads them, checking
   that the projectors (and a classifier being replaced) are the only weights the SwinV2 checkpoint does not provide,
4. compares the converted model with its SwinV2 twin on a few random inputs (with the default initialisation,
   `down` = 2x2 average and `up` = 0, they agree to float rounding),
5. writes a complete Hub repository (weights, config with `auto_map`, remote-code files, the source's
   `preprocessor_config.json`, a model card) into a temporary folder beside the target and renames it into place,
   so a failed conversion leaves nothing behind,
6. uploads the folder with `huggingface_hub` when, and only when, asked to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import torch
from huggingface_hub import HfApi, ModelCard, ModelCardData, hf_hub_download
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import (
    Swinv2Backbone,
    Swinv2Config,
    Swinv2ForImageClassification,
    Swinv2ForMaskedImageModeling,
    Swinv2Model,
)

from .configuration_mano import ManoConfig
from .modeling_mano import (
    ManoBackbone,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoModel,
    ManoPreTrainedModel,
)
from .multipole import PROJECTOR_INITS, coarse_grid_size

# SwinV2 class -> its MANO counterpart. Keys name the architectures as `config.architectures` does.
MANO_COUNTERPARTS: dict[str, type[ManoPreTrainedModel]] = {
    "Swinv2Model": ManoModel,
    "Swinv2ForImageClassification": ManoForImageClassification,
    "Swinv2ForMaskedImageModeling": ManoForMaskedImageModeling,
    "Swinv2Backbone": ManoBackbone,
}
SWINV2_CLASSES: dict[str, type[torch.nn.Module]] = {
    "Swinv2Model": Swinv2Model,
    "Swinv2ForImageClassification": Swinv2ForImageClassification,
    "Swinv2ForMaskedImageModeling": Swinv2ForMaskedImageModeling,
    "Swinv2Backbone": Swinv2Backbone,
}
# Architectures whose weights sit under the `swinv2.` prefix (the others hold the body at the top level).
_PREFIXED_ARCHITECTURES = ("Swinv2ForImageClassification", "Swinv2ForMaskedImageModeling")
# Tables that older SwinV2 checkpoints saved; transformers now recomputes them (non-persistent buffers).
_DERIVED_BUFFER_SUFFIXES = (".relative_coords_table", ".relative_position_index")
# ManoConfig fields that a SwinV2 configuration lacks.
MANO_CONFIG_FIELDS = ("num_levels", "sampling_rate", "projector_type", "level_weighting", "projector_init")
# Config entries that describe the saved file rather than the model; never carried from SwinV2 to MANO.
_FILE_CONFIG_KEYS = ("model_type", "architectures", "transformers_version", "_name_or_path", "auto_map")

_AUTO_CLASS_NAMES = {
    "ManoModel": "AutoModel",
    "ManoForImageClassification": "AutoModelForImageClassification",
    "ManoForMaskedImageModeling": "AutoModelForMaskedImageModeling",
    "ManoBackbone": "AutoBackbone",
}

SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_WEIGHTS = "pytorch_model.bin"
PYTORCH_INDEX = "pytorch_model.bin.index.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
DEFAULT_CARD_TEMPLATE = Path(__file__).resolve().parents[2] / "model_cards" / "mano_converted.md"
# A Hub repository id: "name" or "owner/name".
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ConversionError(ValueError):
    """A SwinV2 checkpoint that cannot be converted, or a conversion that failed its checks."""


# ---------------------------------------------------------------------------------------------------------------------
# Reading a SwinV2 checkpoint


@dataclass
class SwinV2Checkpoint:
    """A SwinV2 checkpoint read into memory.

    Attributes:
        name: the Hub id or local path it was read from.
        folder: local folder holding its files (the Hub cache for a Hub id).
        is_hub: whether `name` is a Hub id.
        config: its configuration.
        architecture: the SwinV2 class its weights belong to, recognised from the weight names.
        state_dict: its tensors, as saved.
        weights_files: the weight files read.
        preprocessor_config: its `preprocessor_config.json`, if it has one.
    """

    name: str
    folder: Path
    is_hub: bool
    config: Swinv2Config
    architecture: str
    state_dict: dict[str, torch.Tensor]
    weights_files: list[str]
    preprocessor_config: Path | None


def _is_hub_id(checkpoint: str) -> bool:
    return not Path(checkpoint).exists() and bool(_REPO_ID.match(checkpoint)) and not checkpoint.startswith(".")


def _fetch_from_hub(repo_id: str, revision: str | None) -> Path:
    """Download the files a conversion reads (config, preprocessor config, weights) and return their folder."""
    try:
        files = set(HfApi().list_repo_files(repo_id, revision=revision))
    except Exception as error:  # network, authentication, missing repo: all end the conversion the same way
        raise ConversionError(
            f"{repo_id!r} is not a local folder, and listing it on the Hugging Face Hub failed: {error}"
        ) from error
    if SAFETENSORS_WEIGHTS in files or SAFETENSORS_INDEX in files:
        weights = [f for f in files if f == SAFETENSORS_INDEX or (f.endswith(".safetensors") and "/" not in f)]
    else:
        weights = [f for f in files if f == PYTORCH_INDEX or re.fullmatch(r"pytorch_model[\w.-]*\.bin", f)]
    wanted = ["config.json", *sorted(weights)] + ([PREPROCESSOR_CONFIG] if PREPROCESSOR_CONFIG in files else [])
    folder = None
    for filename in wanted:
        if filename not in files:
            continue  # reported later, with the same message as for a local folder
        try:
            folder = Path(hf_hub_download(repo_id, filename, revision=revision)).parent
        except Exception as error:
            raise ConversionError(f"downloading {filename} of {repo_id!r} from the Hub failed: {error}") from error
    if folder is None:
        raise ConversionError(f"the Hub repository {repo_id!r} has no config.json and no weights")
    return folder


def read_swinv2_config(folder: Path, name: str) -> Swinv2Config:
    """The SwinV2 configuration in `folder`, refusing any other model type with a message that names it."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{name} has no config.json: it is not a transformers checkpoint")
    try:
        config_dict = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"config.json of {name} is not valid JSON: {error}") from error
    model_type = config_dict.get("model_type")
    if model_type == ManoConfig.model_type:
        raise ConversionError(f"{name} is already a MANO checkpoint (model_type 'mano'); load it directly")
    if model_type != "swinv2":
        raise ConversionError(
            f"{name} has model_type {model_type!r}; only SwinV2 checkpoints (model_type 'swinv2') can be converted"
            + (" (Swin v1 has no continuous position bias to reuse)" if model_type == "swin" else "")
        )
    return Swinv2Config.from_pretrained(folder)


def _read_weight_file(path: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, Exception) as error:  # torch.load raises many kinds on corrupt or unsafe pickles
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch (weights only)"
        raise ConversionError(f"{path.name} of {name} is not a readable {kind} weight file: {error}") from error


def read_swinv2_weights(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every tensor of the checkpoint in `folder` (safetensors preferred), and the files read."""
    for weights, index in ((SAFETENSORS_WEIGHTS, SAFETENSORS_INDEX), (PYTORCH_WEIGHTS, PYTORCH_INDEX)):
        if (folder / weights).is_file():
            files = [weights]
        elif (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ConversionError(f"{index} of {name} is not a valid weight index: {error}") from error
            files = sorted(set(weight_map.values()))
            absent = [f for f in files if not (folder / f).is_file()]
            if absent:
                raise ConversionError(f"{name} lists weight shards it does not have: {absent}")
        else:
            continue
        state_dict: dict[str, torch.Tensor] = {}
        for filename in files:
            state_dict.update(_read_weight_file(folder / filename, name))
        if not state_dict:
            raise ConversionError(f"the weight files {files} of {name} hold no tensors")
        return state_dict, files
    raise ConversionError(
        f"{name} has no weights: expected {SAFETENSORS_WEIGHTS} (or a sharded {SAFETENSORS_INDEX}), "
        f"or {PYTORCH_WEIGHTS}"
    )


def swinv2_architecture(state_dict: Mapping[str, Any]) -> str:
    """The SwinV2 class a state dict belongs to, told from its weight names (more reliable than `architectures`)."""
    if any(key.startswith("classifier.") for key in state_dict):
        return "Swinv2ForImageClassification"
    if any(key.startswith("decoder.") for key in state_dict):
        return "Swinv2ForMaskedImageModeling"
    if any(key.startswith("embeddings.") for key in state_dict):
        # Both keep the body at the top level; only the bare model has the final layernorm.
        return "Swinv2Model" if any(key.startswith("layernorm.") for key in state_dict) else "Swinv2Backbone"
    if any(key.startswith("swinv2.embeddings.") for key in state_dict):
        return "Swinv2ForImageClassification"  # a head without parameters: num_labels = 0
    raise ConversionError("the weights hold no SwinV2 embeddings (no 'embeddings.' or 'swinv2.embeddings.' keys)")


def load_swinv2_checkpoint(checkpoint: str | os.PathLike, revision: str | None = None) -> SwinV2Checkpoint:
    """Read a SwinV2 checkpoint from a local folder or, when no such folder exists, from the Hugging Face Hub."""
    name = os.fspath(checkpoint)
    is_hub = _is_hub_id(name)
    if is_hub:
        folder = _fetch_from_hub(name, revision)
    else:
        folder = Path(name)
        if not folder.is_dir():
            raise ConversionError(f"{name} is neither a local checkpoint folder nor a Hugging Face Hub id")
    config = read_swinv2_config(folder, name)
    state_dict, files = read_swinv2_weights(folder, name)
    preprocessor = folder / PREPROCESSOR_CONFIG
    return SwinV2Checkpoint(
        name=name,
        folder=folder,
        is_hub=is_hub,
        config=config,
        architecture=swinv2_architecture(state_dict),
        state_dict=state_dict,
        weights_files=files,
        preprocessor_config=preprocessor if preprocessor.is_file() else None,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Configuration and weights (pure, offline)


def build_mano_config(
    swinv2_config: Swinv2Config,
    num_levels: str | Sequence[int] = "auto",
    projector_init: str = "avg_pool_zero_up",
    projector_type: str = "conv",
    level_weighting: str = "vcycle",
    num_labels: int | None = None,
    label_names: Sequence[str] | None = None,
) -> ManoConfig:
    """The MANO configuration of a SwinV2 one: every SwinV2 field kept, the multipole fields added.

    `num_labels` / `label_names` describe a new classification head; `label_names` alone implies its size.
    ManoConfig validates the multipole fields (an impossible level plan names the stage and its grid).
    """
    values = {k: v for k, v in swinv2_config.to_dict().items() if k not in _FILE_CONFIG_KEYS}
    if label_names is not None:
        label_names = list(label_names)
        if num_labels is not None and num_labels != len(label_names):
            raise ConversionError(f"num_labels = {num_labels} but {len(label_names)} label names were given")
        if len(set(label_names)) != len(label_names):
            raise ConversionError(f"label names must be distinct, got {label_names}")
        values["id2label"] = dict(enumerate(label_names))
        values["label2id"] = {label: i for i, label in enumerate(label_names)}
    elif num_labels is not None:
        if num_labels < 1:
            raise ConversionError(f"num_labels must be >= 1, got {num_labels}")
        if num_labels != swinv2_config.num_labels:
            values["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
            values["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    values.update(
        num_levels=num_levels if isinstance(num_levels, str) else list(num_levels),
        projector_init=projector_init,
        projector_type=projector_type,
        level_weighting=level_weighting,
    )
    return ManoConfig(**values)


def swinv2_twin_config(config: ManoConfig) -> Swinv2Config:
    """The SwinV2 configuration of a MANO one: the model a MANO model computes when its far field is zero."""
    values = config.to_dict()
    for key in (*_FILE_CONFIG_KEYS, *MANO_CONFIG_FIELDS):
        values.pop(key, None)
    return Swinv2Config(**values)


def projector_keys(config: ManoConfig, prefix: str = "swinv2.") -> list[str]:
    """State-dict keys of the learned projectors a MANO model of `config` owns (none for `projector_type="pool"`)."""
    if config.projector_type != "conv":
        return []
    return [
        f"{prefix}encoder.layers.{stage}.blocks.{block}.{projector}.weight"
        for stage, (levels, depth) in enumerate(zip(config.resolved_num_levels(), config.depths))
        if levels > 1
        for block in range(depth)
        for projector in ("down", "up")
    ]


def _body_prefix(architecture: str) -> str:
    return "swinv2." if architecture in _PREFIXED_ARCHITECTURES else ""


def target_architecture(source_architecture: str, new_head: bool) -> str:
    """The SwinV2 class whose MANO counterpart a conversion builds: the source's, or a classifier for a new head."""
    if not new_head or source_architecture == "Swinv2ForImageClassification":
        return source_architecture
    if source_architecture == "Swinv2Backbone":
        raise ConversionError(
            "a Swinv2Backbone checkpoint has no final layernorm, so no classification head can be put on it; "
            "convert it without num_labels / label_names"
        )
    return "Swinv2ForImageClassification"


@dataclass
class StateDictConversion:
    """SwinV2 tensors renamed for a MANO model, and the keys the MANO model must initialise itself.

    Attributes:
        state_dict: SwinV2 tensors under the target's key names (loaded with `strict=False`).
        new_keys: keys absent from `state_dict` that the MANO model initialises: its projectors, and a classifier
            that is new or replaced.
        dropped: source keys not carried over, with the reason.
    """

    state_dict: dict[str, torch.Tensor]
    new_keys: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    config: ManoConfig,
    source_architecture: str,
    target: str,
    replace_classifier: bool = False,
) -> StateDictConversion:
    """Rename a SwinV2 state dict for the MANO counterpart of `target` (a SwinV2 class name).

    MANO keeps every SwinV2 name, so renaming only moves the body between the `swinv2.` prefix of the heads and the
    top level of `Swinv2Model` / `Swinv2Backbone`, and drops what the target has no place for: derived tables that
    old checkpoints saved, the SimMIM decoder and mask token, a classifier that is replaced. Tensors are not copied.
    """
    source_prefix, target_prefix = _body_prefix(source_architecture), _body_prefix(target)
    target_has_mask_token = target == "Swinv2ForMaskedImageModeling"
    renamed: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, tensor in state_dict.items():
        if key.endswith(_DERIVED_BUFFER_SUFFIXES):
            dropped[key] = "derived table, recomputed by the model"
        elif key.startswith("classifier."):
            if target != "Swinv2ForImageClassification":
                dropped[key] = "classifier of the source, the target has no classification head"
            elif replace_classifier:
                dropped[key] = "classifier of the source, replaced by a new head"
            else:
                renamed[key] = tensor
        elif key.startswith("decoder.") and target != "Swinv2ForMaskedImageModeling":
            dropped[key] = "SimMIM decoder, the target has no masked-image-modeling head"
        elif key.startswith(source_prefix) and not key.startswith(("classifier.", "decoder.")):
            body_key = key[len(source_prefix) :]
            if body_key == "embeddings.mask_token" and not target_has_mask_token:
                dropped[key] = "SimMIM mask token, unused by the target"
            else:
                renamed[target_prefix + body_key] = tensor
        else:
            renamed[key] = tensor  # unknown to the renaming: the loader reports it as unexpected
    new_keys = projector_keys(config, target_prefix)
    if target == "Swinv2ForImageClassification" and config.num_labels > 0 and "classifier.weight" not in renamed:
        new_keys += ["classifier.weight", "classifier.bias"]
    return StateDictConversion(renamed, new_keys, dropped)


# ---------------------------------------------------------------------------------------------------------------------
# Report


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


@dataclass
class ConversionReport:
    """What a conversion did; `format()` gives the text the conversion script prints.

    `max_abs_diff` is the largest |difference| between the outputs (`compared_output`) of the converted model and
    its SwinV2 twin (the source weights, and the same new classifier where one was added) on `num_check_inputs`
    random inputs; None when the check was skipped. `labels` are the class names of a classification head, in
    index order.
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
            expectation = "exact up to float rounding expected" if self.exact_expected else "differs by design"
            check = f"{self.max_abs_diff:.3e} over {self.num_check_inputs} random input(s) ({expectation})"
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


def level_plan(config: ManoConfig) -> list[StagePlan]:
    """The per-stage level plan of `config` at its `image_size`."""
    plans = []
    r = config.sampling_rate
    for stage, (levels, (height, width), depth) in enumerate(
        zip(config.resolved_num_levels(), config.stage_grid_sizes(), config.depths), start=1
    ):
        channels = int(config.embed_dim * 2 ** (stage - 1))
        owns_projectors = levels > 1 and config.projector_type == "conv"
        plans.append(
            StagePlan(
                stage=stage,
                grid=(height, width),
                num_levels=levels,
                level_grids=[coarse_grid_size(height, width, r, step) for step in range(levels)],
                num_layers=depth,
                projector_parameters=2 * depth * channels * channels * r * r if owns_projectors else 0,
            )
        )
    return plans


# ---------------------------------------------------------------------------------------------------------------------
# Numeric check


def _outputs_to_compare(architecture: str) -> tuple[str, ...]:
    return {
        "Swinv2ForImageClassification": ("logits",),
        "Swinv2Model": ("last_hidden_state", "pooler_output"),
        "Swinv2ForMaskedImageModeling": ("reconstruction",),
        "Swinv2Backbone": ("feature_maps",),
    }[architecture]


def _flatten(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [tensor for item in value for tensor in _flatten(item)]


@torch.no_grad()
def max_output_difference(
    model: torch.nn.Module, reference: torch.nn.Module, architecture: str, num_inputs: int, seed: int = 0
) -> float:
    """Largest |difference| between two models' outputs on `num_inputs` random images at `config.image_size`."""
    config = model.config
    size = config.image_size if isinstance(config.image_size, (list, tuple)) else (config.image_size,) * 2
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(num_inputs, config.num_channels, *size, generator=generator)  # B, C, H, W
    model.eval(), reference.eval()
    outputs, reference_outputs = model(pixel_values), reference(pixel_values)
    difference = 0.0
    for name in _outputs_to_compare(architecture):
        for ours, theirs in zip(_flatten(outputs[name]), _flatten(reference_outputs[name]), strict=True):
            difference = max(difference, (ours.float() - theirs.float()).abs().max().item())
    return difference


# ---------------------------------------------------------------------------------------------------------------------
# Writing the repository


def render_model_card(
    template_path: Path,
    report: ConversionReport,
    model_id: str,
    base_model: str | None,
    license: str,
) -> ModelCard:
    """The model card of a converted checkpoint: Hub metadata from `ModelCardData`, text from the template."""
    is_classifier = report.target_architecture == "ManoForImageClassification"
    pipeline_tag = "image-classification" if is_classifier else "image-feature-extraction"
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        base_model=base_model,
        tags=["mano", "multipole-attention", "swinv2", "vision", pipeline_tag],
    )
    if not template_path.is_file():
        raise ConversionError(f"model card template {template_path} not found; pass card_template=")
    levels = [plan.num_levels for plan in report.level_plan]
    labels = report.labels
    shown_labels = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
    if report.max_abs_diff is None:
        check_text = "The numeric check against the source was skipped at conversion time."
    else:
        check_text = (
            f"At conversion, the largest |{report.compared_output} difference| between this model and the source "
            f"SwinV2 on {report.num_check_inputs} random inputs was {report.max_abs_diff:.3e}"
            + (" (identical up to float rounding, as expected)." if report.exact_expected
               else " (the far field is active from the start, so outputs differ by design).")
        )
    source = base_model or Path(report.source).name  # never a local path in a published card
    if report.exact_expected:
        starting_point = (
            f"Freshly converted: this model computes what `{source}` computes, up to float rounding (the `up` "
            "projectors start at zero), so its coarse levels contribute nothing until the model is fine-tuned."
        )
    else:
        starting_point = (
            f"Freshly converted with projector initialisation `{report.projector_init}` (type "
            f"`{report.projector_type}`): the coarse levels contribute from the start, so outputs differ from "
            f"`{source}` and the model needs fine-tuning before use."
        )
    body = Template(template_path.read_text()).substitute(
        metadata=card_data.to_yaml(),
        model_id=model_id,
        source=source,
        starting_point=starting_point,
        task=pipeline_tag,
        auto_class=_AUTO_CLASS_NAMES[report.target_architecture],
        target_architecture=report.target_architecture,
        level_plan="\n".join(f"  - {plan.describe()}" for plan in report.level_plan),
        levels=" ".join(map(str, levels)),
        source_parameters=f"{report.source_parameters:,}",
        target_parameters=f"{report.target_parameters:,}",
        delta=f"{report.delta:+,}",
        projector_init=report.projector_init,
        projector_type=report.projector_type,
        level_weighting=report.level_weighting,
        head=report.head,
        labels=shown_labels or "none (feature extractor)",
        numeric_check=check_text,
    )
    return ModelCard(body)


def _write_preprocessor_config(
    checkpoint: SwinV2Checkpoint, config: ManoConfig, folder: Path, notes: list[str]
) -> None:
    """Carry the source's image processor over; SwinV2's usual one (with a note) where the source has none."""
    if checkpoint.preprocessor_config is not None:
        shutil.copyfile(checkpoint.preprocessor_config, folder / PREPROCESSOR_CONFIG)
        return
    # SwinV2 checkpoints ship ViT's processor with ImageNet statistics; write that, and say it was not carried over.
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    size = config.image_size if isinstance(config.image_size, (list, tuple)) else (config.image_size,) * 2
    ViTImageProcessorPil(
        size={"height": size[0], "width": size[1]},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    notes.append(
        f"the source has no {PREPROCESSOR_CONFIG}; wrote ViT's processor at {size[0]}x{size[1]} with ImageNet "
        "mean/std: check it matches how the source was trained"
    )


def _move_into_place(staging: Path, output_dir: Path, overwrite: bool) -> None:
    """Rename the finished staging folder to `output_dir`; an existing one is replaced only with `overwrite`."""
    if not output_dir.exists():
        staging.rename(output_dir)
        return
    if not overwrite:
        raise ConversionError(f"{output_dir} exists; pass overwrite=True (--overwrite) to replace it")
    retired = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".old", dir=output_dir.parent))
    output_dir.rename(retired / output_dir.name)
    staging.rename(output_dir)
    shutil.rmtree(retired)


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Add MANO checkpoint converted from SwinV2",
    api: HfApi | None = None,
) -> str:
    """Upload a converted folder, exactly as written, to the model repository `repo_id`; returns the commit URL."""
    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=os.fspath(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message
    )
    return str(getattr(commit, "commit_url", commit))


# ---------------------------------------------------------------------------------------------------------------------
# The conversion


def _load_into_mano(
    mano_class: type[ManoPreTrainedModel], config: ManoConfig, conversion: StateDictConversion, name: str
) -> ManoPreTrainedModel:
    """A MANO model with the converted SwinV2 weights; only `conversion.new_keys` keep their initialisation."""
    model = mano_class(config)  # initialises the projectors per config.projector_init, and a new classifier
    expected = model.state_dict()
    missing = sorted(set(expected) - set(conversion.state_dict))
    unexpected = sorted(set(conversion.state_dict) - set(expected))
    if missing != sorted(conversion.new_keys) or unexpected:
        not_projectors = sorted(set(missing) - set(conversion.new_keys))
        raise ConversionError(
            f"the weights of {name} do not fit {mano_class.__name__}: "
            f"missing (besides the projectors) {not_projectors[:8]}, unexpected {unexpected[:8]}"
            + (" (and more)" if len(not_projectors) > 8 or len(unexpected) > 8 else "")
        )
    mismatched = [key for key, tensor in conversion.state_dict.items() if tensor.shape != expected[key].shape]
    if mismatched:
        key = mismatched[0]
        raise ConversionError(
            f"{len(mismatched)} weight(s) of {name} do not match the shapes its config.json implies, e.g. "
            f"{key}: {tuple(conversion.state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        )
    model.load_state_dict(conversion.state_dict, strict=False)
    return model.eval()


def _swinv2_twin(model: ManoPreTrainedModel, target: str) -> torch.nn.Module:
    """The SwinV2 model holding `model`'s weights without the projectors: the source, with any new head."""
    projectors = set(projector_keys(model.config, _body_prefix(target)))
    reference = SWINV2_CLASSES[target](swinv2_twin_config(model.config))
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if k not in projectors}, strict=True)
    return reference.eval()


def _describe(
    checkpoint: SwinV2Checkpoint,
    model: ManoPreTrainedModel,
    target: str,
    conversion: StateDictConversion,
    output_dir: Path,
) -> ConversionReport:
    """The report of a conversion before its numeric check and its files."""
    config = model.config
    notes = []
    source_dtypes = {str(tensor.dtype).removeprefix("torch.") for tensor in conversion.state_dict.values()}
    if source_dtypes != {"float32"}:
        notes.append(f"source weights in {sorted(source_dtypes)}; saved in float32")
    parameters = model.state_dict()
    model_has_head = target == "Swinv2ForImageClassification"
    if any(key.startswith("classifier.") for key in conversion.new_keys):
        head = (
            f"classifier re-initialised: Linear({model.classifier.in_features} -> {config.num_labels}) "
            f"(normal std {config.initializer_range}, zero bias); every other weight comes from the source"
        )
    elif model_has_head:
        head = f"classifier kept from the source ({config.num_labels} labels)"
    else:
        head = "no classification head"
    projector_parameters = sum(parameters[key].numel() for key in projector_keys(config, _body_prefix(target)))
    # A zero `up` hides the far field; a model without learned projectors only equals SwinV2 at one level.
    far_field_hidden = config.projector_type == "conv" and config.projector_init == "avg_pool_zero_up"
    return ConversionReport(
        source=checkpoint.name,
        output_dir=output_dir,
        source_architecture=checkpoint.architecture,
        target_architecture=type(model).__name__,
        source_parameters=sum(
            tensor.numel() for key, tensor in checkpoint.state_dict.items()
            if not key.endswith(_DERIVED_BUFFER_SUFFIXES)
        ),
        source_body_parameters=sum(
            tensor.numel() for key, tensor in checkpoint.state_dict.items()
            if not key.endswith(_DERIVED_BUFFER_SUFFIXES) and not key.startswith(("classifier.", "decoder."))
        ),
        target_parameters=model.num_parameters(),
        projector_parameters=projector_parameters,
        level_plan=level_plan(config),
        projector_init=config.projector_init,
        projector_type=config.projector_type,
        level_weighting=config.level_weighting,
        compared_output=" + ".join(_outputs_to_compare(target)),
        num_check_inputs=0,
        max_abs_diff=None,
        exact_expected=far_field_hidden or max(config.resolved_num_levels()) == 1,
        head=head,
        dropped=conversion.dropped,
        files=[],
        notes=notes,
        labels=[config.id2label[i] for i in range(config.num_labels)] if model_has_head else [],
    )


def _check_reload(mano_class: type[ManoPreTrainedModel], model: ManoPreTrainedModel, folder: Path) -> None:
    """Reload the saved folder and require the very weights that were converted."""
    reloaded = mano_class.from_pretrained(folder).state_dict()
    weights = model.state_dict()
    changed = [key for key, tensor in weights.items() if key not in reloaded or not torch.equal(tensor, reloaded[key])]
    if changed or len(reloaded) != len(weights):
        raise ConversionError(f"the saved checkpoint does not reload to the converted weights: {changed[:8]}")


def convert_swinv2_checkpoint(
    swinv2_checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    num_levels: str | Sequence[int] = "auto",
    projector_init: str = "avg_pool_zero_up",
    projector_type: str = "conv",
    level_weighting: str = "vcycle",
    num_labels: int | None = None,
    label_names: Sequence[str] | None = None,
    overwrite: bool = False,
    revision: str | None = None,
    num_check_inputs: int = 2,
    tolerance: float = 1e-5,
    base_model: str | None = None,
    license: str = "apache-2.0",
    card_template: str | os.PathLike | None = None,
    push_to_hub: bool = False,
    hub_model_id: str | None = None,
    private: bool = False,
    token: str | None = None,
) -> ConversionReport:
    """Convert a SwinV2 checkpoint into a complete MANO model repository at `output_dir`.

    Args:
        swinv2_checkpoint: a local SwinV2 checkpoint folder, or a Hub id (`microsoft/swinv2-tiny-patch4-window8-256`).
        output_dir: folder to create; an existing one is replaced only with `overwrite`.
        num_levels: `"auto"` or levels per stage (see `ManoConfig.num_levels`).
        projector_init, projector_type, level_weighting: the `ManoConfig` fields of the same names.
        num_labels, label_names: a new classification head; only the classifier is re-initialised.
        num_check_inputs: random inputs of the numeric check against the source (0 skips it).
        tolerance: largest |output difference| accepted where the conversion must reproduce the source
            (default initialisation, learned projectors); a larger one fails the conversion.
        base_model: Hub id recorded as `base_model` in the model card; defaults to `swinv2_checkpoint` when that is
            a Hub id (a local folder is not a valid `base_model`).
        license: license recorded in the model card (the `microsoft/swinv2-*` checkpoints are Apache-2.0).
        card_template: model card template; defaults to `model_cards/mano_converted.md` of this repository.
        push_to_hub, hub_model_id, private, token: upload the finished folder to `hub_model_id` (opt-in).

    Returns:
        The `ConversionReport`; its `format()` is what the conversion script prints.

    Raises:
        ConversionError: the checkpoint is not SwinV2, its files are missing or unreadable, its weights do not fit,
            the numeric check failed, or `output_dir` exists without `overwrite`. Nothing is written then.
    """
    output_dir = Path(output_dir).resolve()
    if projector_init not in PROJECTOR_INITS:
        raise ConversionError(f"projector_init must be one of {PROJECTOR_INITS}, got {projector_init!r}")
    if push_to_hub and not hub_model_id:
        raise ConversionError("push_to_hub needs hub_model_id (for example 'your-org/mano-tiny')")
    if hub_model_id is not None and not _REPO_ID.match(hub_model_id):
        raise ConversionError(f"hub_model_id must look like 'owner/name', got {hub_model_id!r}")
    if output_dir.exists() and not overwrite:
        raise ConversionError(f"{output_dir} exists; pass overwrite=True (--overwrite) to replace it")
    if num_check_inputs < 0:
        raise ConversionError(f"num_check_inputs must be >= 0, got {num_check_inputs}")

    checkpoint = load_swinv2_checkpoint(swinv2_checkpoint, revision)
    if not checkpoint.is_hub and checkpoint.folder.resolve() == output_dir:
        raise ConversionError(f"output_dir {output_dir} is the source checkpoint folder; choose another folder")
    try:
        config = build_mano_config(
            checkpoint.config, num_levels, projector_init, projector_type, level_weighting, num_labels, label_names
        )
    except (ValueError, TypeError) as error:  # ManoConfig's validation (ConversionError passes through unchanged)
        if isinstance(error, ConversionError):
            raise
        raise ConversionError(f"invalid MANO configuration for {checkpoint.name}: {error}") from error
    is_classifier = checkpoint.architecture == "Swinv2ForImageClassification"
    source_labels = dict(checkpoint.config.id2label) if is_classifier else {}
    new_head = (num_labels is not None or label_names is not None) and dict(config.id2label) != source_labels
    target = target_architecture(checkpoint.architecture, new_head)
    mano_class = MANO_COUNTERPARTS[target]
    config.architectures = [mano_class.__name__]

    conversion = convert_state_dict(checkpoint.state_dict, config, checkpoint.architecture, target, new_head)
    model = _load_into_mano(mano_class, config, conversion, checkpoint.name)
    report = _describe(checkpoint, model, target, conversion, output_dir)
    if num_check_inputs:
        report.max_abs_diff = max_output_difference(model, _swinv2_twin(model, target), target, num_check_inputs)
        report.num_check_inputs = num_check_inputs
        if report.exact_expected and not report.max_abs_diff <= tolerance:
            raise ConversionError(
                f"the converted model differs from the source by {report.max_abs_diff:.3e} > tolerance {tolerance:g} "
                f"although projector_init {projector_init!r} should reproduce it; nothing was written"
            )

    if base_model is None and checkpoint.is_hub:
        base_model = checkpoint.name
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # Same file system as output_dir, so the final rename is atomic; mkdir (not mkdtemp) keeps the umask's mode.
    staging = output_dir.parent / f".{output_dir.name}.{uuid.uuid4().hex[:12]}.partial"
    staging.mkdir()
    try:
        model.save_pretrained(staging)
        _write_preprocessor_config(checkpoint, config, staging, report.notes)
        _check_reload(mano_class, model, staging)
        report.files = sorted([*(path.name for path in staging.iterdir()), "README.md"])
        template = Path(card_template) if card_template is not None else DEFAULT_CARD_TEMPLATE
        card = render_model_card(template, report, hub_model_id or output_dir.name, base_model, license)
        card.save(staging / "README.md")
        _move_into_place(staging, output_dir, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if push_to_hub:
        levels = " ".join(map(str, config.resolved_num_levels()))
        report.pushed_to = push_folder_to_hub(
            output_dir, hub_model_id, private=private, token=token,
            commit_message=f"Convert {checkpoint.name} to MANO (levels {levels})",
        )
    return report


__all__ = [
    "ConversionError",
    "ConversionReport",
    "StateDictConversion",
    "SwinV2Checkpoint",
    "build_mano_config",
    "convert_state_dict",
    "convert_swinv2_checkpoint",
    "level_plan",
    "load_swinv2_checkpoint",
    "max_output_difference",
    "projector_keys",
    "push_folder_to_hub",
    "render_model_card",
    "swinv2_architecture",
    "swinv2_twin_config",
    "target_architecture",
]
