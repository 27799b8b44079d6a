"""The code written next to a checkpoint, so that it loads with `trust_remote_code=True` where this package is not
installed, on any transformers release, not only the one that saved it.

The written files are derived, at save time, from one source of truth: the package's own modules of the model
(configuration, modeling, `multipole.py`, and what they import from the package) and, for the SwinV2 family, the
SwinV2 modules of the installed transformers that the MANO classes subclass. Only imports change:

- an import of another module of this package becomes a sibling import (`from .multipole import ...`): the
  written files sit in one folder, as `trust_remote_code` requires;
- `transformers.models.swinv2.*` becomes the sibling copy of that module, written here too;
- inside those SwinV2 copies, every import of a transformers internal becomes its public home (`PUBLIC_API`),
  or `compat.py`'s stand-in for the three helpers that have none; `@auto_docstring` (documentation only) goes.

What remains imports from transformers only the names in `PUBLIC_API`. A release whose SwinV2 code imports an
internal this table does not know cannot be written from: `RemoteCodeError` names the import.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import os
from pathlib import Path
from types import ModuleType


# Public, stable transformers API (documented for writing custom models), by the module to import it from.
PUBLIC_API: dict[str, frozenset[str]] = {
    "transformers": frozenset(
        {
            "PreTrainedModel",
            "PreTrainedConfig",
            "PretrainedConfig",
            "GradientCheckpointingLayer",
            "BackboneMixin",
            "BackboneConfigMixin",
            "initialization",
            "__version__",
        }
    ),
    "transformers.activations": frozenset({"ACT2FN"}),
    "transformers.modeling_outputs": frozenset({"BackboneOutput"}),
    "transformers.utils": frozenset({"ModelOutput", "logging"}),
}
_PUBLIC_HOME = {name: module for module, names in PUBLIC_API.items() for name in names}
# transformers internals with no public home: `compat.py` stands in for them in the written SwinV2 code
_COMPAT = frozenset({"torch_int", "can_return_tuple", "filter_output_hidden_states"})
# documentation decorators, dropped with their import
_DROPPED = frozenset({"auto_docstring"})
_SWINV2 = "transformers.models.swinv2."
_PACKAGE = __name__.rsplit(".", 1)[0]


class RemoteCodeError(RuntimeError):
    """The code of a checkpoint cannot be written on public API alone."""


def _edit_lines(source: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace 1-based inclusive line ranges of `source` (non-overlapping) by new text."""
    lines = source.splitlines(keepends=True)
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1 : last] = [text] if text else []
    return "".join(lines)


def _import_text(node: ast.ImportFrom, module: str, level: int = 0, names: list[ast.alias] | None = None) -> str:
    """`from <level dots><module> import <names>` at `node`'s indentation, one name a line when long."""
    indent = " " * node.col_offset
    text = indent + ast.unparse(ast.ImportFrom(module=module, names=names or node.names, level=level))
    if len(text) <= 119:
        return text + "\n"
    head, names_text = text.split(" import ", 1)
    body = "".join(f"{indent}    {name.strip()},\n" for name in names_text.split(","))
    return f"{head} import (\n{body}{indent})\n"


def check_public_imports(source: str, where: str) -> None:
    """Raise `RemoteCodeError` if `source` imports anything from transformers outside `PUBLIC_API`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "transformers" for a in node.names):
            raise RemoteCodeError(f"{where}: `import transformers...` (import public names by name instead)")
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "transformers"
        ):
            allowed = PUBLIC_API.get(node.module, frozenset())
            private = [alias.name for alias in node.names if alias.name not in allowed]
            if private:
                raise RemoteCodeError(f"{where}: `from {node.module} import {', '.join(private)}` is not public API")


def _rewrite_package_module(module: ModuleType) -> tuple[str, list[str], list[str]]:
    """A package module's source with sibling imports; the package modules and SwinV2 modules it imports."""
    source = inspect.getsource(module)
    package = module.__name__.rsplit(".", 1)[0]
    edits, siblings, swinv2 = [], [], []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        target = (
            importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if node.level
            else (node.module or "")
        )
        if target == _PACKAGE:
            raise RemoteCodeError(
                f"{module.__name__} imports from the package root ({_PACKAGE}); code written beside a checkpoint must "
                "import from the module that defines each name"
            )
        if target.startswith(_PACKAGE + "."):
            siblings.append(target)
        elif target.startswith(_SWINV2):
            swinv2.append(target)
        else:
            continue
        edits.append((node.lineno, node.end_lineno, _import_text(node, target.rsplit(".", 1)[1], level=1)))
    return _edit_lines(source, edits), siblings, swinv2


def rewrite_swinv2_source(source: str, name: str) -> str:
    """transformers' SwinV2 module `name` on public API: internals to their public home or to `compat`, docs
    decorators dropped."""
    edits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            if node.level == 1:  # a sibling SwinV2 module (`.configuration_swinv2`), written too
                continue
            by_home: dict[str, list[ast.alias]] = {}
            for alias in node.names:
                if alias.name in _DROPPED:
                    continue
                home = "compat" if alias.name in _COMPAT else _PUBLIC_HOME.get(alias.name)
                if home is None:
                    raise RemoteCodeError(
                        f"{name} imports {alias.name} from transformers' internals "
                        f"({'.' * node.level}{node.module or ''}); no public replacement is known for it, so this "
                        "transformers release is outside the range transformers-mano supports"
                    )
                by_home.setdefault(home, []).append(alias)
            text = "".join(
                _import_text(node, home, level=1 if home == "compat" else 0, names=aliases)
                for home, aliases in by_home.items()
            )
            edits.append((node.lineno, node.end_lineno, text))
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            for decorator in node.decorator_list:
                called = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(called, ast.Name) and called.id in _DROPPED:
                    edits.append((decorator.lineno, decorator.end_lineno, ""))
    from transformers import __version__

    header = (
        f"# Written by transformers-mano from transformers {__version__}'s {name}, its imports moved to public API.\n"
    )
    return header + _edit_lines(source, edits)


@functools.cache
def remote_code_files(*entry_modules: str) -> dict[str, str]:
    """The files to write beside a checkpoint whose classes live in `entry_modules`: file name -> source.

    Follows the package imports of the entry modules; every file is checked against `PUBLIC_API`.
    """
    files: dict[str, str] = {}
    pending, seen, swinv2 = list(entry_modules), set(), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        text, siblings, swinv2_modules = _rewrite_package_module(importlib.import_module(name))
        files[f"{name.rsplit('.', 1)[1]}.py"] = text
        pending += siblings
        swinv2.update(swinv2_modules)
    pending = sorted(swinv2)
    while pending:  # the SwinV2 modules, and the SwinV2 modules they import (configuration_swinv2)
        name = pending.pop()
        source = inspect.getsource(importlib.import_module(name))
        files[f"{name.rsplit('.', 1)[1]}.py"] = rewrite_swinv2_source(source, name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and f"{node.module}.py" not in files:
                pending.append(f"{_SWINV2}{node.module}")
        if swinv2 and "compat.py" not in files:
            files.update(remote_code_files(f"{_PACKAGE}.compat"))
    for file_name, text in files.items():
        check_public_imports(text, file_name)
    return files


class RemoteCodeConfigMixin:
    """`save_pretrained` of this package's configurations: `config.json`, then the code of the model family
    (`remote_code_modules`, set by each configuration) beside it, on public transformers API. A model's
    `save_pretrained` saves its configuration through here, so its folder gets the code too."""

    remote_code_modules: tuple[str, ...] = ()

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        if push_to_hub:  # `push_to_hub` saves through this method into a folder of its own, code included
            repo_id = kwargs.pop("repo_id", None) or Path(save_directory).name
            self.save_pretrained(save_directory)
            return self.push_to_hub(repo_id, **kwargs)
        module = type(self).__module__.rsplit(".", 1)[-1]
        self.auto_map = getattr(self, "auto_map", None) or {"AutoConfig": f"{module}.{type(self).__name__}"}
        super().save_pretrained(save_directory, **kwargs)
        write_remote_code(self, save_directory)


def write_remote_code(config: object, save_directory: str | os.PathLike) -> list[str]:
    """Write the code of `config`'s model family (its class's `remote_code_modules`) into `save_directory`.

    A configuration loaded through `trust_remote_code` comes from files written this way already: those are copied
    as they are (every module of the folder transformers loaded them from).
    """
    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    if type(config).__module__.startswith("transformers_mano."):
        files = remote_code_files(*type(config).remote_code_modules)
    else:
        loaded_from = Path(inspect.getfile(type(config))).parent
        files = {path.name: path.read_text() for path in loaded_from.glob("*.py") if path.name != "__init__.py"}
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return sorted(files)


__all__ = [
    "PUBLIC_API",
    "RemoteCodeConfigMixin",
    "RemoteCodeError",
    "check_public_imports",
    "remote_code_files",
    "rewrite_swinv2_source",
    "write_remote_code",
]
