"""What a script does with a user's mistake: one line that names it, not a traceback (unless `--traceback`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from huggingface_hub.errors import StrictDataclassError


# Errors that report a problem with the input (arguments, files, configuration values), not a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, StrictDataclassError, ImportError)
# not --debug: TrainingArguments has a --debug option of its own
TRACEBACK_FLAG = "--traceback"


def run_main(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`; a user error prints `error: <message>` on one line and returns 1.

    `--traceback` anywhere in `argv` is removed and lets the error raise with its traceback. Anything that is not a
    user error (a bug) raises as usual.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = TRACEBACK_FLAG in argv
    argv = [argument for argument in argv if argument != TRACEBACK_FLAG]
    try:
        main(argv)
    except USER_ERRORS as error:
        if traceback:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message} (run with {TRACEBACK_FLAG} for the traceback)", file=sys.stderr)
        return 1
    finally:
        end_process_group()
    return 0


def end_process_group() -> None:
    """Destroy the process group a torchrun launch made (Trainer does not): left to the interpreter's exit, its
    threads can be torn down in the wrong order and abort the process ("terminate called without an active
    exception") after a run that finished."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


__all__ = ["TRACEBACK_FLAG", "USER_ERRORS", "end_process_group", "run_main"]
