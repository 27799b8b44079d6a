"""Checkpoints carry self-contained code: it imports only public transformers API, loads with trust_remote_code where
neither this package nor transformers' SwinV2 modules can be imported, and computes what the package computes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from conftest import REFUSE_PACKAGE_IMPORT, make_trained_like

from transformers_mano import (
    ManoBackbone,
    ManoConfig,
    ManoForImageClassification,
    ManoForMaskedImageModeling,
    ManoOperatorConfig,
    ManoOperatorModel,
)
from transformers_mano.models.mano.modeling_mano import AUTO_MAP
from transformers_mano.remote_code import PUBLIC_API, RemoteCodeError, rewrite_swinv2_source


MANO_FILES = {
    "configuration_mano.py",
    "modeling_mano.py",
    "sdpa_attention_mano.py",
    "multipole.py",
    "configuration_swinv2.py",
    "modeling_swinv2.py",
    "compat.py",
    "remote_code.py",
}
OPERATOR_FILES = {
    "configuration_mano_operator.py",
    "modeling_mano_operator.py",
    "multipole.py",
    "remote_code.py",
    "config_validators.py",
    "window_kernel.py",
}


def transformers_imports(path: Path) -> list[tuple[str, str]]:
    """Every (module, name) a file imports from transformers, and ("import", module) for plain imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [("import", a.name) for a in node.names if a.name.split(".")[0] == "transformers"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "transformers":
            found += [(node.module, alias.name) for alias in node.names]
    return found


HEAD_CLASSES = {
    "classifier": ManoForImageClassification,
    "masked-image-modeling": ManoForMaskedImageModeling,
    "backbone": ManoBackbone,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, ManoForImageClassification, torch.Tensor]:
    """Trained-like MANO models of every head saved by the package (each holding all its weights), the classifier,
    and inputs to compare them on."""
    root = tmp_path_factory.mktemp("remote")
    from conftest import ManoModelTester

    tester = ManoModelTester()
    for name, cls in HEAD_CLASSES.items():
        torch.manual_seed(0)
        model = make_trained_like(cls(tester.get_config())).eval()
        model.save_pretrained(root / name)
    return root / "classifier", ManoForImageClassification.from_pretrained(root / "classifier"), tester.pixel_values()


def test_saved_folder_is_a_remote_code_repository(saved) -> None:
    folder, _, _ = saved
    assert MANO_FILES | {"config.json", "model.safetensors"} <= {path.name for path in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mano" and config["auto_map"] == AUTO_MAP
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForImageClassification",
        "AutoModelForMaskedImageModeling",
        "AutoBackbone",
    }
    for reference in config["auto_map"].values():
        assert (folder / f"{reference.split('.')[0]}.py").is_file()


def test_written_files_import_only_public_transformers_api(saved, tmp_path) -> None:
    """The rule for code that outlives the release that saved it: no transformers.models.*, no internals."""
    folder, _, _ = saved
    ManoOperatorModel(
        ManoOperatorConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, head_dim=4)
    ).save_pretrained(tmp_path / "operator")
    files = sorted(folder.glob("*.py")) + sorted((tmp_path / "operator").glob("*.py"))
    assert {path.name for path in (tmp_path / "operator").glob("*.py")} == OPERATOR_FILES
    for path in files:
        for module, name in transformers_imports(path):
            assert module != "import", f"{path.name}: import {name}"
            assert name in PUBLIC_API.get(module, ()), f"{path.name}: from {module} import {name}"
        imported = [
            node.module or "" for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
        ]
        assert not [module for module in imported if module.startswith("transformers_mano")], path.name
    listed = {(module, name) for path in files for module, name in transformers_imports(path)}
    print("transformers imports of the written files:", sorted(listed))


LOAD_WITHOUT_PACKAGE = REFUSE_PACKAGE_IMPORT + textwrap.dedent(
    """
    import sys

    import torch
    from transformers import AutoModel, AutoModelForImageClassification, AutoModelForMaskedImageModeling

    folder, inputs, outputs = sys.argv[1:4]
    root = folder.rsplit("/", 1)[0]
    pixel_values = torch.load(inputs)
    results = {}
    with torch.no_grad():
        classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
        # AutoBackbone.from_pretrained of transformers 5.23/5.24 asks the Hub whether a local folder is a repository:
        # the written module's own class stands in for it
        backbone = sys.modules[type(classifier).__module__].ManoBackbone
        loads = [(AutoModelForImageClassification, folder), (AutoModel, folder)]
        loads += [(AutoModelForMaskedImageModeling, root + "/masked-image-modeling"), (backbone, root + "/backbone")]
        for auto, path in loads:
            if not __import__("os").path.isdir(path):
                continue
            model = auto.from_pretrained(path, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            output = model(pixel_values)
            results[type(model).__name__] = [t for t in output.values() if isinstance(t, torch.Tensor)] + list(
                getattr(output, "feature_maps", None) or [])
        model.save_pretrained(outputs + ".resaved")  # saving a remote-code model copies the same files
    assert not [name for name in sys.modules if name.startswith(("transformers_mano", "transformers.models.swinv2"))]
    torch.save(results, outputs)
    """
)


def run_isolated(python: str, script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter with this process's thread count, so that the same code computes the same bits
    (another thread count reorders float reductions)."""
    return subprocess.run(
        [python, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(cwd / "hf_home"),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        },
    )


def package_outputs(folder: Path, pixel_values: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    from transformers_mano import ManoModel

    results = {}
    loads = [
        (ManoForImageClassification, folder),
        (ManoModel, folder),
        (ManoForMaskedImageModeling, folder.parent / "masked-image-modeling"),
        (ManoBackbone, folder.parent / "backbone"),
    ]
    with torch.no_grad():
        for cls, path in loads:
            if not path.is_dir():
                continue
            model = cls.from_pretrained(path).eval()
            output = model(pixel_values)
            results[cls.__name__] = [t for t in output.values() if isinstance(t, torch.Tensor)] + list(
                getattr(output, "feature_maps", None) or []
            )
    return results


def test_remote_code_loads_without_the_package_or_transformers_swinv2(saved, tmp_path) -> None:
    """Every head loads from the written files alone and computes exactly what the package's classes compute."""
    folder, _, pixel_values = saved
    torch.save(pixel_values, tmp_path / "inputs.pt")
    result = run_isolated(
        sys.executable,
        LOAD_WITHOUT_PACKAGE,
        str(folder),
        str(tmp_path / "inputs.pt"),
        str(tmp_path / "out.pt"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote, local = torch.load(tmp_path / "out.pt"), package_outputs(folder, pixel_values)
    assert (
        set(remote)
        == set(local)
        == {"ManoForImageClassification", "ManoModel", "ManoForMaskedImageModeling", "ManoBackbone"}
    )
    for name in local:
        assert len(remote[name]) == len(local[name]) > 0
        assert all(torch.equal(a, b) for a, b in zip(remote[name], local[name])), name
    assert MANO_FILES <= {path.name for path in (tmp_path / "out.pt.resaved").iterdir()}


def test_a_config_saved_alone_carries_its_code(tmp_path) -> None:
    ManoConfig(num_levels=[2, 2, 1, 1]).save_pretrained(tmp_path / "config")
    assert MANO_FILES <= {path.name for path in (tmp_path / "config").iterdir()}
    script = REFUSE_PACKAGE_IMPORT + textwrap.dedent(
        """
        import sys
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)
        print(type(config).__name__, config.resolved_num_levels())
        """
    )
    result = run_isolated(sys.executable, script, str(tmp_path / "config"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "ManoConfig [2, 2, 1, 1]"


def test_push_to_hub_uploads_the_code_files(monkeypatch) -> None:
    """`push_to_hub` saves into a folder of its own before uploading: the code files must be among what goes up.
    The Hub is out of reach here; huggingface_hub's `HfApi` records what would be created and committed."""
    from huggingface_hub import HfApi

    from transformers_mano import ManoModel

    committed = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: types.SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(
        HfApi,
        "create_commit",
        lambda self, repo_id, operations, **kwargs: committed.extend(
            operation.path_in_repo for operation in operations
        ),
    )
    config = ManoConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1], num_heads=[1], window_size=2)
    ManoModel(config).push_to_hub("org/mano-x")
    assert MANO_FILES | {"config.json", "model.safetensors"} <= set(committed)
    committed.clear()
    config.push_to_hub("org/mano-x-config")
    assert MANO_FILES | {"config.json"} <= set(committed)


def test_a_release_importing_an_unknown_internal_is_refused_by_name() -> None:
    """A future SwinV2 that imports an internal with no known public home cannot be written from: the error names
    the import (and the written files could not run elsewhere)."""
    known = "from ...utils import auto_docstring, torch_int\n\n\n@auto_docstring\ndef f():\n    return torch_int(1)\n"
    rewritten = rewrite_swinv2_source(known, "transformers.models.swinv2.modeling_swinv2")
    assert "from .compat import torch_int" in rewritten and "auto_docstring" not in rewritten
    with pytest.raises(RemoteCodeError, match="imports shiny_new_helper from transformers' internals"):
        rewrite_swinv2_source("from ...utils import torch_int, shiny_new_helper\n", "modeling_swinv2")


SAVE_IN_OTHER_RELEASE = textwrap.dedent(
    """
    import sys
    import torch
    import transformers
    from transformers_mano import ManoForImageClassification, ManoConfig
    config = ManoConfig(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=2,
                        num_labels=5, projector_init="avg_pool_nearest_up")
    torch.manual_seed(0)
    model = ManoForImageClassification(config).eval()
    model.save_pretrained(sys.argv[1])
    with torch.no_grad():
        torch.save(model(torch.load(sys.argv[2])).logits, sys.argv[3])
    print(transformers.__version__)
    """
)


def test_a_checkpoint_saved_under_one_release_loads_under_the_other(request, saved, tmp_path) -> None:
    """Both directions between this environment's transformers and the other end of the supported range."""
    other = request.config.getoption("--other-transformers-python")
    if other is None:
        pytest.skip("needs --other-transformers-python: the Python of an environment with the other supported release")
    folder, _, pixel_values = saved
    torch.save(pixel_values, tmp_path / "inputs.pt")
    # saved here, loaded there
    result = run_isolated(
        other, LOAD_WITHOUT_PACKAGE, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "there.pt"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    local = package_outputs(folder, pixel_values)
    for name, tensors in torch.load(tmp_path / "there.pt").items():
        assert all(torch.equal(a, b) for a, b in zip(tensors, local[name])), name
    # saved there (with the package), loaded here without it
    saver = subprocess.run(
        [
            other,
            "-c",
            SAVE_IN_OTHER_RELEASE,
            str(tmp_path / "other" / "classifier"),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "other_logits.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert saver.returncode == 0, saver.stderr[-3000:]
    import transformers

    assert saver.stdout.split()[-1] != transformers.__version__, "the other environment has the same release"
    result = run_isolated(
        sys.executable,
        LOAD_WITHOUT_PACKAGE,
        str(tmp_path / "other" / "classifier"),
        str(tmp_path / "inputs.pt"),
        str(tmp_path / "here.pt"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    here = torch.load(tmp_path / "here.pt")["ManoForImageClassification"][0]
    assert torch.equal(here, torch.load(tmp_path / "other_logits.pt"))
