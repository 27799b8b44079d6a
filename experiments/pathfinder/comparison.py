"""The Pathfinder comparison: runs of several model kinds and seeds under one recipe, each with its record.

Each run writes `<model>-s<seed>.json` (recipe, history, best validation epoch, test accuracy there, parameters,
FLOPs, samples seen, wall time, machine and its load, the code's commit) and `<model>-s<seed>.safetensors` (the
weights at the best validation epoch) into the output folder, never over existing ones. While it trains, a run keeps
`<model>-s<seed>.checkpoint.pt` there; `resume=True` continues an interrupted run from it (and skips finished runs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from transformers_mano.utils import atomic_file, atomic_write_text
from transformers_mano.utils.machine import machine_info

from .data import Splits, load_splits
from .models import (
    CONVERTED_STARTS,
    MODEL_KINDS,
    build_model,
    convert_swinv2_run,
    count_flops,
    count_parameters,
)
from .training import (
    PathfinderRecipe,
    RunState,
    accuracy,
    build_optimisation,
    load_checkpoint,
    train_epochs,
)


def weights_path(folder: str | Path, kind: str, seed: int) -> Path:
    """Where a run of `run_comparison` keeps its model's weights at the best validation epoch."""
    return Path(folder) / f"{kind}-s{seed}.safetensors"


def checkpoint_path(folder: str | Path, kind: str, seed: int) -> Path:
    """Where an unfinished run keeps what it needs to resume after its last finished epoch."""
    return Path(folder) / f"{kind}-s{seed}.checkpoint.pt"


def code_version() -> str | None:
    """The commit of the code that runs (with "-dirty" when it has uncommitted changes), or None outside git."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return described.stdout.strip() or None


def check_device(device: str) -> torch.device:
    """`device` as a torch device, or a ValueError that says why it cannot train there."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...): {error}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA device")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here")
    return parsed


def starting_model(kind: str, recipe: PathfinderRecipe, seed: int, splits: Splits) -> tuple[nn.Module, int, dict]:
    """The model a run starts from, the image size it is built for, and where its weights come from: a fresh
    initialisation (seeded), the weights of the same kind and seed in `recipe.init_from`, or (converted kinds) the
    SwinV2 run of the same seed in `recipe.convert_from`, converted."""
    from safetensors.torch import load_file

    torch.manual_seed(seed)
    source_folder = recipe.init_from or (recipe.convert_from if kind in CONVERTED_STARTS else None)
    if source_folder is None:
        if kind in CONVERTED_STARTS:
            raise ValueError(f"{kind} is a SwinV2 run converted to MANO: give convert_from, a folder of swinv2 runs")
        return build_model(kind, recipe, splits.image_size, num_labels=splits.num_labels), splits.image_size, {}
    source_kind = "swinv2" if recipe.init_from is None else kind
    record = json.loads(Path(source_folder, f"{source_kind}-s{seed}.json").read_text())
    model = build_model(source_kind, recipe, record["built_for"], num_labels=splits.num_labels)
    model.load_state_dict(load_file(weights_path(source_folder, source_kind, seed)))
    if recipe.init_from is not None:
        return model, record["built_for"], {"init_from": str(recipe.init_from)}
    model, conversion = convert_swinv2_run(model, kind, recipe, record["built_for"])
    return (
        model,
        record["built_for"],
        {"converted_from": str(weights_path(source_folder, "swinv2", seed)), **conversion},
    )


def train_and_test(
    kind: str,
    splits: Splits,
    recipe: PathfinderRecipe,
    seed: int,
    progress: bool = True,
    curriculum: Splits | None = None,
    transfer: dict[str, Splits] | None = None,
    device: str = "cpu",
    checkpoint: Path | None = None,
    identity: dict | None = None,
) -> tuple[dict, nn.Module]:
    """Train one model under `recipe` (first `recipe.curriculum_epochs` on `curriculum`, then `recipe.epochs` on
    `splits`, one warm-up and cosine schedule over both) from `starting_model`; the record (history, best validation
    epoch, test accuracy there, and the test accuracy on each `transfer` data set, other image sizes included, as
    trained) and the model at its best epoch, back on the CPU. `checkpoint`: a file to resume from when it exists and
    to write after every epoch (with the run's `identity`, checked on resume)."""
    model, build_size, origin = starting_model(kind, recipe, seed, splits)
    flops = count_flops(model, splits.image_size)  # on the CPU, before the model moves
    model.to(device)
    phases = [("curriculum", curriculum)] * recipe.curriculum_epochs + [("task", splits)] * recipe.epochs
    total_steps = sum(len(data.labels["train"]) // recipe.batch_size for _, data in phases)
    optimisation = build_optimisation(model, recipe, total_steps, seed)
    state = RunState()
    if checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, optimisation, identity or {})
    saving = (checkpoint, identity or {}) if checkpoint is not None else None
    state = train_epochs(
        model, optimisation, phases, splits, recipe, state, saving, progress, description=f"{kind} seed {seed}"
    )
    model.load_state_dict(state.best_state)
    transferred = {
        name: {
            "image_size": data.image_size,
            "test_accuracy": accuracy(model, data.images["test"], data.labels["test"]),
        }
        for name, data in (transfer or {}).items()
    }
    record = {
        "model": kind,
        "seed": seed,
        "image_size": splits.image_size,
        "built_for": build_size,
        "recipe": asdict(recipe),
        "start": origin,
        "best_epoch": state.best_epoch,
        "validation_accuracy": state.best,
        "test_accuracy": accuracy(model, splits.images["test"], splits.labels["test"]),
        "parameters": count_parameters(model),
        "flops": flops,
        "wall_seconds": state.seconds,
        "train_samples": len(splits.labels["train"]),
        "samples_seen": sum(len(data.labels["train"]) // recipe.batch_size * recipe.batch_size for _, data in phases),
        "history": state.history,
        "transfer": transferred,
        "machine": machine_info(device),
        "code": code_version(),
    }
    return record, model.to("cpu")


def plan_runs(
    output_dir: Path, kinds: Sequence[str], seeds: Sequence[int], recipe: PathfinderRecipe, resume: bool
) -> list[tuple[str, int, Path]]:
    """The (kind, seed, record path) of each run to do, every file conflict named before any work: a finished run
    is skipped under `resume` and refused otherwise, and so is an unfinished run's checkpoint."""
    planned = []
    for kind in kinds:
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
        for seed in seeds:
            path = output_dir / f"{kind}-s{seed}.json"
            if resume and path.exists() and weights_path(output_dir, kind, seed).exists():
                continue
            for existing in (path, weights_path(output_dir, kind, seed)):
                if existing.exists():
                    raise FileExistsError(f"{existing} exists; choose another --output_dir or remove it")
            if checkpoint_path(output_dir, kind, seed).exists() and not resume:
                raise FileExistsError(
                    f"{checkpoint_path(output_dir, kind, seed)} holds an unfinished run: --resume true continues it, "
                    "or remove it to start afresh"
                )
            check_sources(kind, seed, recipe)
            planned.append((kind, seed, path))
    return planned


def check_sources(kind: str, seed: int, recipe: PathfinderRecipe) -> None:
    """The files a run starts from exist (the weights of `init_from`, or the SwinV2 run a converted kind needs)."""
    if recipe.init_from is not None:
        source = weights_path(recipe.init_from, kind, seed)
    elif kind in CONVERTED_STARTS:
        if recipe.convert_from is None:
            raise ValueError(f"{kind} is a SwinV2 run converted to MANO: give convert_from, a folder of swinv2 runs")
        source = weights_path(recipe.convert_from, "swinv2", seed)
    else:
        return
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: run it there first (a run saves its weights when it ends)")


def run_comparison(
    data_dir: str | Path,
    output_dir: str | Path,
    kinds: Sequence[str],
    seeds: Sequence[int],
    recipe: PathfinderRecipe,
    transfer_dirs: Sequence[str | Path] = (),
    device: str = "cpu",
    resume: bool = False,
) -> list[dict]:
    """Each model kind at each seed; one `<kind>-s<seed>.json` record and `.safetensors` weights per run in
    `output_dir`, none written over. `transfer_dirs`: data sets (other image sizes, say) whose test splits each
    trained model is also scored on, as it is, under the training set's normalisation. `device`: where the models
    train ("cpu", "cuda", "cuda:1", ...), checked before any data is read. `resume`: continue unfinished runs from
    their checkpoints and skip finished ones (whose records are not returned)."""
    from safetensors.torch import save_file

    check_device(device)
    output_dir = Path(output_dir)
    planned = plan_runs(output_dir, kinds, seeds, recipe, resume)
    splits = load_splits(data_dir, recipe.train_samples)
    curriculum = None
    if recipe.curriculum_dir is not None:
        curriculum = load_splits(recipe.curriculum_dir, recipe.train_samples, normalization=splits.normalization)
        if curriculum.image_size != splits.image_size or curriculum.num_labels != splits.num_labels:
            raise ValueError(
                f"the curriculum's images ({curriculum.image_size} px, {curriculum.num_labels} classes) must match "
                f"the task's ({splits.image_size} px, {splits.num_labels} classes)"
            )
    transfer = {str(folder): load_splits(folder, normalization=splits.normalization) for folder in transfer_dirs}
    results = []
    for kind, seed, path in planned:
        identity = {"model": kind, "seed": seed, "data_dir": str(data_dir), **asdict(recipe)}
        checkpoint = checkpoint_path(output_dir, kind, seed)
        record, model = train_and_test(
            kind, splits, recipe, seed, True, curriculum, transfer, device, checkpoint, identity
        )
        with atomic_file(weights_path(output_dir, kind, seed)) as staged:
            save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(staged))
        result = {"data_dir": str(data_dir), **record}
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        checkpoint.unlink(missing_ok=True)
        results.append(result)
    return results


def score_saved_runs(
    folder: str | Path, data_dirs: Sequence[str | Path], models: Sequence[str] | None = None, progress: bool = True
) -> list[dict]:
    """Each run of `folder` that kept its weights (of `models`, if given), scored as trained on the test split of
    each of `data_dirs` (other image sizes, say), the images normalised as the run's training data was. Returns the
    runs (as `load_runs` does) with these scores added to their `transfer` entries; the run files are left as they are."""
    from safetensors.torch import load_file

    from .results import load_runs

    runs = [
        run
        for run in load_runs([folder])
        if weights_path(folder, run["model"], run["seed"]).is_file() and (models is None or run["model"] in models)
    ]
    if not runs:
        raise FileNotFoundError(
            f"{folder} holds no run with its weights (<model>-s<seed>.json and .safetensors)"
            + (f" of the models {list(models)}" if models else "")
        )
    cache: dict[tuple, Splits] = {}

    def splits_of(data_dir, normalization=None) -> Splits:
        if (str(data_dir), normalization) not in cache:
            cache[str(data_dir), normalization] = load_splits(data_dir, normalization=normalization)
        return cache[str(data_dir), normalization]

    for run in tqdm(runs, desc="scoring", disable=not progress):
        model = build_model(run["model"], PathfinderRecipe(**run["recipe"]), run.get("built_for", run["image_size"]))
        model.load_state_dict(load_file(weights_path(folder, run["model"], run["seed"])))
        normalization = splits_of(run["data_dir"]).normalization  # recomputed from the training split, as the run did
        for data_dir in data_dirs:
            data = splits_of(data_dir, normalization)
            run.setdefault("transfer", {})[str(data_dir)] = {
                "image_size": data.image_size,
                "test_accuracy": accuracy(model, data.images["test"], data.labels["test"]),
            }
    return runs


@dataclass
class PathfinderBenchmarkArguments:
    """What to compare and where: the data folder, the models, the seeds and the output folder."""

    data_dir: str = field(metadata={"help": "a folder written by scripts/make_pathfinder.py, or digits / mnist_5k"})
    output_dir: str = field(metadata={"help": "one <model>-s<seed>.json per run is written here, none over another"})
    models: list[str] = field(
        default_factory=lambda: [kind for kind in MODEL_KINDS if kind not in CONVERTED_STARTS],
        metadata={"help": f"of {MODEL_KINDS} (the converted kinds need --convert_from or --init_from)"},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)"})
    device: str = field(default="cpu", metadata={"help": "where the models train: cpu, cuda, cuda:1, ..."})
    transfer_dirs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "data folders (other image sizes, say) whose test splits each trained model is also scored on"
        },
    )
    resume: bool = field(
        default=False,
        metadata={"help": "continue unfinished runs of --output_dir from their checkpoints; skip finished ones"},
    )


__all__ = [
    "PathfinderBenchmarkArguments",
    "check_device",
    "checkpoint_path",
    "code_version",
    "plan_runs",
    "run_comparison",
    "score_saved_runs",
    "starting_model",
    "train_and_test",
    "weights_path",
]
