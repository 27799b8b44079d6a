"""What a script does with a user's mistake: one line that names it, not a traceback (unless `--debug`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from huggingface_hub.errors import StrictDataclassError

# Errors that report a problem with the input (arguments, files, configuration values), not a bug.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, StrictDataclassError, ImportError)
DEBUG_FLAG = "--debug"


def run_main(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`; a user error prints `error: <message>` on one line and returns 1.

    `--debug` anywhere in `argv` is removed and lets the error raise with its traceback. Anything that is not a
    user error (a bug) raises as usual.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [argument for argument in argv if argument != DEBUG_FLAG]
    try:
        main(argv)
    except USER_ERRORS as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message} (run with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        return 1
    return 0


__all__ = ["DEBUG_FLAG", "USER_ERRORS", "run_main"]
