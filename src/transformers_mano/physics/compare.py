"""Side-by-side results of Darcy runs: a Markdown table, seeds pooled per model, and a figure of predictions."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..utils import atomic_file


class MissingResultsError(FileNotFoundError):
    """A run folder without `results.json` (a run that did not finish)."""


def load_results(run_dirs: list[str | Path], tag: str | None = None) -> list[dict[str, object]]:
    """`results.json` of each run folder, with the folder under `run_dir`.

    With `tag`, the test metrics of `scripts/evaluate_darcy.py --tag <tag>` replace the run's own where the run has
    them (`evaluation-<tag>.json`); `evaluation` then names the tag, else it is None.
    """
    runs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise MissingResultsError(f"{run_dir} holds no results.json: not a finished run of scripts/train_darcy.py")
        results = json.loads(path.read_text())
        results["run_dir"], results["evaluation"] = str(run_dir), None
        evaluation = Path(run_dir) / f"evaluation-{tag}.json"
        if tag and evaluation.is_file():
            results["test"], results["evaluation"] = json.loads(evaluation.read_text())["test"], tag
        runs.append(results)
    return runs


def _resolutions(runs: list[dict[str, object]]) -> list[int]:
    return sorted({int(r) for run in runs for r in run["test"]})


def comparison_table(runs: list[dict[str, object]]) -> str:
    """One row per run: size, learning rate, seed, epochs, wall time, validation and test errors per resolution."""
    resolutions = _resolutions(runs)
    header = ["run", "model", "params", "lr", "seed", "epochs", "train wall (s)", "val rel MSE", "test evaluation"]
    header += [f"rel MSE @{resolution}" for resolution in resolutions]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        row = [
            Path(run["run_dir"]).name,
            run["model"],
            f"{run['parameters']:,}",
            f"{run['learning_rate']:g}",
            str(run["seed"]),
            f"{float(run['epochs']):g}",
            f"{run['train_wall_s']:.0f}",
            f"{run['validation']['relative_mse']:.5f}",
            run.get("evaluation") or "direct",
        ]
        for resolution in resolutions:
            metrics = run["test"].get(str(resolution))
            row.append(f"{metrics['relative_mse']:.5f}" if metrics else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _mean_spread(values: list[float], digits: int) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def seed_table(runs: list[dict[str, object]], label=lambda run: run["model"]) -> str:
    """Runs grouped by `label(run)` (model, learning rate): mean ± half-range over seeds of each metric."""
    resolutions = _resolutions(runs)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[(label(run), run["learning_rate"], run.get("evaluation") or "direct")].append(run)
    header = ["model", "params", "MFLOPs/sample", "lr", "seeds", "train wall (s)", "val rel MSE", "test evaluation"]
    for resolution in resolutions:
        header += [f"rel L2 @{resolution}", f"rel MSE @{resolution}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (name, learning_rate, evaluation), members in groups.items():
        row = [
            name,
            f"{members[0]['parameters']:,}",
            f"{members[0].get('flops_per_sample', math.nan) / 1e6:.1f}",
            f"{learning_rate:g}",
            ",".join(str(run["seed"]) for run in members),
            _mean_spread([run["train_wall_s"] for run in members], 0),
            _mean_spread([run["validation"]["relative_mse"] for run in members], 5),
            evaluation,
        ]
        for resolution in resolutions:
            tests = [run["test"][str(resolution)] for run in members if str(resolution) in run["test"]]
            row += [
                _mean_spread([t["relative_l2"] for t in tests], 4),
                _mean_spread([t["relative_mse"] for t in tests], 5),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_comparison(
    runs: list[dict[str, object]], path: str | Path, sample: int = 0, overwrite: bool = False, tag: str | None = None
) -> Path:
    """PNG with one row per test resolution: input, truth, then each run's prediction and absolute error.

    With `tag`, a run's predictions from `scripts/evaluate_darcy.py --tag <tag>` (and their errors) are shown where
    it has them (`predictions_<n>-<tag>.npz`, `evaluation-<tag>.json`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resolutions = _resolutions(runs)
    columns = 2 + 2 * len(runs)
    size = (2.2 * columns, 2.7 * len(resolutions))  # room for two-line titles between the rows
    figure, axes = plt.subplots(len(resolutions), columns, figsize=size, squeeze=False)
    for row, resolution in zip(axes, resolutions):
        saved, errors_of, names = [], [], []
        for run in runs:
            folder = Path(run["run_dir"])
            tagged = folder / f"predictions_{resolution}-{tag}.npz" if tag else None
            if tagged is not None and tagged.is_file():
                saved.append(np.load(tagged))
                errors_of.append(json.loads((folder / f"evaluation-{tag}.json").read_text())["test"][str(resolution)])
                names.append(f"{folder.name} [{tag}]")
            else:
                saved.append(np.load(folder / f"predictions_{resolution}.npz"))
                errors_of.append(json.loads((folder / "results.json").read_text())["test"][str(resolution)])
                names.append(folder.name)
        truth = saved[0]["solution"][sample]
        vmin, vmax = float(truth.min()), float(truth.max())
        errors = [np.abs(s["prediction"][sample] - truth) for s in saved]
        error_max = max(float(e.max()) for e in errors)
        row[0].imshow(saved[0]["coefficient"][sample], cmap="gray")
        row[0].set_title(f"a(x), {resolution}x{resolution}", fontsize=8)
        row[1].imshow(truth, cmap="viridis", vmin=vmin, vmax=vmax)
        row[1].set_title("u(x) truth", fontsize=8)
        for i, (name, s, error, metrics) in enumerate(zip(names, saved, errors, errors_of)):
            mse = metrics["relative_mse"]
            row[2 + 2 * i].imshow(s["prediction"][sample], cmap="viridis", vmin=vmin, vmax=vmax)
            row[2 + 2 * i].set_title(f"{name}\n(test rel MSE {mse:.4f})", fontsize=8)
            row[3 + 2 * i].imshow(error, cmap="magma", vmin=0, vmax=error_max)
            row[3 + 2 * i].set_title(f"|error| {name}", fontsize=8)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    with atomic_file(path, overwrite) as staged:
        figure.savefig(staged, dpi=110)
    plt.close(figure)
    return Path(path)


__all__ = ["MissingResultsError", "comparison_table", "load_results", "plot_comparison", "seed_table"]
