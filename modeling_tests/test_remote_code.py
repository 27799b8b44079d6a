"""Checkpoints saved by the package load where the package cannot be imported, through trust_remote_code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from conftest import REFUSE_PACKAGE_IMPORT
from transformers_mano import ManoForImageClassification
from transformers_mano.modeling_mano import AUTO_MAP

# Runs in a fresh interpreter whose import system refuses `transformers_mano`, as on a machine without the package.
LOAD_WITHOUT_PACKAGE = REFUSE_PACKAGE_IMPORT + textwrap.dedent(
    """
    import sys

    import torch
    from transformers import AutoModel, AutoModelForImageClassification

    folder, inputs, outputs = sys.argv[1:4]
    try:
        import transformers_mano  # noqa: F401
        raise SystemExit("the package was importable")
    except ImportError:
        pass
    pixel_values = torch.load(inputs)
    classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(classifier).__module__.startswith("transformers_modules"), type(classifier).__module__
    with torch.no_grad():
        torch.save({"logits": classifier(pixel_values).logits, "pooled": base(pixel_values).pooler_output,
                    "classes": [type(classifier).__name__, type(base).__name__]}, outputs)
    """
)


def test_saved_folder_is_a_remote_code_repository(tester, tmp_path):
    ManoForImageClassification(tester.get_config()).save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_mano.py", "configuration_mano.py", "multipole.py"} <= files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "mano"
    assert config["auto_map"] == AUTO_MAP
    assert set(config["auto_map"]) == {
        "AutoConfig", "AutoModel", "AutoModelForImageClassification", "AutoModelForMaskedImageModeling", "AutoBackbone"
    }


def test_remote_code_load_without_the_package(tester, tmp_path):
    model = ManoForImageClassification(tester.get_config()).eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    pixel_values = tester.pixel_values()
    torch.save(pixel_values, tmp_path / "inputs.pt")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    assert remote["classes"] == ["ManoForImageClassification", "ManoModel"]
    with torch.no_grad():
        assert torch.equal(remote["logits"], model(pixel_values).logits)
        assert torch.equal(remote["pooled"], model.swinv2(pixel_values).pooler_output)
