"""The Darcy protocol as one command: a learning-rate sweep per model chosen on validation, then more seeds.

1. Every model trains at every learning rate with the first seed.
2. Per model, the learning rate with the lowest final *validation* relative MSE (a split carved from `train`; the
   test splits play no part in the choice) is kept.
3. Every model trains at its chosen rate with the other seeds.
4. `summary.md` / `summary.json` hold the chosen runs side by side (mean ± half-range over seeds) and every run.

Each run is `python -m transformers_mano.physics.training` in its own process and folder
(`<output_dir>/<model><tag>-lr<lr>-s<seed>`, its log beside it), `jobs` at a time with one torch thread each. A
finished run (its `results.json` exists) is not run again, so the sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..utils import atomic_write_text
from .compare import comparison_table, load_results, seed_table
from .training import MODEL_KINDS


@dataclass
class SweepArguments:
    """The protocol: models, learning rates, seeds, and what every run shares."""

    output_dir: str = field(default="out/darcy-protocol", metadata={"help": "Folder of all runs and the summary."})
    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS), metadata={"help": "Models to train."})
    learning_rates: list[float] = field(
        default_factory=lambda: [1e-3, 3e-3, 1e-2], metadata={"help": "Learning rates swept with the first seed."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Seeds; the first picks the rate."})
    jobs: int = field(default=2, metadata={"help": "Runs at a time (each with one torch thread)."})
    tag: str = field(
        default="", metadata={"help": "Name of a variant, in its run names (e.g. nopos: mano-nopos-...)."}
    )
    run_args: str = field(
        default="", metadata={"help": "Arguments for every run of scripts/train_darcy.py, as one string."}
    )

    def __post_init__(self) -> None:
        unknown = [model for model in self.models if model not in MODEL_KINDS]
        if unknown:
            raise ValueError(f"--models takes {MODEL_KINDS}, got {unknown}")
        if not self.learning_rates or not self.seeds:
            raise ValueError("--learning_rates and --seeds need at least one value each")


def run_name(model: str, tag: str, learning_rate: float, seed: int) -> str:
    """`<model>[-<tag>]-lr<learning rate>-s<seed>`, e.g. `mano-nopos-lr0.001-s1`."""
    return f"{model}{'-' + tag if tag else ''}-lr{learning_rate:g}-s{seed}"


def launch(run_dir: Path, model: str, learning_rate: float, seed: int, run_args: Sequence[str]) -> Path:
    """One training run in a subprocess (skipped when finished); returns its folder. Its output goes to a log."""
    if (run_dir / "results.json").is_file():
        return run_dir
    resume = ["--resume_from_checkpoint", "last"] if any(run_dir.glob("checkpoint-*")) else ["--overwrite_output_dir"]
    # the sweep's own arguments come last: they win over the same ones in `run_args`
    command = [
        sys.executable,
        "-m",
        "transformers_mano.physics.training",
        *run_args,
        "--model",
        model,
        "--learning_rate",
        str(learning_rate),
        "--seed",
        str(seed),
        "--output_dir",
        str(run_dir),
        "--num_threads",
        "1",
        "--disable_tqdm",
        "true",
        *resume,
    ]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with (run_dir.parent / f"{run_dir.name}.log").open("a") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode:
        raise RuntimeError(f"run {run_dir.name} failed (exit {finished.returncode}); see {run_dir.name}.log")
    return run_dir


def _run_all(jobs: list[tuple], args: SweepArguments, run_args: list[str], description: str) -> list[Path]:
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(jobs), desc=description) as bar:
        futures = [
            pool.submit(launch, Path(args.output_dir) / run_name(m, args.tag, lr, s), m, lr, s, run_args)
            for m, lr, s in jobs
        ]
        done = []
        for future in futures:
            done.append(future.result())
            bar.update()
    return done


def best_learning_rates(runs: list[dict[str, object]]) -> dict[str, float]:
    """Per model, the learning rate of the run with the lowest final validation relative MSE."""
    best: dict[str, dict] = {}
    for run in runs:
        model = run["model"]
        if model not in best or run["validation"]["relative_mse"] < best[model]["validation"]["relative_mse"]:
            best[model] = run
    return {model: run["learning_rate"] for model, run in best.items()}


def run_protocol(args: SweepArguments) -> dict[str, object]:
    """Run (or resume) the sweep and the extra seeds; write and return the summary."""
    import shlex

    run_args = shlex.split(args.run_args)
    first, others = args.seeds[0], args.seeds[1:]
    sweep = [(model, lr, first) for model in args.models for lr in args.learning_rates]
    sweep_runs = load_results(_run_all(sweep, args, run_args, "learning-rate sweep"))
    chosen = best_learning_rates(sweep_runs)
    seeds = [(model, chosen[model], seed) for model in args.models for seed in others]
    seed_runs = load_results(_run_all(seeds, args, run_args, "other seeds")) if seeds else []
    selected = [run for run in sweep_runs if run["learning_rate"] == chosen[run["model"]]] + seed_runs
    summary = {
        "chosen_learning_rates": chosen,
        "runs": [run["run_dir"] for run in sweep_runs + seed_runs],
        "selected_runs": [run["run_dir"] for run in selected],
    }
    suffix = f"-{args.tag}" if args.tag else ""
    text = (
        f"# Darcy protocol{suffix}\n\nLearning rate per model, chosen on validation: {chosen}\n\n"
        f"## Chosen runs, mean ± half-range over seeds {args.seeds}\n\n"
        f"{seed_table(selected, label=lambda run: run['model'] + suffix)}\n\n"
        f"## Every run\n\n{comparison_table(sweep_runs + seed_runs)}\n"
    )
    output_dir = Path(args.output_dir)
    atomic_write_text(output_dir / f"summary{suffix}.md", text, overwrite=True)
    atomic_write_text(output_dir / f"summary{suffix}.json", json.dumps(summary, indent=2), overwrite=True)
    print(text)
    return summary


__all__ = ["SweepArguments", "best_learning_rates", "launch", "run_name", "run_protocol"]
