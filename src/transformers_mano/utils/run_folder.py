"""The run folder of a `Trainer` run: never trained into by accident, resumable by name, one per process group."""

from __future__ import annotations

import os

from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .io import OutputExistsError


def check_output_dir(training_args: TrainingArguments) -> None:
    """Refuse to train into a non-empty `output_dir` unless resuming or `overwrite_output_dir` is set."""
    out = training_args.output_dir
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    if not training_args.do_train or overwrite or training_args.resume_from_checkpoint:
        return
    if os.path.isdir(out) and os.listdir(out):
        raise OutputExistsError(
            f"output folder {out!r} exists and is not empty. Pass --overwrite_output_dir to train into it anyway, "
            "--resume_from_checkpoint last to continue its last checkpoint, or another --output_dir."
        )


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: a path, or the output folder's last one for `--resume_from_checkpoint last`."""
    resume = training_args.resume_from_checkpoint
    if resume is None:
        return None
    if resume.lower() in ("last", "true"):
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {resume}: no checkpoint-* in {training_args.output_dir}")
        return last
    if not os.path.isdir(resume):
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a folder")
    return resume


def check_distributed_setup(training_args: TrainingArguments) -> None:
    """Refuse a multi-process launch that Trainer did not turn into one process group.

    On a machine without GPUs, Trainer only sets up DDP (gloo) with `--use_cpu`; without it every torchrun process
    would train alone on the whole data set and write the same output folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise ValueError(
            f"Launched as {launched} processes, but Trainer runs {training_args.world_size}. On a machine without "
            "GPUs pass --use_cpu true so that Trainer trains with DistributedDataParallel over gloo."
        )


__all__ = ["check_distributed_setup", "check_output_dir", "resolve_checkpoint"]
