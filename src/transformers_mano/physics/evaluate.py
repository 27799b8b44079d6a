"""Evaluate finished Darcy runs again, at every test resolution, optionally with MANO's sub-grid inference.

A run folder of `scripts/train_darcy.py` holds a model that `AutoModel.from_pretrained` reloads. Evaluating it
again needs no training: this is how MANO's `native_resolution` (a finer grid run as interleaved sub-grids at the
trained spacing) is measured on runs trained without it. `interpolate_from` is the reference for any model: the
model sees only the points of a finer grid at the trained spacing, and its prediction there is interpolated
(linearly) onto the finer grid. `num_levels` pins MANO's level count, which tells a level the model never trained
apart from the spacing of its stencils as the cause of an error on a finer grid. `attention_resolution` replaces the
grid side MANO's attention runs at (`none`: every grid as given, the behaviour of runs made before the option).
Results go to `evaluation[-<tag>].json` in the run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers import AutoModel, PreTrainedModel

from ..models.mano_operator.modeling_mano_operator import ManoOperatorModel
from ..utils import atomic_file, atomic_write_text, machine_info
from .data import as_tensors, load_darcy, split_resolutions
from .training import relative_errors


@dataclass
class EvaluationArguments:
    """Which runs to evaluate again, on which data, and how."""

    run_dirs: list[str] = field(metadata={"help": "Run folders written by scripts/train_darcy.py."})
    native_resolution: int | None = field(
        default=None,
        metadata={"help": "MANO only: run grids that are multiples of this side as interleaved sub-grids (e.g. 16)."},
    )
    interpolate_from: int | None = field(
        default=None,
        metadata={
            "help": "Any model: on grids that are multiples of this side, predict on the sub-grid of this side "
            "that starts at the origin and interpolate the prediction linearly (e.g. 16)."
        },
    )
    attention_resolution: str | None = field(
        default=None,
        metadata={
            "help": "MANO only: the grid side its attention runs at instead of the saved one ('none': every "
            "grid as given, as before the option existed; e.g. 16)."
        },
    )
    attention_restriction: str | None = field(
        default=None,
        metadata={
            "help": "MANO only: how a finer grid is resampled for the attention: sample, linear or average "
            "(None: the saved one)."
        },
    )
    attention_prolongation: str | None = field(
        default=None,
        metadata={
            "help": "MANO only: how the attention's output returns to a finer grid: nominal (from the trained "
            "points' positions) or consistent (from the points the restriction read) (None: the saved "
            "one)."
        },
    )
    num_levels: int | None = field(
        default=None,
        metadata={
            "help": "MANO only: this level count on every grid instead of the saved one (e.g. 4, the count of "
            "a 16x16 training grid, also at 32x32)."
        },
    )
    data: str | None = field(default=None, metadata={"help": "Data set (None: each run's own)."})
    dataset_seed: int | None = field(
        default=None,
        metadata={
            "help": "Generated data: draw it with this seed instead of the run's (another seed's test splits "
            "serve as validation sets at every resolution, for choices never made on the test set)."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Data cache (None: the run's, else the datasets cache)."}
    )
    batch_size: int = field(default=50, metadata={"help": "Evaluation batch size."})
    tag: str = field(
        default="", metadata={"help": "Suffix of the outputs: evaluation-<tag>.json, predictions_<n>-<tag>.npz."}
    )
    num_saved_predictions: int = field(default=4, metadata={"help": "Test samples saved per resolution."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing evaluation file."})


def mano_overrides(args: EvaluationArguments) -> dict[str, object]:
    """The MANO config values an evaluation replaces: only the options given."""
    options = ("native_resolution", "num_levels", "attention_restriction", "attention_prolongation")
    overrides = {option: getattr(args, option) for option in options if getattr(args, option) is not None}
    side = args.attention_resolution
    if side is not None:
        if side != "none" and not str(side).isdigit():
            raise ValueError(f"--attention_resolution must be a grid side or 'none', got {side!r}")
        overrides["attention_resolution"] = None if side == "none" else int(side)
    return overrides


def upsample_strided(fields: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, m, m, C) values at the points 0, s, 2s, ... of a grid of side m * s, to the whole grid (B, ms, ms, C):
    linear interpolation between those points, constant past the last one (which is where such sub-grids stop)."""
    side = fields.shape[1]
    position = torch.arange(side * stride, dtype=fields.dtype, device=fields.device) / stride
    low = position.floor().long().clamp(max=side - 1)
    high = (low + 1).clamp(max=side - 1)
    weight = (position - low).clamp(max=1.0)
    rows = fields[:, low] * (1 - weight)[None, :, None, None] + fields[:, high] * weight[None, :, None, None]
    return rows[:, :, low] * (1 - weight)[None, None, :, None] + rows[:, :, high] * weight[None, None, :, None]


def _predict(model: PreTrainedModel, inputs: torch.Tensor, args: EvaluationArguments) -> torch.Tensor:
    stride = inputs.shape[1] // args.interpolate_from if args.interpolate_from else 1
    if stride > 1 and inputs.shape[1] == stride * args.interpolate_from == inputs.shape[2]:
        inputs = inputs[:, ::stride, ::stride]
    else:
        stride = 1
    predictions = torch.cat(
        [model(inputs[i : i + args.batch_size]).predictions for i in range(0, len(inputs), args.batch_size)]
    )
    return upsample_strided(predictions, stride) if stride > 1 else predictions


@torch.no_grad()
def evaluate_run(run_dir: str | Path, args: EvaluationArguments) -> dict[str, object]:
    """Relative L2 and MSE at every test resolution of the run's data; written beside the run's results.

    The steps: reload the run's model with the options of `args`, load the run's data, predict and score every test
    split (saving its first predictions), write `evaluation[-<tag>].json`."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    model = load_for_evaluation(run_dir, args)
    data = load_run_data(results["arguments"]["data"], args)
    suffix = f"-{args.tag}" if args.tag else ""
    tests = {}
    for resolution in split_resolutions(data):
        inputs, targets = as_tensors(data[f"test_{resolution}"])
        predictions = _predict(model, inputs, args)
        tests[str(resolution)] = score_predictions(predictions, targets, results["train_resolution"])
        keep = slice(0, args.num_saved_predictions)
        with atomic_file(run_dir / f"predictions_{resolution}{suffix}.npz", overwrite=args.overwrite) as staged:
            with staged.open("wb") as handle:
                np.savez_compressed(
                    handle,
                    coefficient=inputs[keep, ..., 0].numpy(),
                    solution=targets[keep, ..., 0].numpy(),
                    prediction=predictions[keep, ..., 0].numpy(),
                )
    evaluation = {
        "run": str(run_dir),
        "native_resolution": args.native_resolution,
        "num_levels": args.num_levels,
        "attention_resolution": getattr(model.config, "attention_resolution", None),
        "attention_restriction": getattr(model.config, "attention_restriction", None),
        "attention_prolongation": getattr(model.config, "attention_prolongation", None),
        "dataset_seed": args.dataset_seed,
        "interpolate_from": args.interpolate_from,
        "test": tests,
        "machine": machine_info(),
    }
    atomic_write_text(run_dir / f"evaluation{suffix}.json", json.dumps(evaluation, indent=2), overwrite=args.overwrite)
    return evaluation


def load_for_evaluation(run_dir: Path, args: EvaluationArguments) -> PreTrainedModel:
    """The run's model (`AutoModel`, in eval mode) with the MANO options of `args` set on its config; refuses
    options that contradict each other or do not apply to the model."""
    model = AutoModel.from_pretrained(run_dir).eval()
    if args.native_resolution is not None and args.interpolate_from is not None:
        raise ValueError("--native_resolution and --interpolate_from are two ways to evaluate: pass one")
    for option, value in mano_overrides(args).items():
        if not isinstance(model, ManoOperatorModel):
            raise ValueError(f"--{option} applies to MANO operators; {run_dir} holds {type(model).__name__}")
        setattr(model.config, option, value)
    return model


def load_run_data(recorded: dict[str, object], args: EvaluationArguments) -> DatasetDict:
    """The Darcy data of a run from its recorded data arguments (`results.json`'s `arguments.data`: sizes, splits,
    resolutions), with the data set, cache and generator seed of `args` where given."""
    return load_darcy(
        args.data or recorded["data"],
        args.cache_dir or recorded["cache_dir"],
        recorded["data_source"],
        num_train=recorded["num_train"],
        num_test=recorded["num_test"],
        seed=recorded.get("dataset_seed", recorded["split_seed"]) if args.dataset_seed is None else args.dataset_seed,
        train_resolution=recorded["train_resolution"],
        test_resolutions=recorded["test_resolutions"],
    )


def score_predictions(predictions: torch.Tensor, targets: torch.Tensor, train_resolution: int) -> dict[str, object]:
    """Relative L2 and MSE of (B, n, n, C) predictions and the sample count; on a grid that is a multiple of the
    training one, also the relative MSE on each interleaved sub-grid at the trained spacing ("i,j": the sub-grid of
    rows i, i + stride, ... and columns j, j + stride, ...; "0,0" holds the grid's first row and column)."""
    scores = relative_errors(predictions.numpy(), targets.numpy()) | {"num_samples": len(predictions)}
    resolution = predictions.shape[1]
    stride = resolution // train_resolution
    if stride > 1 and resolution == stride * train_resolution:
        scores["sub_grid_relative_mse"] = {
            f"{i},{j}": relative_errors(
                predictions[:, i::stride, j::stride].numpy(), targets[:, i::stride, j::stride].numpy()
            )["relative_mse"]
            for i in range(stride)
            for j in range(stride)
        }
    return scores


__all__ = ["EvaluationArguments", "evaluate_run", "mano_overrides", "upsample_strided"]
