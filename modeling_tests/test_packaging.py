"""The package as users install it (a wheel, not this clone): what the wheel holds, and a conversion run from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the clone stays untouched by build folders)."""
    pytest.importorskip("setuptools")
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    shutil.copytree(REPOSITORY / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = dist.glob("transformers_mano-*.whl")
    return built


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "transformers_mano/conversion/model_card_template.md" in names
    assert "transformers_mano/image_classification/metrics/top_k_accuracy/top_k_accuracy.py" in names
    assert not any(name.startswith(("modeling_tests/", "scripts/")) for name in names)


def test_conversion_runs_from_an_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel, outside this clone, the converter writes its model card from the packaged
    template (it used to look for a file of the clone)."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    script = f"""
import sys
import torch
from transformers import Swinv2Config, Swinv2ForImageClassification
import transformers_mano
from transformers_mano.conversion import convert_swinv2_checkpoint
assert transformers_mano.__file__.startswith({str(site)!r}), transformers_mano.__file__
config = Swinv2Config(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2)
Swinv2ForImageClassification(config).save_pretrained("swinv2")
report = convert_swinv2_checkpoint("swinv2", "mano", num_check_inputs=1)
print(report.files)
"""
    environment = os.environ | {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    card = (tmp_path / "mano" / "README.md").read_text()
    assert "## Model details" in card and "2507.02748" in card
