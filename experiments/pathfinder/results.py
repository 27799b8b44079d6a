"""Reading the comparison's run records back: summary tables, the transfer table and the plots of reports/pathfinder.md."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from transformers_mano.utils import atomic_file


def load_runs(folders: Sequence[str | Path]) -> list[dict]:
    """Every `<model>-s<seed>.json` of `folders` (written by `run_comparison`), with its folder as `run_dir`."""
    runs = []
    for folder in map(Path, folders):
        paths = sorted(folder.glob("*-s*.json"))
        if not paths:
            raise FileNotFoundError(f"{folder} holds no <model>-s<seed>.json runs of scripts/benchmark_pathfinder.py")
        runs += [{**json.loads(path.read_text()), "run_dir": str(folder)} for path in paths]
    return runs


def _mean_spread(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [value * scale for value in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def summary_table(runs: Sequence[dict]) -> str:
    """A markdown table: one row per folder, image size and model; accuracies as mean ± half-range over seeds, and
    the machine's 1-minute load average at the end of each run (other jobs slow the wall times)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["run_dir"], run["image_size"], run["model"]), []).append(run)
    header = [
        "runs",
        "px",
        "model",
        "seeds",
        "test acc (%)",
        "val acc (%)",
        "best epoch",
        "params",
        "MFLOPs/image",
        "wall (s/run)",
        "load",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (folder, size, model), members in groups.items():
        lines.append(
            "| "
            + " | ".join(
                [
                    Path(folder).name,
                    str(size),
                    model,
                    ",".join(str(run["seed"]) for run in members),
                    _mean_spread([run["test_accuracy"] for run in members], 100),
                    _mean_spread([run["validation_accuracy"] for run in members], 100),
                    ",".join(str(run["best_epoch"]) for run in members),
                    f"{members[0]['parameters']:,}",
                    f"{members[0]['flops'] / 1e6:.1f}",
                    _mean_spread([run["wall_seconds"] for run in members], digits=0),
                    ",".join(f"{run['machine']['load_average_1min']:.1f}" for run in members),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def transfer_table(runs: Sequence[dict]) -> str:
    """A markdown table of the runs scored on other data sets as trained (`transfer_dirs`): per folder, image size
    and model, the test accuracy on its own test split and on each other one, by image size; "" if none was."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if run.get("transfer"):
            groups.setdefault((run["run_dir"], run["image_size"], run["model"]), []).append(run)
    if not groups:
        return ""
    sizes = sorted(
        {scored["image_size"] for members in groups.values() for run in members for scored in run["transfer"].values()}
    )
    header = ["runs", "trained at (px)", "model", "seeds", "test acc there (%)"]
    header += [f"test acc at {size} px, as trained (%)" for size in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (folder, size, model), members in groups.items():
        cells = [
            Path(folder).name,
            str(size),
            model,
            ",".join(str(run["seed"]) for run in members),
            _mean_spread([run["test_accuracy"] for run in members], 100),
        ]
        for other in sizes:
            scores = [
                s["test_accuracy"] for run in members for s in run["transfer"].values() if s["image_size"] == other
            ]
            cells.append(_mean_spread(scores, 100) if len(scores) == len(members) else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def series_labels(runs: Sequence[dict]) -> list[str]:
    """The plots' name of each run's series: its model; where the same model at the same image size was run in
    more than one folder (a recipe variant, e.g. another patch size), the runs of every folder after the first
    (in the order given) carry the folder's name too, so the first folders' runs still form one line over sizes."""
    folders: dict[tuple, list] = {}
    for run in runs:
        folders.setdefault((run["model"], run["image_size"]), [])
        if run["run_dir"] not in folders[run["model"], run["image_size"]]:
            folders[run["model"], run["image_size"]].append(run["run_dir"])
    return [
        run["model"]
        if folders[run["model"], run["image_size"]][0] == run["run_dir"]
        else f"{run['model']} ({Path(run['run_dir']).name})"
        for run in runs
    ]


def plot_accuracy_against_size(runs: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    """PNG: test accuracy (mean, bars for the seed range) against image size, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    labels = series_labels(runs)
    colors = plt.get_cmap("tab20").colors  # more series than the default cycle's ten colours
    for index, label in enumerate(dict.fromkeys(labels)):
        series = [run for run, run_label in zip(runs, labels) if run_label == label]
        sizes = sorted({run["image_size"] for run in series})
        values = [[100 * run["test_accuracy"] for run in series if run["image_size"] == size] for size in sizes]
        means = [statistics.fmean(v) for v in values]
        spread = [[m - min(v) for m, v in zip(means, values)], [max(v) - m for m, v in zip(means, values)]]
        axis.errorbar(sizes, means, yerr=spread, marker="o", capsize=3, label=label, color=colors[index % len(colors)])
    axis.axhline(50, color="gray", linestyle=":", linewidth=1, label="chance")
    axis.set_xscale("log", base=2)
    sizes = sorted({run["image_size"] for run in runs})
    axis.set_xticks(sizes, [str(size) for size in sizes])
    axis.minorticks_off()
    axis.set_xlabel("image size (px)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("Pathfinder", fontsize=10)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the lines, not over them
    figure.tight_layout()
    with atomic_file(path, overwrite) as staged:
        figure.savefig(staged, dpi=110)
    plt.close(figure)
    return Path(path)


def plot_learning_curves(runs: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    """PNG: validation accuracy after each epoch, one panel per image size, one line per run (colour by model,
    dashes by seed); curriculum epochs shaded. Shows when each model leaves the plateau."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({run["image_size"] for run in runs})
    labels = series_labels(runs)
    colours = {label: f"C{index}" for index, label in enumerate(dict.fromkeys(labels))}
    figure, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.5), squeeze=False, sharey=True)
    for axis, size in zip(axes[0], sizes):
        size_runs = [(run, label) for run, label in zip(runs, labels) if run["image_size"] == size]
        for run, label in size_runs:
            epochs = [entry["epoch"] for entry in run["history"]]
            accuracy = [100 * entry["validation_accuracy"] for entry in run["history"]]
            axis.plot(
                epochs,
                accuracy,
                color=colours[label],
                linestyle=("-", "--", ":", "-.")[run["seed"] % 4],
                marker=".",
                label=f"{label} s{run['seed']}",
            )
        curriculum = max(sum(entry.get("phase") == "curriculum" for entry in run["history"]) for run, _ in size_runs)
        if curriculum:
            axis.axvspan(0.5, curriculum + 0.5, color="gray", alpha=0.12, label="curriculum")
        axis.axhline(50, color="gray", linestyle=":", linewidth=1)
        axis.set_title(f"Pathfinder {size} px", fontsize=10)
        axis.set_xlabel("epoch")
        axis.set_xticks(range(1, max(len(run["history"]) for run, _ in size_runs) + 1))  # whole epochs, even one
    axes[0][0].set_ylabel("validation accuracy (%)")
    legend = {}  # every panel's series once (a model run at one size only has its lines in one panel)
    for axis in axes[0]:
        handles, names = axis.get_legend_handles_labels()
        legend.update({name: handle for name, handle in zip(names, handles) if name not in legend})
    axes[0][-1].legend(legend.values(), legend.keys(), fontsize=7)
    figure.tight_layout()
    with atomic_file(path, overwrite) as staged:
        figure.savefig(staged, dpi=110)
    plt.close(figure)
    return Path(path)


__all__ = [
    "load_runs",
    "plot_accuracy_against_size",
    "plot_learning_curves",
    "series_labels",
    "summary_table",
    "transfer_table",
]
