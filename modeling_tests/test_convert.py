"""SwinV2 -> MANO conversion on trained-like SwinV2 checkpoints saved to tmp_path, and on a local Hub cache (no
network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REFUSE_PACKAGE_IMPORT, make_trained_like
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    Swinv2Backbone,
    Swinv2Config,
    Swinv2ForImageClassification,
    Swinv2ForMaskedImageModeling,
    Swinv2Model,
    ViTConfig,
    ViTForImageClassification,
    pipeline,
)
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

import transformers_mano  # noqa: F401  (registers the Auto classes)
from transformers_mano import ManoConfig, ManoForImageClassification
from transformers_mano.conversion import swinv2_to_mano as convert_module
from transformers_mano.conversion.swinv2_to_mano import (
    ConversionError,
    build_mano_config,
    convert_swinv2_checkpoint,
    push_folder_to_hub,
    swinv2_twin_config,
)
from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import convert_swinv2_to_mano  # noqa: E402


# Token grids 16, 8, 4 with window 2: the automatic plan is [3, 2, 1] (coarsest grid >= two windows per side).
TINY = {
    "image_size": 64,
    "patch_size": 4,
    "embed_dim": 8,
    "depths": [2, 1, 1],
    "num_heads": [1, 2, 2],
    "window_size": 2,
}
BASE_MODEL = "microsoft/swinv2-tiny-patch4-window8-256"
REPOSITORY_FILES = [
    "README.md",
    "compat.py",
    "config.json",
    "config_validators.py",
    "configuration_mano.py",
    "configuration_swinv2.py",
    "model.safetensors",
    "modeling_mano.py",
    "modeling_swinv2.py",
    "multipole.py",
    "preprocessor_config.json",
    "remote_code.py",
    "sdpa_attention_mano.py",
]
AUTO_MAP_KEYS = {
    "AutoConfig",
    "AutoModel",
    "AutoModelForImageClassification",
    "AutoModelForMaskedImageModeling",
    "AutoBackbone",
}
SWINV2_CLASSES = {
    "Swinv2Model": Swinv2Model,
    "Swinv2ForImageClassification": Swinv2ForImageClassification,
    "Swinv2ForMaskedImageModeling": Swinv2ForMaskedImageModeling,
    "Swinv2Backbone": Swinv2Backbone,
}


def make_swinv2_checkpoint(
    folder: Path, architecture: str = "Swinv2ForImageClassification", seed: int = 0, **config_kwargs
) -> torch.nn.Module:
    """Save a SwinV2 checkpoint with trained-like weights (weights, config, ViT processor) as the Hub lays them out."""
    torch.manual_seed(seed)
    config = Swinv2Config(**(TINY | config_kwargs))
    model = SWINV2_CLASSES[architecture](config).eval()
    # SwinV2 starts its res-post-norms and logit scales at values that hide mistakes: perturb every weight, then
    # put logit scales and position biases where trained checkpoints have them.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    make_trained_like(model, seed)
    model.save_pretrained(folder)
    size = config.image_size
    ViTImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(folder)
    return model


class PicklePayload:
    """An arbitrary pickled object: loading through `weights_only` must refuse it."""


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, convert_module.ConversionReport]:
    """A tiny SwinV2 classifier and its conversion with a named head: (source, output, report)."""
    root = tmp_path_factory.mktemp("converted")
    make_swinv2_checkpoint(root / "swinv2", num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"})
    report = convert_swinv2_checkpoint(
        root / "swinv2", root / "mano", base_model=BASE_MODEL, hub_model_id="org/mano-x"
    )
    return root / "swinv2", root / "mano", report


# ---------------------------------------------------------------------------------------------------------------------
# The pure part: configuration and state-dict renaming


def test_build_mano_config_keeps_every_swinv2_field() -> None:
    swinv2 = Swinv2Config(**TINY, pretrained_window_sizes=[2, 2, 1], num_labels=5)
    config = build_mano_config(swinv2, num_levels=[2, 2, 1], projector_init="random")
    assert config.model_type == "mano" and config.to_dict()["model_type"] == "mano"
    assert config.resolved_num_levels() == [2, 2, 1] and config.projector_init == "random"
    for key, value in swinv2.to_dict().items():
        if key not in ("model_type", "transformers_version", "architectures", "_name_or_path"):
            assert config.to_dict()[key] == value, key
    assert swinv2_twin_config(config).to_dict() == swinv2.to_dict()


def test_build_mano_config_label_names_define_the_head() -> None:
    config = build_mano_config(Swinv2Config(**TINY), label_names=["a", "b", "c", "d"])
    assert config.num_labels == 4 and config.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    with pytest.raises(ConversionError, match="num_labels = 3 but 4 label names"):
        build_mano_config(Swinv2Config(**TINY), num_labels=3, label_names=["a", "b", "c", "d"])
    with pytest.raises(ConversionError, match="distinct"):
        build_mano_config(Swinv2Config(**TINY), label_names=["a", "a"])


def test_projectors_are_exactly_the_parameters_swinv2_lacks() -> None:
    config = ManoConfig(**TINY, num_labels=4)
    mano = ManoForImageClassification(config)
    mano_keys = set(mano.state_dict())
    swinv2_keys = set(Swinv2ForImageClassification(swinv2_twin_config(config)).state_dict())
    assert mano_keys - swinv2_keys == set(mano.projector_parameter_names()) and swinv2_keys <= mano_keys
    assert len(mano.projector_parameter_names()) == 2 * (2 + 1)  # stages 1 and 2 have more than one level
    assert ManoForImageClassification(ManoConfig(**TINY, projector_type="pool")).projector_parameter_names() == []


# ---------------------------------------------------------------------------------------------------------------------
# Whole conversions


@pytest.mark.parametrize(
    "architecture",
    ["Swinv2Model", "Swinv2ForImageClassification", "Swinv2ForMaskedImageModeling", "Swinv2Backbone"],
    ids=["base", "classifier", "simmim", "backbone"],
)
def test_conversion_reproduces_swinv2_and_reloads(tmp_path: Path, architecture: str) -> None:
    source = make_swinv2_checkpoint(tmp_path / "swinv2", architecture, out_features=["stage1", "stage3"])

    report = convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano")

    mano_name = architecture.replace("Swinv2", "Mano")
    assert report.target_architecture == mano_name and report.source_architecture == architecture
    # the same function, checked in float64 (see ConversionReport): far below the 1e-5 the conversion requires
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-9 and report.exact_expected
    assert [plan.num_levels for plan in report.level_plan] == [3, 2, 1]
    assert report.delta == report.projector_parameters == 2 * (2 * 8 * 8 * 4) + 2 * (1 * 16 * 16 * 4)
    assert report.source_parameters == source.num_parameters()
    assert listing(tmp_path / "mano") == REPOSITORY_FILES
    config = json.loads((tmp_path / "mano" / "config.json").read_text())
    assert config["model_type"] == "mano" and config["architectures"] == [mano_name]
    reloaded = getattr(transformers_mano, mano_name).from_pretrained(tmp_path / "mano")
    saved = load_file(tmp_path / "mano" / "model.safetensors")
    for key, tensor in source.state_dict().items():
        assert torch.equal(saved[key], tensor), key
    assert set(saved) - set(source.state_dict()) == set(reloaded.projector_parameter_names())


def test_gated_projectors_convert_exactly_and_open_under_the_nearest_start(tmp_path: Path) -> None:
    """The gated far field closed at the start (gate zero, `up` copying) is SwinV2 exactly; opened, it is not."""
    make_swinv2_checkpoint(tmp_path / "swinv2")
    report = convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "closed", projector_type="gated")
    assert report.exact_expected and report.max_abs_diff <= 1e-9
    # one gate of C values per layer beside its two r x r convolutions (stage 1: 2 layers of C = 8; stage 2: 1 of 16)
    assert report.delta == 2 * (2 * 8 * 8 * 4 + 8) + (2 * 16 * 16 * 4 + 16)
    assert "a gate at zero" in (tmp_path / "closed" / "README.md").read_text()
    model = ManoForImageClassification.from_pretrained(tmp_path / "closed")
    gates = [name for name in model.projector_parameter_names() if name.endswith("up.gate")]
    assert len(gates) == 3 and all(
        torch.equal(model.get_parameter(name), torch.zeros_like(model.get_parameter(name))) for name in gates
    )
    report = convert_swinv2_checkpoint(
        tmp_path / "swinv2", tmp_path / "open", projector_type="gated", projector_init="avg_pool_nearest_up"
    )
    assert not report.exact_expected and report.max_abs_diff > 1e-5


def test_swinv2_tiny_shape_through_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SwinV2-T at 256 px, window 8, 1000 classes: levels [3, 2, 1, 1], +737,280 parameters, exact logits."""
    make_swinv2_checkpoint(
        tmp_path / "swinv2-t",
        num_labels=1000,
        image_size=256,
        patch_size=4,
        window_size=8,
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
    )

    exit_code = run_main(
        convert_swinv2_to_mano.main,
        [
            "--swinv2_checkpoint",
            str(tmp_path / "swinv2-t"),
            "--output_dir",
            str(tmp_path / "mano-tiny"),
            "--levels",
            "3",
            "2",
            "1",
            "1",
            "--base_model",
            BASE_MODEL,
            "--num_check_inputs",
            "1",
        ],
    )

    printed = capsys.readouterr().out
    assert exit_code == 0, printed
    print(printed)
    assert "28,347,154 -> 29,084,434 (delta +737,280, +2.60 %)" in printed
    assert "+737,280 (+2.67 % of the 27,578,154 parameters of the source without its head)" in printed
    assert "stage 1: 3 level(s) (64x64 -> 32x32 -> 16x16) in 2 layer(s), +147,456 projector parameters" in printed
    assert "stage 2: 2 level(s) (32x32 -> 16x16) in 2 layer(s), +589,824 projector parameters" in printed
    assert "stage 4: 1 level(s) (8x8) in 2 layer(s)\n" in printed
    difference = float(printed.split("max |logits diff|: ")[1].split(" ")[0])
    assert difference <= 1e-9 and "in float64" in printed  # trained-like scales: the same function
    assert listing(tmp_path / "mano-tiny") == REPOSITORY_FILES
    assert ManoConfig.from_pretrained(tmp_path / "mano-tiny").resolved_num_levels() == [3, 2, 1, 1]


def test_22k_style_checkpoint_with_new_head(tmp_path: Path) -> None:
    """A window-12-to-16 style checkpoint (pretrained_window_sizes) with a 22k-style head replaced by a 5-way one."""
    source = make_swinv2_checkpoint(
        tmp_path / "swinv2-22k", window_size=4, pretrained_window_sizes=[2, 2, 1], num_labels=40
    )
    names = ["daisy", "rose", "tulip", "iris", "lily"]

    report = convert_swinv2_checkpoint(tmp_path / "swinv2-22k", tmp_path / "mano", label_names=names)

    assert report.max_abs_diff <= 1e-9 and [plan.num_levels for plan in report.level_plan] == [2, 1, 1]
    assert report.head.startswith("classifier re-initialised: Linear(32 -> 5)")
    assert set(report.dropped) == {"classifier.weight", "classifier.bias"}
    assert report.delta == report.projector_parameters + (32 * 5 + 5) - (32 * 40 + 40)
    model = ManoForImageClassification.from_pretrained(tmp_path / "mano")
    assert model.config.pretrained_window_sizes == [2, 2, 1] and model.config.id2label == dict(enumerate(names))
    for key, tensor in source.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(model.state_dict()[key], tensor), key
    assert model.classifier.weight.shape == (5, 32) and torch.all(model.classifier.bias == 0)


def test_new_names_for_as_many_labels_get_a_new_head(tmp_path: Path) -> None:
    source = make_swinv2_checkpoint(tmp_path / "swinv2", num_labels=2, id2label={0: "no", 1: "yes"})
    report = convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", label_names=["cold", "warm"])
    assert report.head.startswith("classifier re-initialised: Linear(32 -> 2)")
    model = ManoForImageClassification.from_pretrained(tmp_path / "mano")
    assert not torch.equal(model.classifier.weight, source.classifier.weight) and torch.all(model.classifier.bias == 0)
    assert model.config.id2label == {0: "cold", 1: "warm"}


def test_same_labels_keep_the_head_and_other_inits_are_reported(tmp_path: Path) -> None:
    make_swinv2_checkpoint(tmp_path / "swinv2", num_labels=2, id2label={0: "no", 1: "yes"})
    report = convert_swinv2_checkpoint(
        tmp_path / "swinv2", tmp_path / "mano", label_names=["no", "yes"], projector_init="avg_pool_nearest_up"
    )
    assert report.head == "classifier kept from the source (2 labels)"
    assert not report.exact_expected and report.max_abs_diff > 1e-5  # the far field is active from the start
    assert "differs by design" in report.format()


def test_bin_weights_load_through_weights_only(tmp_path: Path) -> None:
    source = make_swinv2_checkpoint(tmp_path / "swinv2")
    (tmp_path / "swinv2" / "model.safetensors").unlink()
    torch.save(source.state_dict(), tmp_path / "swinv2" / "pytorch_model.bin")
    report = convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", num_check_inputs=1)
    assert report.max_abs_diff <= 1e-9

    torch.save({"weight": PicklePayload()}, tmp_path / "swinv2" / "pytorch_model.bin")
    with pytest.raises(ConversionError, match=r"pytorch_model.bin of .* is not a readable PyTorch \(weights only\)"):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "other")


def test_sharded_safetensors_are_read_through_their_index(tmp_path: Path) -> None:
    source = make_swinv2_checkpoint(tmp_path / "swinv2")
    (tmp_path / "swinv2" / "model.safetensors").unlink()
    source.save_pretrained(tmp_path / "swinv2", max_shard_size="20KB")
    assert len(list((tmp_path / "swinv2").glob("model-*.safetensors"))) > 1
    report = convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", num_check_inputs=1)
    assert report.max_abs_diff <= 1e-9 and report.source_parameters == source.num_parameters()


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> None:
    """Lay `folder` out as the Hub cache holds a downloaded repository at `main`, so that loading `repo_id` with
    `cache_dir=cache` and HF_HUB_OFFLINE=1 runs transformers' Hub code path on it."""
    repository = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repository / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)


def test_the_suite_runs_offline() -> None:
    """conftest.py turns offline mode on before huggingface_hub is imported (it reads the variable once, at import):
    otherwise the Hub-id tests below wait out HTTP retries on a machine without network."""
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE


def test_hub_ids_load_through_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub id as the microsoft checkpoints are laid out: pytorch_model.bin only and the legacy 240-byte
    ViTFeatureExtractor file, read from the Hub cache by transformers' own loading (offline here)."""
    source = make_swinv2_checkpoint(tmp_path / "hub")
    (tmp_path / "hub" / "model.safetensors").unlink()
    torch.save(source.state_dict(), tmp_path / "hub" / "pytorch_model.bin")
    legacy = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "resample": 3,
        "size": 64,
    }
    (tmp_path / "hub" / "preprocessor_config.json").write_text(json.dumps(legacy))
    put_in_hub_cache(tmp_path / "cache", "someone/swinv2-tiny", tmp_path / "hub")
    monkeypatch.chdir(tmp_path)

    report = convert_swinv2_checkpoint(
        "someone/swinv2-tiny", tmp_path / "mano", revision="main", cache_dir=tmp_path / "cache", num_check_inputs=1
    )

    assert report.source == "someone/swinv2-tiny" and report.max_abs_diff <= 1e-9
    assert ModelCard.load(tmp_path / "mano" / "README.md").data.base_model == "someone/swinv2-tiny"
    processor = json.loads((tmp_path / "mano" / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "ViTImageProcessor" and processor["resample"] == 3
    assert processor["size"] == {"height": 64, "width": 64}
    with pytest.raises(ConversionError, match="from the Hugging Face Hub failed"):
        convert_swinv2_checkpoint("someone/absent", tmp_path / "other", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------------------
# Bad input


def test_a_vit_checkpoint_is_refused_by_its_model_type(tmp_path: Path) -> None:
    vit = ViTConfig(image_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    ViTForImageClassification(vit).save_pretrained(tmp_path / "vit")
    with pytest.raises(ConversionError, match="model_type 'vit'; only SwinV2 checkpoints"):
        convert_swinv2_checkpoint(tmp_path / "vit", tmp_path / "mano")
    assert listing(tmp_path) == ["vit"]


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "has no readable weights: .*no file named model.safetensors"),
        ("corrupt", "safetensors weights of .* are not readable"),
        ("no-config", "has no config.json"),
        ("wrong-shapes", "do not match the shapes its config.json implies"),
        ("foreign-keys", "do not fit ManoForImageClassification: missing .* unexpected"),
    ],
)
def test_broken_checkpoints_fail_clearly_and_write_nothing(tmp_path: Path, damage: str, message: str) -> None:
    folder = tmp_path / "swinv2"
    make_swinv2_checkpoint(folder)
    weights = folder / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    elif damage == "corrupt":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(64))
    elif damage == "no-config":
        (folder / "config.json").unlink()
    elif damage == "wrong-shapes":
        config = json.loads((folder / "config.json").read_text())
        config["mlp_ratio"] = 2.0
        (folder / "config.json").write_text(json.dumps(config))
    elif damage == "foreign-keys":
        state_dict = load_file(weights)
        state_dict["swinv2.encoder.layers.0.blocks.0.extra.weight"] = state_dict.pop("swinv2.layernorm.weight")
        save_file(state_dict, weights)
    with pytest.raises(ConversionError, match=message):
        convert_swinv2_checkpoint(folder, tmp_path / "mano")
    assert listing(tmp_path) == ["swinv2"]


def test_missing_folders_and_bad_arguments_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="neither a local checkpoint folder nor a Hugging Face Hub id"):
        convert_swinv2_checkpoint(tmp_path / "nowhere", tmp_path / "mano")
    with pytest.raises(ConversionError, match="push_to_hub needs hub_model_id"):
        convert_swinv2_checkpoint(tmp_path / "nowhere", tmp_path / "mano", push_to_hub=True)
    with pytest.raises(ConversionError, match="projector_init must be one of"):
        convert_swinv2_checkpoint(tmp_path / "nowhere", tmp_path / "mano", projector_init="zeros")
    make_swinv2_checkpoint(tmp_path / "swinv2")
    with pytest.raises(ConversionError, match=r"num_levels\[0\] = 6 is too deep for the 16x16 token grid"):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", num_levels=[6, 1, 1])
    with pytest.raises(ConversionError, match="is the source checkpoint folder"):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "swinv2", overwrite=True)
    assert listing(tmp_path) == ["swinv2"]


def test_existing_output_is_refused_without_overwrite_and_kept_on_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_swinv2_checkpoint(tmp_path / "swinv2")
    (tmp_path / "mano").mkdir()
    (tmp_path / "mano" / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="exists; pass overwrite=True"):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano")
    arguments = ["--swinv2_checkpoint", str(tmp_path / "swinv2"), "--output_dir", str(tmp_path / "mano")]
    assert run_main(convert_swinv2_to_mano.main, arguments) == 1
    assert "error: " in capsys.readouterr().err

    # A failure while writing (here: the model card) leaves neither a partial folder nor a changed old one.
    def failing_card(*args, **kwargs):
        raise OSError("disk full while writing the card")

    monkeypatch.setattr(convert_module, "render_model_card", failing_card)
    with pytest.raises(OSError, match="disk full"):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", overwrite=True, num_check_inputs=0)
    assert listing(tmp_path) == ["mano", "swinv2"] and listing(tmp_path / "mano") == ["keep.txt"]
    monkeypatch.undo()
    with pytest.raises(ConversionError, match="model card template .* not found"):
        convert_swinv2_checkpoint(
            tmp_path / "swinv2", tmp_path / "mano", overwrite=True, card_template=tmp_path / "absent.md"
        )

    convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", overwrite=True, num_check_inputs=0)
    assert listing(tmp_path) == ["mano", "swinv2"] and listing(tmp_path / "mano") == REPOSITORY_FILES


def test_a_failed_numeric_check_writes_nothing(tmp_path: Path) -> None:
    make_swinv2_checkpoint(tmp_path / "swinv2")
    with pytest.raises(
        ConversionError, match=r"differs from the source by .* \(float64\) > tolerance -1 .*; nothing was"
    ):
        convert_swinv2_checkpoint(tmp_path / "swinv2", tmp_path / "mano", tolerance=-1.0, num_check_inputs=1)
    assert listing(tmp_path) == ["swinv2"]


# ---------------------------------------------------------------------------------------------------------------------
# The repository that would be published


def test_output_folder_is_the_complete_hub_repository(converted) -> None:
    source, output, report = converted
    assert listing(output) == REPOSITORY_FILES == report.files
    saved, original = (json.loads((folder / "preprocessor_config.json").read_text()) for folder in (output, source))
    assert {key: saved[key] for key in original} == original  # the source's processor, rewritten by transformers
    config = json.loads((output / "config.json").read_text())
    assert set(config["auto_map"]) == AUTO_MAP_KEYS
    for reference in config["auto_map"].values():
        module, _ = reference.split(".")
        assert (output / f"{module}.py").is_file()
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "fox"}

    card = ModelCard.load(output / "README.md")
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "image-classification"
    assert metadata["base_model"] == BASE_MODEL and metadata["license"] == "apache-2.0"
    assert {"mano", "swinv2", "image-classification"} <= set(metadata["tags"])
    headings = [line for line in card.text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Model details",
        "## Uses",
        "## Limitations",
        "## How to start",
        "## Training",
        "## Evaluation",
        "## Citation",
    ]
    assert "2507.02748" in card.text.split("## Citation")[1] and 'model="org/mano-x"' in card.text
    assert f"{report.max_abs_diff:.3e}" in card.text and "$" not in card.text.replace("$$", "")
    assert f"{report.max_abs_diff_float32:.3e} in float32" in card.text


def test_push_is_opt_in_and_uploads_the_folder_as_written(converted, monkeypatch: pytest.MonkeyPatch) -> None:
    _, output, _ = converted
    calls = []

    class RecordingApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("init", token))

        def create_repo(self, repo_id: str, **kwargs) -> None:
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, folder_path: str, repo_id: str, **kwargs) -> str:
            calls.append(("upload_folder", listing(Path(folder_path)), repo_id))
            return f"https://huggingface.co/{repo_id}/commit/0"

    url = push_folder_to_hub(output, "org/mano-x", api=RecordingApi())
    assert url == "https://huggingface.co/org/mano-x/commit/0"
    assert calls[1] == ("create_repo", "org/mano-x", {"repo_type": "model", "private": False, "exist_ok": True})
    assert calls[2] == ("upload_folder", REPOSITORY_FILES, "org/mano-x")

    calls.clear()
    monkeypatch.setattr(convert_module, "HfApi", RecordingApi)
    source = output.parent / "swinv2"
    convert_swinv2_checkpoint(source, output.parent / "not-pushed", num_check_inputs=0)
    assert calls == []
    report = convert_swinv2_checkpoint(
        source, output.parent / "pushed", num_check_inputs=0, push_to_hub=True, hub_model_id="org/mano-x", token="t"
    )
    assert [call[0] for call in calls] == ["init", "create_repo", "upload_folder"] and calls[0] == ("init", "t")
    assert report.pushed_to.endswith("/commit/0") and "pushed to:" in report.format()


PIPELINE_IMAGE = {"mode": "RGB", "size": (80, 50), "color": (200, 30, 90)}


def test_pipeline_with_the_package(converted) -> None:
    """The pipeline preprocesses with the saved processor and names the model's top class with its label."""
    _, output, _ = converted
    classifier = pipeline("image-classification", model=str(output))
    assert isinstance(classifier.model, ManoForImageClassification)
    image = Image.new(**PIPELINE_IMAGE)
    (top,) = classifier(image, top_k=1)
    model = AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad():
        probabilities = model(**AutoImageProcessor.from_pretrained(output)(image, return_tensors="pt")).logits.softmax(
            -1
        )
    assert top["label"] == model.config.id2label[probabilities.argmax().item()]
    # the same float32 model on the same pixels; the pipeline's softmax may run in another dtype or order: a
    # probability of order 1e-3..1 agrees to a few float32 ulps (1e-7 relative), far inside rel 1e-5
    assert top["score"] == pytest.approx(probabilities.max().item(), rel=1e-5)


def test_pipeline_without_the_package_through_remote_code(converted, tmp_path: Path) -> None:
    _, output, _ = converted
    script = REFUSE_PACKAGE_IMPORT + textwrap.dedent(
        f"""
        import sys

        from PIL import Image
        from transformers import pipeline

        classifier = pipeline("image-classification", model={str(output)!r}, trust_remote_code=True)
        (top,) = classifier(Image.new(**{PIPELINE_IMAGE!r}), top_k=1)
        assert "transformers_mano" not in sys.modules
        print(type(classifier.model).__module__, type(classifier.model).__name__)
        print(top["label"], repr(top["score"]))
        """
    )
    environment = os.environ | {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=240, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, name = result.stdout.splitlines()[-2].split()
    assert name == "ManoForImageClassification" and module.startswith("transformers_modules.")
    label, score = result.stdout.splitlines()[-1].split()
    (top,) = pipeline("image-classification", model=str(output))(Image.new(**PIPELINE_IMAGE), top_k=1)
    # the subprocess prints the score in full; the same float32 arithmetic, up to thread count: a few ulps (see above)
    assert label == top["label"] and float(score) == pytest.approx(top["score"], rel=1e-5)
