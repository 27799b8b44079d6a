"""Every model class of the package is registered with the Auto classes, in one place (`transformers_mano.auto`)."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, PreTrainedModel

import transformers_mano
from transformers_mano import ManoConfig, ManoOperatorConfig
from transformers_mano.auto import AUTO_MODELS
from transformers_mano.models.mano.modeling_mano import AUTO_MAP as MANO_AUTO_MAP
from transformers_mano.models.mano_operator.modeling_mano_operator import AUTO_MAP as OPERATOR_AUTO_MAP


def package_model_classes() -> set[type[PreTrainedModel]]:
    """Every `PreTrainedModel` class that a module of the package defines, abstract bases (`*PreTrainedModel`) apart."""
    for module in pkgutil.walk_packages(transformers_mano.__path__, prefix="transformers_mano."):
        importlib.import_module(module.name)
    found, pending = set(), [PreTrainedModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            pending.append(subclass)
            if subclass.__module__.startswith("transformers_mano.") and not subclass.__name__.endswith(
                "PreTrainedModel"
            ):
                found.add(subclass)
    return found


def test_every_model_class_of_the_package_is_in_the_one_table() -> None:
    registered = {model for models in AUTO_MODELS.values() for model in models.values()}
    assert package_model_classes() == registered


@pytest.mark.parametrize("config_class", list(AUTO_MODELS), ids=lambda config_class: config_class.model_type)
def test_the_auto_classes_build_what_the_table_says(config_class) -> None:
    if config_class.model_type == "fno_operator":
        pytest.importorskip("neuralop")
    config = AutoConfig.for_model(config_class.model_type)
    assert type(config) is config_class
    for auto_class, model_class in AUTO_MODELS[config_class].items():
        with torch.device("meta"):  # the classes only: no weights drawn
            assert type(auto_class.from_config(config)) is model_class, auto_class.__name__


@pytest.mark.parametrize(
    ("config_class", "auto_map"), [(ManoConfig, MANO_AUTO_MAP), (ManoOperatorConfig, OPERATOR_AUTO_MAP)]
)
def test_remote_code_names_the_registered_classes(config_class, auto_map: dict[str, str]) -> None:
    """`config.auto_map` (written beside a checkpoint for remote code) maps each Auto class to the class registered
    for it, by module file and class name."""

    def where(cls: type) -> str:
        return f"{Path(inspect.getfile(cls)).stem}.{cls.__name__}"

    expected = {"AutoConfig": where(config_class)}
    expected |= {auto_class.__name__: where(model) for auto_class, model in AUTO_MODELS[config_class].items()}
    assert auto_map == expected


def test_importing_the_package_is_all_a_fresh_process_needs() -> None:
    """No module besides the package itself to import before the Auto classes know the baselines."""
    script = (
        "import transformers, transformers_mano\n"
        "print(*(type(transformers.AutoConfig.for_model(t)).__name__ for t in ('fno_operator', 'vit_operator')))"
    )
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=600, check=True
    )
    assert result.stdout.split() == ["FnoOperatorConfig", "VitOperatorConfig"]
