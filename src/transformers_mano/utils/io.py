"""Atomic outputs: a file or folder appears complete or not at all, and an existing one is replaced only on request.

Everything is first written beside its destination (same file system, so the final `rename` is atomic) under a
hidden name that is unique to the writer, then moved into place. Replacing an existing output moves it aside under
another unique name first and deletes it only once the new one is in place, so two writers never share a temporary
name and a crash never leaves the destination missing or half written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputExistsError(FileExistsError):
    """The destination exists and replacing it was not asked for."""


def check_new_output(path: str | os.PathLike, overwrite: bool, flag: str = "--overwrite") -> Path:
    """`path` as a `Path`; raises `OutputExistsError` naming `flag` when it exists and `overwrite` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass {flag} to replace it")
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(staged: Path, destination: Path) -> None:
    """Rename `staged` to `destination`; an existing destination is moved aside first and deleted afterwards."""
    if not destination.exists() and not destination.is_symlink():
        staged.rename(destination)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".replaced", dir=destination.parent))
    destination.rename(retired / destination.name)
    staged.rename(destination)
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite") -> Iterator[Path]:
    """Yield an empty staging folder to fill; on success it becomes `path`, on any error it is deleted.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is False (checked before and again at the end).
    """
    destination = check_new_output(path, overwrite, flag)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes 0o700; an output folder gets the usual mode
    try:
        yield staging
        check_new_output(destination, overwrite, flag)  # appeared while we were writing
        _move_into_place(staging, destination)
    except BaseException:
        _remove(staging)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite") -> Iterator[Path]:
    """Yield a temporary path (with `path`'s suffix) to write one file to; on success it becomes `path`."""
    destination = check_new_output(path, overwrite, flag)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(
        prefix=f".{destination.stem}.", suffix=f".partial{destination.suffix}", dir=destination.parent
    )
    os.close(descriptor)
    staged = Path(name)
    staged.chmod(0o666 & ~_umask())
    try:
        yield staged
        check_new_output(destination, overwrite, flag)
        os.replace(staged, destination)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """Write `text` to `path` atomically (see `atomic_file`); returns the path."""
    with atomic_file(path, overwrite, flag) as staged:
        staged.write_text(text)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["OutputExistsError", "atomic_directory", "atomic_file", "atomic_write_text", "check_new_output"]
