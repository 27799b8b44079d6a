"""Convert SwinV2 checkpoints (Hub ids or local folders) into MANO checkpoints, and optionally publish them.

A MANO model of the SwinV2 family holds every SwinV2 weight under the same name and adds one `down`/`up` projector
pair per layer planned with more than one level. Reading the checkpoint is transformers' own job: the MANO class's
`from_pretrained` downloads it (Hub id and revision) or reads the folder, takes `.bin`, safetensors or sharded
weights and renames between the heads' `swinv2.` prefix and the bare model. The converter keeps its own job:

1. the MANO configuration: the SwinV2 one plus the level plan and the projector initialisation;
2. loading, and a check that the projectors (and a classifier being replaced) are all the checkpoint lacks;
3. the exactness check against the SwinV2 computation with the same weights, in float64 (with the default
   initialisation, `down` = 2x2 average and `up` = 0, the two are the same function);
4. the report and the model card;
5. an atomic write of the complete Hub repository (weights, config with `auto_map`, remote-code files, the
   source's image processor, the card), and the upload only when asked for.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoImageProcessor,
    Swinv2Backbone,
    Swinv2Config,
    Swinv2ForImageClassification,
    Swinv2ForMaskedImageModeling,
    Swinv2Model,
)
from transformers.utils import logging as transformers_logging

from ..models.mano.configuration_mano import MANO_FIELDS, ManoConfig, image_size_pair
from ..models.mano.image_processing_mano import imagenet_image_processor
from ..models.mano.modeling_mano import (
    ManoBackbone,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoModel,
    ManoPreTrainedModel,
)
from ..multipole import PROJECTOR_INITS, far_field_closed_at_start
from ..utils import OutputExistsError, atomic_directory
from .report import ConversionReport, level_plan, render_model_card


# SwinV2 class (as `config.architectures` names it) -> its MANO counterpart, and the SwinV2 class itself.
MANO_COUNTERPARTS: dict[str, type[ManoPreTrainedModel]] = {
    "Swinv2Model": ManoModel,
    "Swinv2ForImageClassification": ManoForImageClassification,
    "Swinv2ForMaskedImageModeling": ManoForMaskedImageModeling,
    "Swinv2Backbone": ManoBackbone,
}
SWINV2_CLASSES: dict[str, type[nn.Module]] = {
    "Swinv2Model": Swinv2Model,
    "Swinv2ForImageClassification": Swinv2ForImageClassification,
    "Swinv2ForMaskedImageModeling": Swinv2ForMaskedImageModeling,
    "Swinv2Backbone": Swinv2Backbone,
}
# Checkpoint entries a target may leave unread, with the reason: tables older SwinV2 checkpoints saved that models
# now recompute, and the parts of other heads.
_LEFT_UNREAD = (
    (re.compile(r"\.relative_(coords_table|position_index)$"), "derived table, recomputed by the model"),
    (re.compile(r"^classifier\."), "classifier of the source, the target has no classification head"),
    (re.compile(r"^decoder\."), "SimMIM decoder, the target has no masked-image-modeling head"),
    (re.compile(r"embeddings\.mask_token$"), "SimMIM mask token, unused by the target"),
    (re.compile(r"^hidden_states_norms\."), "backbone feature norms, the target has none"),
)
# Config entries that describe the saved file rather than the model; never carried from SwinV2 to MANO.
_FILE_CONFIG_KEYS = ("model_type", "architectures", "transformers_version", "_name_or_path", "auto_map")
# A Hub repository id: "name" or "owner/name".
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ConversionError(ValueError):
    """A SwinV2 checkpoint that cannot be converted, or a conversion that failed its checks."""


# ---------------------------------------------------------------------------------------------------------------------
# Configuration


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
    try:
        return ManoConfig(**values)
    except (ValueError, TypeError, StrictDataclassError) as error:  # ManoConfig's validation names the field
        raise ConversionError(f"invalid MANO configuration: {' '.join(str(error).split())}") from error


def swinv2_twin_config(config: ManoConfig) -> Swinv2Config:
    """The SwinV2 configuration of a MANO one: the model a MANO model computes when its far field is zero."""
    values = config.to_dict()
    for key in (*_FILE_CONFIG_KEYS, *MANO_FIELDS):
        values.pop(key, None)
    return Swinv2Config(**values)


class ConversionPlan(NamedTuple):
    """What a conversion reads and builds: the source's config and class (as `config.architectures` names SwinV2
    classes), the SwinV2 class whose MANO counterpart is built, the MANO config, and whether the classifier is new."""

    source_config: Swinv2Config
    source: str
    target: str
    config: ManoConfig
    new_head: bool


# ---------------------------------------------------------------------------------------------------------------------
# Reading the source through transformers


def _is_local(checkpoint: str) -> bool:
    """Whether `checkpoint` names a local path: it exists, or it cannot be a Hub id ("name" or "owner/name")."""
    return Path(checkpoint).exists() or not _REPO_ID.match(checkpoint)


@contextmanager
def _quiet_transformers():
    """transformers' loading report and warnings off while the converter reports for itself."""
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def read_source_config(checkpoint: str, **hub_kwargs) -> Swinv2Config:
    """The SwinV2 configuration of `checkpoint` (folder or Hub id); anything else is refused with its reason."""
    if _is_local(checkpoint) and not Path(checkpoint).is_dir():
        raise ConversionError(f"{checkpoint} is neither a local checkpoint folder nor a Hugging Face Hub id")
    if Path(checkpoint).is_dir() and not (Path(checkpoint) / "config.json").is_file():
        raise ConversionError(f"{checkpoint} has no config.json: it is not a transformers checkpoint")
    try:
        with _quiet_transformers():
            config_dict, _ = Swinv2Config.get_config_dict(checkpoint, **hub_kwargs)
    except (OSError, ValueError) as error:  # not found, offline, bad JSON: transformers says which
        where = "the local folder" if Path(checkpoint).is_dir() else "the Hugging Face Hub"
        raise ConversionError(f"reading the configuration of {checkpoint} from {where} failed: {error}") from error
    model_type = config_dict.get("model_type")
    if model_type == ManoConfig.model_type:
        raise ConversionError(f"{checkpoint} is already a MANO checkpoint (model_type 'mano'); load it directly")
    if model_type != "swinv2":
        raise ConversionError(
            f"{checkpoint} has model_type {model_type!r}; only SwinV2 checkpoints (model_type 'swinv2') can be "
            "converted" + (" (Swin v1 has no continuous position bias to reuse)" if model_type == "swin" else "")
        )
    return Swinv2Config.from_dict(config_dict)


def source_architecture(config: Swinv2Config, override: str | None = None) -> str:
    """The SwinV2 class of the checkpoint: `override`, else the one its config records."""
    architecture = override or next((a for a in config.architectures or [] if a in MANO_COUNTERPARTS), None)
    if architecture not in MANO_COUNTERPARTS:
        raise ConversionError(
            f"the checkpoint's config.json names no SwinV2 architecture ({config.architectures}); pass "
            f"source_architecture (--source_architecture), one of {sorted(MANO_COUNTERPARTS)}"
        )
    return architecture


def target_architecture(source: str, new_head: bool) -> str:
    """The SwinV2 class whose MANO counterpart a conversion builds: the source's, or a classifier for a new head."""
    if not new_head or source == "Swinv2ForImageClassification":
        return source
    if source == "Swinv2Backbone":
        raise ConversionError(
            "a Swinv2Backbone checkpoint has no final layernorm, so no classification head can be put on it; "
            "convert it without num_labels / label_names"
        )
    return "Swinv2ForImageClassification"


def load_into_mano(
    checkpoint: str, mano_class: type[ManoPreTrainedModel], config: ManoConfig, new_head: bool, **hub_kwargs
) -> tuple[ManoPreTrainedModel, dict[str, str]]:
    """The MANO model holding the checkpoint's weights, and the checkpoint entries left unread with the reason.

    Refuses a checkpoint that lacks anything besides the projectors (and a classifier being replaced), holds
    entries no target part explains, or holds tensors whose shapes its own config.json does not give.
    """
    model, info = _read_checkpoint(checkpoint, mano_class, config, hub_kwargs)
    head = {"classifier.weight", "classifier.bias"} if isinstance(model, ManoForImageClassification) else set()
    mismatched = {key for key, *_ in info["mismatched_keys"]}
    if new_head and head and not head & (mismatched | set(info["missing_keys"])):
        # new labels, as many as the source's: transformers loaded the old head, which must not stay
        model.classifier = nn.Linear(model.classifier.in_features, config.num_labels)
        model._init_weights(model.classifier)
    replaced = head & mismatched if new_head else set()
    _check_shapes(checkpoint, info["mismatched_keys"], replaced)
    allowed_missing = set(model.projector_parameter_names()) | (head if new_head else set())
    unread = _unread_entries(checkpoint, mano_class, info, allowed_missing)
    for key in replaced:
        unread[key] = "classifier of the source, replaced by a new head"
    return model.eval(), unread


def _read_checkpoint(
    checkpoint: str, mano_class: type[ManoPreTrainedModel], config: ManoConfig, hub_kwargs: dict
) -> tuple[ManoPreTrainedModel, dict[str, list]]:
    """`mano_class.from_pretrained` of the checkpoint in float32 with its loading info (missing, unexpected and
    mismatched keys; tensors of another shape are left at their initial values); unreadable files are refused."""
    try:
        with _quiet_transformers():
            return mano_class.from_pretrained(
                checkpoint,
                config=config,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
                dtype=torch.float32,
                **hub_kwargs,
            )
    except SafetensorError as error:
        raise ConversionError(f"the safetensors weights of {checkpoint} are not readable: {error}") from error
    except pickle.UnpicklingError as error:
        raise ConversionError(
            f"the pytorch_model.bin of {checkpoint} is not a readable PyTorch (weights only) file: "
            f"{str(error).splitlines()[0]}"
        ) from error
    except OSError as error:  # no weights, offline, missing shard
        raise ConversionError(f"{checkpoint} has no readable weights: {error}") from error


def _check_shapes(checkpoint: str, mismatched: list[tuple[str, tuple, tuple]], replaced: set[str]) -> None:
    """Refuse tensors whose shape differs from the model's (`(key, checkpoint shape, model shape)` entries), except
    those of a classifier being `replaced`."""
    wrong_shapes = sorted({key for key, *_ in mismatched} - replaced)
    if wrong_shapes:
        key, shape_checkpoint, shape_model = next(entry for entry in mismatched if entry[0] == wrong_shapes[0])
        raise ConversionError(
            f"{len(wrong_shapes)} weight(s) of {checkpoint} do not match the shapes its config.json implies, e.g. "
            f"{key}: {tuple(shape_checkpoint)} in the checkpoint vs {tuple(shape_model)}"
        )


def _unread_entries(
    checkpoint: str, mano_class: type[ManoPreTrainedModel], info: dict[str, list], allowed_missing: set[str]
) -> dict[str, str]:
    """The checkpoint entries the model did not read, with the reason (`_LEFT_UNREAD`); refuses a model missing
    weights besides `allowed_missing`, or a checkpoint entry no reason explains."""
    missing = sorted(set(info["missing_keys"]) - allowed_missing)
    unread = {}
    unexplained = []
    for key in sorted(info["unexpected_keys"]):
        reason = next((why for pattern, why in _LEFT_UNREAD if pattern.search(key)), None)
        if reason is None:
            unexplained.append(key)
        else:
            unread[key] = reason
    if missing or unexplained:
        raise ConversionError(
            f"the weights of {checkpoint} do not fit {mano_class.__name__}: missing (besides the projectors) "
            f"{missing[:6]}, unexpected {unexplained[:6]}"
            + (" (and more)" if len(missing) > 6 or len(unexplained) > 6 else "")
        )
    return unread


# ---------------------------------------------------------------------------------------------------------------------
# Exactness check


def swinv2_twin(model: ManoPreTrainedModel, architecture: str) -> nn.Module:
    """The SwinV2 model holding `model`'s weights without the projectors: the source, with any new head."""
    projectors = set(model.projector_parameter_names())
    reference = SWINV2_CLASSES[architecture](swinv2_twin_config(model.config))
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if k not in projectors}, strict=True)
    return reference.eval()


def _outputs_to_compare(architecture: str) -> tuple[str, ...]:
    return {
        "Swinv2ForImageClassification": ("logits",),
        "Swinv2Model": ("last_hidden_state", "pooler_output"),
        "Swinv2ForMaskedImageModeling": ("reconstruction",),
        "Swinv2Backbone": ("feature_maps",),
    }[architecture]


@torch.no_grad()
def max_output_difference(
    model: nn.Module, reference: nn.Module, architecture: str, num_inputs: int, dtype: torch.dtype, seed: int = 0
) -> float:
    """Largest |difference| between two models' outputs on `num_inputs` random images, both run in `dtype`."""
    config = model.config
    size = image_size_pair(config.image_size)
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(num_inputs, config.num_channels, *size, generator=generator, dtype=torch.float64)
    model, reference = copy.deepcopy(model).to(dtype).eval(), copy.deepcopy(reference).to(dtype).eval()
    ours, theirs = model(pixel_values.to(dtype)), reference(pixel_values.to(dtype))
    difference = 0.0
    for name in _outputs_to_compare(architecture):
        for a, b in zip(_tensors(ours[name]), _tensors(theirs[name]), strict=True):
            difference = max(difference, (a.double() - b.double()).abs().max().item())
    return difference


def _tensors(value: torch.Tensor | tuple) -> list[torch.Tensor]:
    """The tensors of an output: one, or the feature maps of a backbone."""
    return [value] if isinstance(value, torch.Tensor) else [tensor for item in value for tensor in _tensors(item)]


def _describe(
    checkpoint: str, plan: ConversionPlan, model: ManoPreTrainedModel, dropped: dict[str, str], output_dir: Path
) -> ConversionReport:
    """The report of a conversion before its numeric check and its files."""
    config, target = model.config, plan.target
    with torch.device("meta"):
        source_model = SWINV2_CLASSES[plan.source](plan.source_config)
    body = [p for name, p in source_model.named_parameters() if not name.startswith(("classifier.", "decoder."))]
    parameters = model.state_dict()
    model_has_head = target == "Swinv2ForImageClassification"
    if model_has_head and plan.new_head:
        head = (
            f"classifier re-initialised: Linear({model.classifier.in_features} -> {config.num_labels}) "
            f"(normal std {config.initializer_range}, zero bias); every other weight comes from the source"
        )
    elif model_has_head:
        head = f"classifier kept from the source ({config.num_labels} labels)"
    else:
        head = "no classification head"
    notes = []
    source_dtype = getattr(plan.source_config, "dtype", None)
    if source_dtype not in (None, torch.float32, "float32"):
        notes.append(f"source weights in {source_dtype}; saved in float32")
    # A zero `up` (or far-field gate) hides the far field; without learned projectors MANO equals SwinV2 at one level.
    far_field_hidden = far_field_closed_at_start(config.projector_type, config.projector_init)
    return ConversionReport(
        source=checkpoint,
        output_dir=output_dir,
        source_architecture=plan.source,
        target_architecture=type(model).__name__,
        source_parameters=source_model.num_parameters(),
        source_body_parameters=sum(p.numel() for p in body),
        target_parameters=model.num_parameters(),
        projector_parameters=sum(parameters[key].numel() for key in model.projector_parameter_names()),
        level_plan=level_plan(config),
        projector_init=config.projector_init,
        projector_type=config.projector_type,
        level_weighting=config.level_weighting,
        compared_output=" + ".join(_outputs_to_compare(target)),
        num_check_inputs=0,
        max_abs_diff=None,
        max_abs_diff_float32=None,
        exact_expected=far_field_hidden or max(config.resolved_num_levels()) == 1,
        head=head,
        dropped=dropped,
        files=[],
        notes=notes,
        labels=[config.id2label[i] for i in range(config.num_labels)] if model_has_head else [],
    )


# ---------------------------------------------------------------------------------------------------------------------
# Writing the repository


def save_image_processor(checkpoint: str, config: ManoConfig, folder: Path, notes: list[str], **hub_kwargs) -> None:
    """The source's image processor (also a legacy `ViTFeatureExtractor` file), saved in today's format; ImageNet
    statistics at the model's size (with a note) where the source has none."""
    try:
        with _quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(
                checkpoint, backend="pil", **hub_kwargs
            )  # no torchvision needed
    except (OSError, ValueError):
        processor = imagenet_image_processor(config.image_size)
        height, width = processor.size["height"], processor.size["width"]
        notes.append(
            f"the source has no image processor; wrote ViT's at {height}x{width} with ImageNet mean/std: check it "
            "matches how the source was trained"
        )
    processor.save_pretrained(folder)


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


def _check_reload(mano_class: type[ManoPreTrainedModel], model: ManoPreTrainedModel, folder: Path) -> None:
    """Reload the saved folder and require the very weights that were converted."""
    with _quiet_transformers():
        reloaded = mano_class.from_pretrained(folder).state_dict()
    weights = model.state_dict()
    changed = [key for key, tensor in weights.items() if key not in reloaded or not torch.equal(tensor, reloaded[key])]
    if changed or len(reloaded) != len(weights):
        raise ConversionError(f"the saved checkpoint does not reload to the converted weights: {changed[:8]}")


# ---------------------------------------------------------------------------------------------------------------------
# The conversion


def _check_arguments(
    checkpoint: str,
    output_dir: Path,
    overwrite: bool,
    projector_init: str,
    num_check_inputs: int,
    card_template: str | os.PathLike | None,
    push_to_hub: bool,
    hub_model_id: str | None,
) -> None:
    """Refuse bad arguments before anything is loaded or written."""
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
    if card_template is not None and not Path(card_template).is_file():
        raise ConversionError(f"model card template {card_template} not found")
    if Path(checkpoint).is_dir() and Path(checkpoint).resolve() == output_dir:
        raise ConversionError(f"output_dir {output_dir} is the source checkpoint folder; choose another folder")


def _check_against_source(
    model: ManoPreTrainedModel, target: str, report: ConversionReport, num_check_inputs: int, tolerance: float
) -> None:
    """Record the largest output difference from the source (float64 and float32) in `report`; refuse a
    conversion that should reproduce the source and does not."""
    twin = swinv2_twin(model, target)
    report.max_abs_diff = max_output_difference(model, twin, target, num_check_inputs, torch.float64)
    report.max_abs_diff_float32 = max_output_difference(model, twin, target, num_check_inputs, torch.float32)
    report.num_check_inputs = num_check_inputs
    if report.exact_expected and not report.max_abs_diff <= tolerance:
        raise ConversionError(
            f"the converted model differs from the source by {report.max_abs_diff:.3e} (float64) > tolerance "
            f"{tolerance:g} although projector_init {model.config.projector_init!r} should reproduce it; nothing "
            "was written"
        )


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
    cache_dir: str | os.PathLike | None = None,
    source_architecture_name: str | None = None,
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
    """Convert a SwinV2 checkpoint into a complete MANO model repository at `output_dir`: plan, load, check against
    the source, write, and upload when asked. Returns the `ConversionReport` (its `format()` is what the conversion
    script prints). Raises `ConversionError`, and writes nothing, where the checkpoint is not SwinV2, its files are
    missing or unreadable, its weights do not fit, the numeric check fails, or `output_dir` exists without `overwrite`.

    Args:
        swinv2_checkpoint: a local SwinV2 checkpoint folder, or a Hub id (`microsoft/swinv2-tiny-patch4-window8-256`).
        output_dir: folder to create; an existing one is replaced only with `overwrite`.
        num_levels, projector_init, projector_type, level_weighting: the `ManoConfig` fields of the same names.
        num_labels, label_names: a new classification head; only the classifier is re-initialised.
        revision, cache_dir, token: passed to transformers' loading (Hub revision, download cache, Hub token).
        source_architecture_name: the SwinV2 class of the checkpoint where its config.json names none.
        num_check_inputs, tolerance: random inputs of the numeric check against the source (0 skips it), and the
            largest |output difference| accepted in float64 where the conversion must reproduce the source.
        base_model, license, card_template: the model card's `base_model` (default: `swinv2_checkpoint` when a Hub
            id), license (`microsoft/swinv2-*` are Apache-2.0) and template (default: the one shipped here).
        push_to_hub, hub_model_id, private: upload the finished folder to `hub_model_id` (opt-in).
    """
    checkpoint, output_dir = os.fspath(swinv2_checkpoint), Path(output_dir).resolve()
    _check_arguments(
        checkpoint, output_dir, overwrite, projector_init, num_check_inputs, card_template, push_to_hub, hub_model_id
    )
    hub_kwargs = {"revision": revision, "cache_dir": cache_dir, "token": token}
    source_config = read_source_config(checkpoint, **hub_kwargs)
    source = source_architecture(source_config, source_architecture_name)
    config = build_mano_config(
        source_config, num_levels, projector_init, projector_type, level_weighting, num_labels, label_names
    )
    plan = _plan_conversion(source_config, source, config, num_labels is not None or label_names is not None)
    model, report = _load_and_check(checkpoint, plan, output_dir, num_check_inputs, tolerance, hub_kwargs)
    card_arguments = _card_arguments(checkpoint, output_dir, hub_model_id, base_model, license, card_template)
    _write_repository(model, checkpoint, output_dir, overwrite, report, card_arguments, hub_kwargs)
    if push_to_hub:
        report.pushed_to = _publish(checkpoint, model.config, output_dir, hub_model_id, private, token)
    return report


def _plan_conversion(
    source_config: Swinv2Config, source: str, config: ManoConfig, labels_given: bool
) -> ConversionPlan:
    """Whether the classifier is new (labels given that differ from the source's), hence the class to build, which
    `config.architectures` then names."""
    source_labels = dict(source_config.id2label) if source == "Swinv2ForImageClassification" else {}
    new_head = labels_given and dict(config.id2label) != source_labels
    target = target_architecture(source, new_head)
    config.architectures = [MANO_COUNTERPARTS[target].__name__]
    return ConversionPlan(source_config, source, target, config, new_head)


def _load_and_check(
    checkpoint: str, plan: ConversionPlan, output_dir: Path, num_check_inputs: int, tolerance: float, hub_kwargs: dict
) -> tuple[ManoPreTrainedModel, ConversionReport]:
    """The planned MANO model holding the checkpoint's weights, and the conversion's report, with the numeric check
    against the source on `num_check_inputs` random inputs (none with 0)."""
    mano_class = MANO_COUNTERPARTS[plan.target]
    model, dropped = load_into_mano(checkpoint, mano_class, plan.config, plan.new_head, **hub_kwargs)
    report = _describe(checkpoint, plan, model, dropped, output_dir)
    if num_check_inputs:
        _check_against_source(model, plan.target, report, num_check_inputs, tolerance)
    return model, report


def _card_arguments(
    checkpoint: str,
    output_dir: Path,
    hub_model_id: str | None,
    base_model: str | None,
    license: str,
    card_template: str | os.PathLike | None,
) -> tuple[str, str | None, str, str | os.PathLike | None]:
    """`render_model_card`'s arguments after the report: the model's id (`hub_model_id`, else the folder's name),
    `base_model` (the one given, else the checkpoint where it is a Hub id: a local folder is no valid `base_model`),
    the license and the template."""
    if base_model is None and not Path(checkpoint).is_dir():
        base_model = checkpoint
    return hub_model_id or output_dir.name, base_model, license, card_template


def _write_repository(
    model: ManoPreTrainedModel,
    checkpoint: str,
    output_dir: Path,
    overwrite: bool,
    report: ConversionReport,
    card_arguments: tuple[str, str | None, str, str | os.PathLike | None],
    hub_kwargs: dict,
) -> None:
    """Write the complete repository atomically: weights and config, the image processor, a reload check, the
    card. `card_arguments` are `render_model_card`'s after the report; nothing is left behind on failure."""
    try:
        with atomic_directory(output_dir, overwrite=overwrite) as staging:
            model.save_pretrained(staging)
            save_image_processor(checkpoint, model.config, staging, report.notes, **hub_kwargs)
            _check_reload(type(model), model, staging)
            report.files = sorted([*(path.name for path in staging.iterdir()), "README.md"])
            try:
                card = render_model_card(report, *card_arguments)
            except FileNotFoundError as error:
                raise ConversionError(str(error)) from error
            card.save(staging / "README.md")
    except OutputExistsError as error:
        raise ConversionError(f"{output_dir} exists; pass overwrite=True (--overwrite) to replace it") from error


def _publish(
    checkpoint: str, config: ManoConfig, folder: Path, hub_model_id: str, private: bool, token: str | None
) -> str:
    """Upload the written folder to `hub_model_id` (`push_folder_to_hub`) with a message naming the source and the
    level plan; the commit URL."""
    levels = " ".join(map(str, config.resolved_num_levels()))
    message = f"Convert {checkpoint} to MANO (levels {levels})"
    return push_folder_to_hub(folder, hub_model_id, private=private, token=token, commit_message=message)


__all__ = [
    "MANO_COUNTERPARTS",
    "ConversionError",
    "ConversionReport",
    "build_mano_config",
    "convert_swinv2_checkpoint",
    "load_into_mano",
    "max_output_difference",
    "push_folder_to_hub",
    "read_source_config",
    "source_architecture",
    "swinv2_twin",
    "swinv2_twin_config",
    "target_architecture",
]
