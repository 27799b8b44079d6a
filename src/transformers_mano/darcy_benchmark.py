"""Train, evaluate and compare neural operators on Darcy flow (the logic behind scripts/*_darcy.py).

One recipe for every model: same data, same loss (mean relative L2), AdamW with the same learning rate, weight
decay, batch size, epochs and cosine schedule, the same seed. Each run writes to its output folder

    results.json            parameters, wall time, machine, training curve, test metrics at every resolution
    predictions_<n>.npz     the first test samples at resolution n: coefficient, solution, prediction
    model files             `save_pretrained` (MANO: loads with `AutoModel.from_pretrained`) or
                            `model.safetensors` + `operator.json` (baselines: loads with `load_operator`)

Metrics per test sample: relative L2 `||u_pred - u|| / ||u||` and relative MSE `||u_pred - u||^2 / ||u||^2`
(its square), averaged over samples.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .benchmark import machine_info
from .baselines import FieldNormalization, FNOOperator, GlobalAttentionOperator
from .configuration_mano_operator import ManoOperatorConfig
from .darcy import as_tensors, load_darcy, split_resolutions
from .modeling_mano_operator import ManoOperatorModel, ManoOperatorOutput, relative_l2

MODEL_KINDS: tuple[str, ...] = ("mano", "fno", "vit")


@dataclass
class DarcyRunArguments:
    """Arguments of one training run (the CLI of scripts/train_darcy.py)."""

    model: str = field(default="mano", metadata={"help": f"one of {MODEL_KINDS}"})
    data: str = field(default="neuralop_darcy_16", metadata={"help": "neuralop_darcy_16 or grf_darcy_<n>"})
    output_dir: str = field(default="out/darcy", metadata={"help": "run folder; refused if it exists"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output_dir"})
    data_source: str | None = field(default=None, metadata={"help": "neuraloperator wheel or folder (else pip)"})
    cache_dir: str | None = field(default=None, metadata={"help": "data cache (default: datasets cache)"})
    num_train: int | None = field(default=None, metadata={"help": "training samples (default: all / 1000)"})
    num_test: int | None = field(default=None, metadata={"help": "test samples per resolution"})
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = field(default=0.05, metadata={"help": "linear warm-up, then cosine decay to 0"})
    seed: int = 0
    time_budget_s: float | None = field(
        default=None, metadata={"help": "safety stop: end training after the epoch that crosses this wall time"}
    )
    device: str = "cpu"
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)"})
    hidden_size: int = field(default=64, metadata={"help": "MANO width (baselines match its parameter count)"})
    num_layers: int = 4
    num_heads: int = 4
    window_size: int = 2
    window_stride: int = 1
    sampling_rate: int = 2
    positional_embedding: str = field(default="none", metadata={"help": "MANO: none (official) or grid"})
    fno_modes: int = 8
    match_parameters: int | None = field(
        default=None, metadata={"help": "baseline parameter target (default: the MANO of these arguments)"}
    )
    num_saved_predictions: int = 4


def count_parameters(model: nn.Module) -> int:
    """Trainable real parameters; a complex weight (FNO's spectral weights) counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def mano_config(args: DarcyRunArguments, normalization: FieldNormalization | None = None) -> ManoOperatorConfig:
    """The MANO operator of a run: head dim hidden / heads, feed-forward 2 x hidden."""
    norm = (normalization or FieldNormalization()).to_dict()
    return ManoOperatorConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        head_dim=args.hidden_size // args.num_heads,
        intermediate_size=2 * args.hidden_size,
        window_size=args.window_size,
        window_stride=args.window_stride,
        sampling_rate=args.sampling_rate,
        positional_embedding=args.positional_embedding,
        **norm,
    )


def _closest_width(build, target: int, widths: range) -> tuple[nn.Module, int]:
    """The model of `build(width)` whose parameter count is closest to `target` (counts grow with the width)."""
    best = None
    for width in widths:
        model = build(width)
        parameters = count_parameters(model)
        gap = abs(parameters - target)
        if best is None or gap < best[0]:
            best = (gap, model, width)
        if parameters > target:
            break
    return best[1], best[2]


def build_operator(
    args: DarcyRunArguments, normalization: FieldNormalization | None = None
) -> tuple[nn.Module, dict[str, object]]:
    """The model of a run and a description of it; baselines are sized to match the MANO parameter count."""
    torch.manual_seed(args.seed)
    normalization = normalization or FieldNormalization()
    if args.model == "mano":
        model = ManoOperatorModel(mano_config(args, normalization))
        return model, {"config": model.config.to_diff_dict()}
    target = args.match_parameters or count_parameters(ManoOperatorModel(mano_config(args)))
    torch.manual_seed(args.seed)
    if args.model == "fno":
        build = lambda width: FNOOperator(hidden_channels=width, n_modes=args.fno_modes,  # noqa: E731
                                          n_layers=args.num_layers, normalization=normalization)  # fmt: skip
        model, _ = _closest_width(build, target, range(8, 257, 2))
    elif args.model == "vit":
        build = lambda width: GlobalAttentionOperator(hidden_size=width, num_layers=args.num_layers,  # noqa: E731
            num_heads=args.num_heads, intermediate_size=2 * width, normalization=normalization)  # fmt: skip
        model, _ = _closest_width(build, target, range(args.num_heads, 513, args.num_heads))
    else:
        raise ValueError(f"--model must be one of {MODEL_KINDS}, got {args.model!r}")
    torch.manual_seed(args.seed)  # the chosen width, freshly initialised from the run's seed
    model = type(model)(**model.hparams, normalization=normalization)
    return model, {"hparams": model.hparams, "parameter_target": target}


def predict(model: nn.Module, input_fields: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C_in) -> (B, H, W, C_out) for any operator here."""
    output = model(input_fields)
    return output.predictions if isinstance(output, ManoOperatorOutput) else output


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 32, device: str = "cpu"
) -> tuple[dict[str, float], torch.Tensor]:
    """Mean relative L2 and relative MSE over (N, H, W, C) samples, and the (N, H, W, C) predictions."""
    model.eval()
    predictions = torch.cat(
        [predict(model, inputs[i : i + batch_size].to(device)).cpu() for i in range(0, len(inputs), batch_size)]
    )
    errors = relative_l2(predictions, targets)
    return {"relative_l2": errors.mean().item(), "relative_mse": errors.pow(2).mean().item()}, predictions


def lr_at(step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate: linear warm-up over `warmup` steps, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_operator(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    args: DarcyRunArguments,
    evaluation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[dict[str, float]]:
    """Minimise the mean relative L2 error on (N, H, W, C) pairs; one history entry per epoch."""
    device = torch.device(args.device)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(inputs) / args.batch_size)
    total = args.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total, max(1, int(args.warmup_fraction * total)))
    )
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    start = time.perf_counter()
    for epoch in tqdm(range(args.epochs), desc=f"train {args.model}", disable=None):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        running = 0.0
        for i in range(0, len(inputs), args.batch_size):
            batch = order[i : i + args.batch_size]
            x, y = inputs[batch].to(device), targets[batch].to(device)
            loss = relative_l2(predict(model, x), y).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(batch)
        entry = {"epoch": epoch + 1, "train_relative_l2": running / len(inputs), "wall_s": time.perf_counter() - start}
        if evaluation is not None:
            entry["eval_relative_l2"] = evaluate(model, *evaluation, device=args.device)[0]["relative_l2"]
        history.append(entry)
        if args.time_budget_s is not None and entry["wall_s"] > args.time_budget_s:
            break  # the cosine schedule was planned for args.epochs: results.json records the epochs run
    return history


def save_operator(model: nn.Module, directory: Path, kind: str) -> None:
    """MANO: `save_pretrained` (config, safetensors, remote code). Baselines: `model.safetensors` + `operator.json`."""
    if isinstance(model, ManoOperatorModel):
        model.save_pretrained(directory)
        return
    state = {name: value for name, value in model.state_dict().items() if isinstance(value, torch.Tensor)}
    save_file({name: value.contiguous() for name, value in state.items()}, str(directory / "model.safetensors"))
    description = {"model": kind, "hparams": model.hparams, "normalization": model.normalization.to_dict()}
    (directory / "operator.json").write_text(json.dumps(description, indent=2))


def load_operator(directory: str | Path) -> nn.Module:
    """Any operator saved by `save_operator`, in eval mode."""
    directory = Path(directory)
    if (directory / "operator.json").is_file():
        description = json.loads((directory / "operator.json").read_text())
        cls = {"fno": FNOOperator, "vit": GlobalAttentionOperator}[description["model"]]
        model = cls(**description["hparams"], normalization=description["normalization"])
        missing, unexpected = model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
        missing = [name for name in missing if not name.endswith("_metadata")]
        if missing or unexpected:
            raise ValueError(f"{directory}: missing weights {missing}, unexpected weights {unexpected}")
        return model.eval()
    return ManoOperatorModel.from_pretrained(directory).eval()


def prepare_output_dir(output_dir: str | Path, overwrite: bool) -> tuple[Path, Path]:
    """(final path, temporary sibling to write into); refuses an existing output_dir unless `overwrite`."""
    final = Path(output_dir)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; pass --overwrite to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    return final, Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def commit_output_dir(tmp: Path, final: Path) -> None:
    """Move a finished run into place: the old folder (if any, with --overwrite) is removed only now."""
    if final.exists():
        backup = final.with_name(f".{final.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        final.rename(backup)
        tmp.rename(final)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        tmp.rename(final)


def run_darcy(args: DarcyRunArguments) -> dict[str, object]:
    """Train one model on one data set, evaluate at every test resolution, write the run folder; its results."""
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    final, tmp = prepare_output_dir(args.output_dir, args.overwrite)
    try:
        data = load_darcy(args.data, args.cache_dir, args.data_source, args.num_train, args.num_test, args.seed)
        train_x, train_y = as_tensors(data["train"])
        normalization = FieldNormalization.fit(train_x, train_y)
        model, description = build_operator(args, normalization)
        parameters = count_parameters(model)
        print(f"{args.model}: {parameters:,} parameters, train {tuple(train_x.shape)}")
        start = time.perf_counter()
        history = train_operator(model, train_x, train_y, args)
        train_wall = time.perf_counter() - start
        tests = {}
        for resolution in split_resolutions(data):
            test_x, test_y = as_tensors(data[f"test_{resolution}"])
            start = time.perf_counter()
            metrics, predictions = evaluate(model, test_x, test_y, device=args.device)
            metrics["eval_wall_s"] = time.perf_counter() - start
            metrics["num_samples"] = len(test_x)
            tests[str(resolution)] = metrics
            keep = slice(0, args.num_saved_predictions)
            np.savez_compressed(
                tmp / f"predictions_{resolution}.npz",
                coefficient=test_x[keep, ..., 0].numpy(),
                solution=test_y[keep, ..., 0].numpy(),
                prediction=predictions[keep, ..., 0].numpy(),
            )
            print(f"  test {resolution}x{resolution}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        results = {
            "model": args.model,
            "data": args.data,
            "train_resolution": int(train_x.shape[1]),
            "num_train": len(train_x),
            "parameters": parameters,
            "epochs": len(history),
            "epochs_planned": args.epochs,
            "train_wall_s": train_wall,
            "test": tests,
            "history": history,
            "normalization": normalization.to_dict(),
            "model_description": description,
            "arguments": asdict(args),
            "machine": machine_info("cuda" if torch.cuda.is_available() else "cpu"),
        }
        save_operator(model.cpu(), tmp, args.model)
        (tmp / "results.json").write_text(json.dumps(results, indent=2, default=str))
        commit_output_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results


# --- comparison -------------------------------------------------------------------------------------------------


def load_results(run_dirs: list[str | Path]) -> list[dict[str, object]]:
    """`results.json` of each run folder, with its folder under `run_dir`."""
    runs = []
    for run_dir in run_dirs:
        results = json.loads((Path(run_dir) / "results.json").read_text())
        results["run_dir"] = str(run_dir)
        runs.append(results)
    return runs


def comparison_table(runs: list[dict[str, object]]) -> str:
    """A Markdown table: one row per run, relative L2 and MSE at every test resolution, size, epochs, wall time."""
    resolutions = sorted({int(r) for run in runs for r in run["test"]})
    header = ["run", "model", "params", "epochs", "train wall (s)"]
    for resolution in resolutions:
        header += [f"rel L2 @{resolution}", f"rel MSE @{resolution}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        row = [Path(run["run_dir"]).name, run["model"], f"{run['parameters']:,}", str(run["epochs"]),
               f"{run['train_wall_s']:.0f}"]  # fmt: skip
        for resolution in resolutions:
            metrics = run["test"].get(str(resolution))
            row += [f"{metrics['relative_l2']:.4f}", f"{metrics['relative_mse']:.5f}"] if metrics else ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_comparison(runs: list[dict[str, object]], path: str | Path, sample: int = 0) -> Path:
    """PNG per test resolution (rows): input, truth, then each run's prediction and absolute error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    resolutions = sorted({int(r) for run in runs for r in run["test"]})
    columns = 2 + 2 * len(runs)
    figure, axes = plt.subplots(len(resolutions), columns, figsize=(2.2 * columns, 2.4 * len(resolutions)), squeeze=False)
    for row, resolution in zip(axes, resolutions):
        saved = [np.load(Path(run["run_dir"]) / f"predictions_{resolution}.npz") for run in runs]
        truth = saved[0]["solution"][sample]
        vmin, vmax = float(truth.min()), float(truth.max())
        errors = [np.abs(s["prediction"][sample] - truth) for s in saved]
        error_max = max(float(e.max()) for e in errors)
        row[0].imshow(saved[0]["coefficient"][sample], cmap="gray")
        row[0].set_title(f"a(x), {resolution}x{resolution}", fontsize=8)
        row[1].imshow(truth, cmap="viridis", vmin=vmin, vmax=vmax)
        row[1].set_title("u(x) truth", fontsize=8)
        for i, (run, s, error) in enumerate(zip(runs, saved, errors)):
            name = Path(run["run_dir"]).name
            rel = run["test"][str(resolution)]["relative_l2"]
            row[2 + 2 * i].imshow(s["prediction"][sample], cmap="viridis", vmin=vmin, vmax=vmax)
            row[2 + 2 * i].set_title(f"{name}\n(test rel L2 {rel:.3f})", fontsize=8)
            row[3 + 2 * i].imshow(error, cmap="magma", vmin=0, vmax=error_max)
            row[3 + 2 * i].set_title(f"|error| {name}", fontsize=8)
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return path


__all__ = [
    "MODEL_KINDS",
    "DarcyRunArguments",
    "build_operator",
    "commit_output_dir",
    "comparison_table",
    "count_parameters",
    "evaluate",
    "load_operator",
    "load_results",
    "lr_at",
    "mano_config",
    "plot_comparison",
    "predict",
    "prepare_output_dir",
    "run_darcy",
    "save_operator",
    "train_operator",
]
