"""Train and evaluate a neural operator (MANO, FNO or ViT) on Darcy flow with `Trainer`.

One recipe for the three models: the same data, loss (mean relative L2, returned by every model), AdamW with
linear warm-up and cosine decay, batch size, epochs and seed; a validation split carved from `train` (for
choosing the learning rate: the test splits are only read at the end). Baselines are sized to the parameter count
of the MANO of the same arguments. A run folder holds what `Trainer` writes (checkpoints, `trainer_state.json`,
the final model, which `AutoModel.from_pretrained` reloads) and

    results.json            parameters, FLOPs, wall time, machine and its load, the training curve, the final
                            validation metrics and the test metrics at every resolution
    predictions_<n>.npz     the first test samples at resolution n: coefficient, solution, prediction

Metrics per sample: relative L2 `||u_pred - u|| / ||u||` and relative MSE `||u_pred - u||^2 / ||u||^2` (its
square), averaged over samples.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    EvalPrediction,
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import logging as transformers_logging
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType
from transformers.training_args import OptimizerNames

from ..models.mano_operator.configuration_mano_operator import GRID_LAYOUTS, ManoOperatorConfig
from ..models.mano_operator.modeling_mano_operator import ManoOperatorModel
from ..utils import atomic_file, atomic_write_text, flops, machine_info
from ..utils.cli import run_main
from ..utils.run_folder import check_distributed_setup, check_output_dir, resolve_checkpoint
from .baselines import FnoOperatorConfig, FnoOperatorModel, VitOperatorConfig, VitOperatorModel
from .data import grid_layout_of, load_darcy, split_resolutions


logger = logging.getLogger("transformers_mano.physics")

MODEL_KINDS: tuple[str, ...] = ("mano", "fno", "vit")


@dataclass
class DarcyModelArguments:
    """The operator: MANO's size, and how the baselines are sized against it."""

    model: str = field(default="mano", metadata={"help": f"The operator to train: one of {MODEL_KINDS}."})
    hidden_size: int = field(default=64, metadata={"help": "MANO: token width (the baselines match its size)."})
    num_layers: int = field(default=4, metadata={"help": "Blocks (MANO, ViT) or Fourier layers (FNO)."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (MANO, ViT)."})
    head_dim: int | None = field(
        default=None, metadata={"help": "MANO: width of a head (None: hidden_size / num_heads)."}
    )
    intermediate_size: int | None = field(
        default=None, metadata={"help": "MANO: hidden width of the MLPs (None: 2 x hidden_size)."}
    )
    window_size: int = field(default=2, metadata={"help": "MANO: side k of the k x k attention windows."})
    window_stride: int = field(default=1, metadata={"help": "MANO: stride between windows (< k overlaps)."})
    sampling_rate: int = field(default=2, metadata={"help": "MANO: coarsening per side between levels."})
    positional_embedding: str = field(
        default="grid",
        metadata={"help": "MANO: 'grid' (the (y, x) coordinates, as the baselines see them) or 'none' (as released)."},
    )
    attention_resolution: str = field(
        default="train",
        metadata={
            "help": "MANO: the grid side its attention runs at on any input grid (the input resampled there "
            "and back): 'train' (the training grid's side), an integer, or 'none' (every grid as "
            "given, the stencils then see finer spacings than trained on)."
        },
    )
    grid_layout: str | None = field(
        default=None,
        metadata={
            "help": "MANO: where the data's grid points sit, 'corners' or 'strided' (None: from --data; "
            "folders: corners)."
        },
    )
    fno_modes: int = field(default=8, metadata={"help": "FNO: Fourier modes kept per axis."})
    match_parameters: int | None = field(
        default=None,
        metadata={"help": "Baselines: parameter count to match (None: the MANO of these arguments)."},
    )

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"--model must be one of {MODEL_KINDS}, got {self.model!r}")
        if self.attention_resolution not in ("train", "none") and not self.attention_resolution.isdigit():
            raise ValueError(
                f"--attention_resolution must be 'train', 'none' or a grid side, got {self.attention_resolution!r}"
            )
        if self.grid_layout not in (None, *GRID_LAYOUTS):
            raise ValueError(f"--grid_layout must be one of {GRID_LAYOUTS}, got {self.grid_layout!r}")

    def attention_side(self, train_resolution: int) -> int | None:
        """`ManoOperatorConfig.attention_resolution` of a run trained at `train_resolution`."""
        if self.attention_resolution == "none":
            return None
        return train_resolution if self.attention_resolution == "train" else int(self.attention_resolution)


@dataclass
class DarcyDataArguments:
    """Which Darcy data: a named set or your own files, and the validation split carved from `train`."""

    data: str = field(
        default="neuralop_darcy_16",
        metadata={
            "help": "neuralop_darcy_16 (train 16x16, tests 16 and 32; downloads neuraloperator's 0.3.0 wheel from "
            "PyPI with pip unless --data_source is given), grf_darcy_<n> (generated), a folder written by "
            "DatasetDict.save_to_disk, or a PDEBench 2-D Darcy .hdf5 file."
        },
    )
    data_source: str | None = field(
        default=None,
        metadata={
            "help": "neuralop_darcy_16 only: a neuraloperator 0.2.0/0.3.0 wheel or folder to read the files "
            "from (None: pip downloads the 0.3.0 wheel from PyPI)."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Data cache (None: the datasets cache)."})
    num_train: int | None = field(default=None, metadata={"help": "Keep the first training samples (None: all)."})
    num_test: int | None = field(default=None, metadata={"help": "Test samples per resolution (None: all)."})
    validation_size: int = field(default=100, metadata={"help": "Training samples held out for validation."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the validation split (kept apart from --seed)."})
    dataset_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of generated data (grf_darcy_<n>) and of the held-out PDEBench test set "
            "(not TrainingArguments.data_seed, which seeds the sampler)."
        },
    )
    train_resolution: int = field(default=16, metadata={"help": "PDEBench files: training grid side."})
    test_resolutions: list[int] = field(
        default_factory=lambda: [16, 32], metadata={"help": "PDEBench files: test grid sides."}
    )


@dataclass
class DarcyTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults of the Darcy protocol (docs/darcy.md), and a few run options."""

    output_dir: str | None = field(default=None, metadata={"help": "Run folder (None: out/darcy/<model>)."})
    do_train: bool = field(default=True, metadata={"help": "Train: a Darcy run always does (false is refused)."})
    num_train_epochs: float = field(default=100.0, metadata={"help": "Training epochs."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    optim: OptimizerNames | str = field(
        default="adamw_torch", metadata={"help": "Optimizer (the fused AdamW takes no complex weights, as FNO's)."}
    )
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Batch size per process."})
    per_device_eval_batch_size: int = field(default=50, metadata={"help": "Evaluation batch size."})
    lr_scheduler_type: SchedulerType | str = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warm-up."}
    )
    warmup_steps: float = field(default=0.05, metadata={"help": "Linear warm-up: steps, or a fraction of all."})
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When to evaluate on the validation split."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When to write a checkpoint (for resuming)."}
    )
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept."})
    logging_strategy: IntervalStrategy | str = field(default="epoch", metadata={"help": "When to log the loss."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into a non-empty --output_dir (else refused, unless resuming)."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (None: torch's choice)."})
    num_saved_predictions: int = field(default=4, metadata={"help": "Test samples saved per resolution."})


# --- models ---------------------------------------------------------------------------------------------------


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable real parameters; a complex weight (FNO's spectral weights) counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


def flops_per_sample(model: torch.nn.Module, resolution: int, in_channels: int = 1) -> int:
    """Forward FLOPs of one channel-last sample (1, resolution, resolution, in_channels): `count_flops` on a random
    field (the count depends on its shape only)."""
    return flops.count_flops(model, torch.rand(1, resolution, resolution, in_channels))


def mano_config(
    args: DarcyModelArguments, normalization: dict[str, float] | None = None, grid: dict[str, object] | None = None
) -> ManoOperatorConfig:
    """The MANO operator of a run (head width hidden / heads and MLP 2 x hidden unless given); `grid` holds its
    `attention_resolution` and `grid_layout`."""
    return ManoOperatorConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        head_dim=args.head_dim or args.hidden_size // args.num_heads,
        intermediate_size=args.intermediate_size or 2 * args.hidden_size,
        window_size=args.window_size,
        window_stride=args.window_stride,
        sampling_rate=args.sampling_rate,
        positional_embedding=args.positional_embedding,
        **(grid or {}),
        **(normalization or {}),
    )


def _closest_width(build: Callable[[int], PreTrainedModel], target: int, widths: range) -> int:
    """The width whose model's parameter count is closest to `target` (counts grow with the width)."""
    best_gap, best_width = None, None
    for width in widths:
        with torch.device("meta"):
            parameters = count_parameters(build(width))
        gap = abs(parameters - target)
        if best_gap is None or gap < best_gap:
            best_gap, best_width = gap, width
        if parameters > target:
            break
    return best_width


def build_operator(
    args: DarcyModelArguments,
    normalization: dict[str, float] | None = None,
    seed: int = 0,
    grid: dict[str, object] | None = None,
) -> PreTrainedModel:
    """The model of a run, initialised from `seed`; baselines take the width closest to the MANO parameter count.
    `grid`: MANO's `attention_resolution` and `grid_layout` (see `mano_config`)."""
    normalization = normalization or {}
    if args.model == "mano":
        config = mano_config(args, normalization, grid)
        build = None
    else:
        target = args.match_parameters
        if target is None:
            with torch.device("meta"):
                target = count_parameters(ManoOperatorModel(mano_config(args)))
        if args.model == "fno":

            def build(width: int) -> PreTrainedModel:
                return FnoOperatorModel(
                    FnoOperatorConfig(
                        hidden_channels=width,
                        num_modes=args.fno_modes,
                        num_hidden_layers=args.num_layers,
                        **normalization,
                    )
                )

            width = _closest_width(build, target, range(4, 513, 2))
        else:

            def build(width: int) -> PreTrainedModel:
                return VitOperatorModel(
                    VitOperatorConfig(
                        hidden_size=width,
                        num_hidden_layers=args.num_layers,
                        num_attention_heads=args.num_heads,
                        intermediate_size=2 * width,
                        **normalization,
                    )
                )

            width = _closest_width(build, target, range(args.num_heads, 1025, args.num_heads))
    torch.manual_seed(seed)
    return ManoOperatorModel(config) if build is None else build(width)


# --- data -----------------------------------------------------------------------------------------------------


def field_statistics(train: Dataset) -> dict[str, float]:
    """Normalisation of inputs and outputs fitted on the training split (a zero std becomes 1)."""
    data = train.with_format("numpy")
    coefficient = np.asarray(data["coefficient"], dtype=np.float64)
    solution = np.asarray(data["solution"], dtype=np.float64)
    stats = {
        "input_mean": float(coefficient.mean()),
        "input_std": float(coefficient.std()) or 1.0,
        "output_mean": float(solution.mean()),
        "output_std": float(solution.std()) or 1.0,
    }
    return stats


def collate_fields(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack examples into channel-last `input_fields` and `labels`, each (B, n, n, 1)."""
    return {
        "input_fields": torch.stack([torch.as_tensor(e["coefficient"]) for e in examples])[..., None],
        "labels": torch.stack([torch.as_tensor(e["solution"]) for e in examples])[..., None],
    }


def prepare_splits(data_args: DarcyDataArguments) -> DatasetDict:
    """`train`, `validation` (carved from train) and every `test_<n>` split, formatted as float32 tensors."""
    data = load_darcy(
        data_args.data,
        data_args.cache_dir,
        data_args.data_source,
        data_args.num_train,
        data_args.num_test,
        data_args.dataset_seed,
        data_args.train_resolution,
        data_args.test_resolutions,
    )
    train = data["train"]
    if not 0 < data_args.validation_size < len(train):
        raise ValueError(
            f"--validation_size must be in [1, {len(train) - 1}] for {len(train)} training samples, "
            f"got {data_args.validation_size}"
        )
    carved = train.train_test_split(test_size=data_args.validation_size, seed=data_args.split_seed)
    splits = DatasetDict(train=carved["train"], validation=carved["test"])
    for split in data:
        if split.startswith("test_"):
            splits[split] = data[split]
    return splits.with_format("torch", dtype=torch.float32)


# --- metrics --------------------------------------------------------------------------------------------------


def relative_errors(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean over samples of the relative L2 error and of its square (the relative MSE), in float64."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    squared = ((predictions - targets) ** 2).sum(1) / np.maximum((targets**2).sum(1), np.finfo(np.float64).tiny)
    return {"relative_l2": float(np.sqrt(squared).mean()), "relative_mse": float(squared.mean())}


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """`Trainer`'s metrics from the predicted fields (B, n, n, C) and the target fields."""
    predictions = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return relative_errors(predictions, prediction.label_ids)


class WallClockCallback(TrainerCallback):
    """Training wall time, apart from the evaluations that `Trainer` interleaves."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self._start: float | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.train_seconds += time.perf_counter() - self._start
            self._start = None


# --- a run ----------------------------------------------------------------------------------------------------


def default_output_dir(model_args: DarcyModelArguments) -> str:
    return os.path.join("out", "darcy", model_args.model)


def run_darcy(
    model_args: DarcyModelArguments,
    data_args: DarcyDataArguments,
    training_args: DarcyTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, object]:
    """Train one operator, evaluate it at every test resolution, write the run folder; returns `results.json`.

    The steps: check the arguments, prepare the data, build and describe the model, train, validate and test, write
    the record. `callbacks` are added to `Trainer`'s. Under `torchrun` (with `--use_cpu true` on a machine without
    GPUs) the processes train one model with DistributedDataParallel and the first one writes the folder."""
    checkpoint = check_darcy_arguments(training_args)
    machine_before = machine_info(str(training_args.device))
    with training_args.main_process_first(desc="Darcy data"):  # one process generates and caches, the others read
        splits = prepare_splits(data_args)
    model = build_run_model(model_args, data_args, splits, seed=training_args.seed)
    results = describe_run(model, model_args, data_args, splits)
    clock = WallClockCallback()
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=collate_fields,
        compute_metrics=compute_metrics,
        callbacks=[clock, *callbacks],
    )
    results |= train_and_save(trainer, clock, checkpoint)
    results |= validate_and_test(trainer, splits)
    results |= {
        "history": trainer.state.log_history,
        "arguments": {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "training": training_args.to_sanitized_dict(),
        },
        "machine": machine_before,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    if trainer.is_world_process_zero():
        atomic_write_text(
            Path(training_args.output_dir) / "results.json", json.dumps(results, indent=2, default=str), overwrite=True
        )
    return results


def train_resolution(splits: DatasetDict) -> int:
    """The grid side of the training split's fields."""
    return int(splits["train"][0]["coefficient"].shape[-1])


def build_run_model(
    model_args: DarcyModelArguments, data_args: DarcyDataArguments, splits: DatasetDict, seed: int
) -> PreTrainedModel:
    """The operator of a run (`build_operator`, initialised from `seed`) with the normalisation fitted on the
    training split; MANO's attention resolution follows the training grid's side and its grid layout the data's."""
    grid = {
        "attention_resolution": model_args.attention_side(train_resolution(splits)),
        "grid_layout": model_args.grid_layout or grid_layout_of(data_args.data),
    }
    return build_operator(model_args, field_statistics(splits["train"]), seed=seed, grid=grid)


def describe_run(
    model: PreTrainedModel, model_args: DarcyModelArguments, data_args: DarcyDataArguments, splits: DatasetDict
) -> dict[str, object]:
    """The first entries of `results.json`: the model, the data, the training grid side, the split sizes, the
    parameter count and the forward FLOPs of one training sample (logged too)."""
    resolution = train_resolution(splits)
    parameters, sample_flops = count_parameters(model), flops_per_sample(model, resolution)
    logger.info(
        f"{type(model).__name__}: {parameters:,} parameters, {sample_flops / 1e6:.1f} MFLOPs per {resolution}x"
        f"{resolution} sample; train {len(splits['train'])}, validation {len(splits['validation'])}"
    )
    return {
        "model": model_args.model,
        "model_class": type(model).__name__,
        "data": data_args.data,
        "train_resolution": resolution,
        "num_train": len(splits["train"]),
        "num_validation": len(splits["validation"]),
        "parameters": parameters,
        "flops_per_sample": sample_flops,
    }


def train_and_save(trainer: Trainer, clock: WallClockCallback, checkpoint: str | None) -> dict[str, object]:
    """Train (resuming from `checkpoint` if given), save the final model and `Trainer`'s state; the training entries
    of `results.json`: epochs, learning rate, seed, the wall time of `train` and that of its epochs alone (`clock`,
    one of the trainer's callbacks: evaluations apart)."""
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - start
    trainer.save_model()
    trainer.save_state()
    return {
        "epochs": train_result.metrics.get("epoch", trainer.args.num_train_epochs),
        "learning_rate": trainer.args.learning_rate,
        "seed": trainer.args.seed,
        "train_wall_s": wall,
        "train_loop_s": clock.train_seconds,
    }


def validate_and_test(trainer: Trainer, splits: DatasetDict) -> dict[str, object]:
    """The `validation` metrics of the trained model and its `test` metrics at every resolution (with the first
    predictions saved in the run folder, see `test_at_every_resolution`)."""
    validation = trainer.evaluate(metric_key_prefix="validation")
    tests = test_at_every_resolution(
        trainer, splits, Path(trainer.args.output_dir), trainer.args.num_saved_predictions
    )
    return {
        "validation": {key.removeprefix("validation_"): value for key, value in validation.items()},
        "test": tests,
    }


def check_darcy_arguments(training_args: DarcyTrainingArguments) -> str | None:
    """Refuse what cannot run, set what a Darcy run needs of `Trainer`; the checkpoint to resume from, if any."""
    if training_args.num_threads:
        torch.set_num_threads(training_args.num_threads)
    if not training_args.do_train:
        raise ValueError(
            "a Darcy run trains (--do_train false): to evaluate a finished run, use scripts/evaluate_darcy.py"
        )
    check_distributed_setup(training_args)
    training_args.remove_unused_columns = False  # the collator reads `coefficient` and `solution`
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # nothing to pin for: keeps torch's warning away
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False  # every parameter of the three models has a gradient
    check_output_dir(training_args)
    return resolve_checkpoint(training_args)


def test_at_every_resolution(
    trainer: Trainer, splits: DatasetDict, output_dir: Path, num_saved_predictions: int
) -> dict[str, dict[str, float]]:
    """Metrics (and wall time) on each `test_<n>` split; the first predictions saved as `predictions_<n>.npz`."""
    tests = {}
    for test_resolution in split_resolutions(splits):
        test = splits[f"test_{test_resolution}"]
        start_eval = time.perf_counter()
        predicted = trainer.predict(test, metric_key_prefix="test")
        metrics = {key.removeprefix("test_"): value for key, value in predicted.metrics.items()}
        metrics["wall_s"] = time.perf_counter() - start_eval
        metrics["num_samples"] = len(test)
        tests[str(test_resolution)] = metrics
        keep = slice(0, num_saved_predictions)
        predictions = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
        if trainer.is_world_process_zero():
            with atomic_file(output_dir / f"predictions_{test_resolution}.npz", overwrite=True) as staged:
                with staged.open("wb") as handle:
                    np.savez_compressed(
                        handle,
                        coefficient=test["coefficient"][keep].numpy(),
                        solution=test["solution"][keep].numpy(),
                        prediction=predictions[keep, ..., 0],
                    )
        logger.info(
            f"test {test_resolution}x{test_resolution}: relative L2 {metrics['relative_l2']:.4f}, "
            f"relative MSE {metrics['relative_mse']:.5f}"
        )
    return tests


def __getattr__(name: str) -> object:
    """`count_flops`: this module's name for `flops_per_sample` until `utils.flops.count_flops` (one forward call on
    given inputs) took the name; experiments/speed/darcy_step.py still imports it from here. Goes when it calls
    `flops_per_sample`."""
    if name == "count_flops":
        return flops_per_sample
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ARGUMENT_CLASSES = (DarcyModelArguments, DarcyDataArguments, DarcyTrainingArguments)


def parse_arguments(argv: Sequence[str] | None = None):
    """The three argument dataclasses from `argv` (default `sys.argv[1:]`), or from one `.json` file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES, description=__doc__.split("\n\n")[0])
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    # TrainingArguments would fill an unset output_dir with its own "trainer_output": default to out/darcy/<model>
    model_args, _, _ = parser.parse_args_into_dataclasses(args=argv)
    return parser.parse_args_into_dataclasses(args=["--output_dir", default_output_dir(model_args), *argv])


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    model_args, data_args, training_args = parse_arguments(argv)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    transformers_logging.set_verbosity(training_args.get_process_log_level())
    return run_darcy(model_args, data_args, training_args)


__all__ = [
    "MODEL_KINDS",
    "DarcyDataArguments",
    "DarcyModelArguments",
    "DarcyTrainingArguments",
    "build_operator",
    "collate_fields",
    "compute_metrics",
    "count_parameters",
    "field_statistics",
    "flops_per_sample",
    "main",
    "mano_config",
    "parse_arguments",
    "prepare_splits",
    "relative_errors",
    "run_darcy",
]

if __name__ == "__main__":  # how scripts/sweep_darcy.py starts each run
    sys.exit(run_main(main))
