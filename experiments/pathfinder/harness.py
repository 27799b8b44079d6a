"""Pathfinder comparison: MANO, SwinV2, MANO with one level per stage, and a small CNN, trained the same way.

Every model sees the same tensors in the same order (the seed fixes the shuffle, the augmentation and the
initialisation), for the same number of epochs, with the same optimiser and schedule:

- AdamW (betas 0.9, 0.999), linear warm-up then cosine decay to zero, gradient norm clipped at 1;
- the dihedral group as augmentation (flips and transposes keep a curve a curve, so the label holds; `--augment
  false` for data whose labels do not survive it, such as digits);
- the epoch with the best validation accuracy is the one tested (choices on validation, never on test).

The loop is plain torch on tensors held in memory rather than `Trainer`: 32 px images are small enough that the
per-step overhead of a data loader and image processor would cost more than the models themselves on a CPU.
The CNN is the baseline a user would try first and lives here, not in the library; "cnn-stem" is the control for
the transformers' convolutional stem (its four layers and max-pool with a linear head on the average);
"cnn-pooled" is the same nine convolutions with a max-pool after every other one, the CNN a user would try when the
curves outgrow the small one's receptive field (30 px against 138 px). Any saved
image `DatasetDict` with train, validation and test splits serves, and so do the offline digit sets of the
fine-tuning script ("digits", "mnist_5k"); the number of classes comes from the data.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import Swinv2Config, Swinv2ForImageClassification

from transformers_mano.image_classification.data import EMBEDDED_DATASET, MNIST_5K, load_image_classification_splits
from transformers_mano.models.mano.configuration_mano import ManoConfig
from transformers_mano.models.mano.modeling_mano import ManoForImageClassification
from transformers_mano.multipole import coarse_grid_size
from transformers_mano.utils import atomic_file, atomic_write_text
from transformers_mano.utils.machine import machine_info


MODEL_KINDS = ("mano", "swinv2", "mano-one-level", "mano-pool", "mano-pool-init", "cnn", "cnn-pooled", "cnn-stem")
STEMS = ("none", "conv", "cnn")
MANO_LEVELS = ("auto", "global")


@dataclass
class PathfinderRecipe:
    """The training recipe and the transformers' shape, shared by every model of a comparison.

    The defaults are the recipe under which MANO and SwinV2 leave Pathfinder's plateau at 32 px (docs/fine_tuning.md):
    the small CNN's first four layers as a stem, pixel tokens in 4x4 windows, weights initialised at a scale that
    suits the width, and (given `curriculum_dir`, a set of shorter curves) one epoch of easier images first.
    """

    epochs: int = 7
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    train_samples: int | None = None  # the first n training images (None: all)
    augment: bool = True
    # "conv": two 3x3 convolutions at full resolution before the patch embedding; "cnn": the first four layers of
    # the small CNN (3x3 convolutions, batch norm, ReLU) and its 2x2 max-pool, so the transformer sees half the side
    stem: str = "cnn"
    stem_channels: int = 32
    patch_size: int = 1
    window_size: int = 4
    embed_dim: int = 48
    depths: list[int] = field(default_factory=lambda: [2, 2])
    num_heads: list[int] = field(default_factory=lambda: [3, 6])
    # standard deviation of the transformers' initial weights (linear layers, patch embedding, position-bias MLP).
    # transformers' 0.02 suits widths near 768; at width 48 it leaves every GELU near its linear part (inputs of
    # standard deviation ~0.14), a network that starts almost linear and sits on Pathfinder's plateau.
    initializer_range: float = 0.2
    # MANO's levels per stage: "global" (the coarsest grid of every stage is one window, so every layer reaches the
    # whole image: the paper's physics rule) or "auto" (ManoConfig's rule: the coarsest keeps two windows per side)
    mano_levels: str = "global"
    # an easier data set (same image size, e.g. shorter curves) trained on for `curriculum_epochs` before the task
    curriculum_dir: str | None = None
    curriculum_epochs: int = 0
    cnn_channels: int = 32
    # an earlier comparison's output folder: each run starts from the weights it saved for the same model and seed
    # (`<model>-s<seed>.safetensors`), e.g. trained at 32 px and continued at 64 px; the optimiser starts afresh
    init_from: str | None = None

    def __post_init__(self):
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.mano_levels not in MANO_LEVELS:
            raise ValueError(f"mano_levels must be one of {MANO_LEVELS}, got {self.mano_levels!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")
        if self.initializer_range <= 0:
            raise ValueError(f"initializer_range must be positive, got {self.initializer_range}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} need one entry per stage each")
        if (self.curriculum_dir is None) != (self.curriculum_epochs == 0) or self.curriculum_epochs < 0:
            raise ValueError(
                f"a curriculum needs both curriculum_dir and curriculum_epochs >= 1, got {self.curriculum_dir!r} and "
                f"{self.curriculum_epochs}"
            )


class SmallCnn(nn.Module):
    """Nine 3x3 convolutions (batch norm, ReLU), a 2x2 max-pool after those numbered in `pool_after` (default: the
    fourth), global average, linear head.

    At 32 channels this is ~75 k parameters and a receptive field of 30 px: about a 32 px image. With
    `pool_after=(0, 2, 4, 6)` (the "cnn-pooled" kind) the same weights see 138 px, a 128 px image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 32,
        num_labels: int = 2,
        depth: int = 9,
        pool_after: Sequence[int] = (3,),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(depth):
            layers += [
                nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            if index in pool_after:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_labels) logits."""
        return self.classifier(self.features(pixel_values).mean(dim=(2, 3)))


class TransformerClassifier(nn.Module):
    """A transformers image classifier behind an optional convolutional stem; returns the logits tensor."""

    def __init__(self, model: nn.Module, stem: nn.Module | None = None):
        super().__init__()
        self.stem = stem if stem is not None else nn.Identity()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, num_labels) logits."""
        return self.model(pixel_values=self.stem(pixel_values)).logits


def conv_stem(in_channels: int, channels: int) -> nn.Module:
    """Two 3x3 convolutions at full resolution (receptive field 5 px): local curve pieces, no long range."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.GELU(),
    )


def cnn_stem(in_channels: int, channels: int) -> nn.Module:
    """The small CNN's first four layers and its max-pool (receptive field 10 px), halving the image side."""
    return SmallCnn(in_channels, channels, depth=4).features


def build_model(
    kind: str, recipe: PathfinderRecipe, image_size: int, in_channels: int = 1, num_labels: int = 2
) -> nn.Module:
    """One of `MODEL_KINDS` for `image_size` px images with `num_labels` classes."""
    if kind == "cnn":
        return SmallCnn(in_channels, recipe.cnn_channels, num_labels)
    if kind == "cnn-pooled":
        return SmallCnn(in_channels, recipe.cnn_channels, num_labels, pool_after=(0, 2, 4, 6))
    if kind == "cnn-stem":  # the control: what the transformers' "cnn" stem gives with only a linear head on top
        return SmallCnn(in_channels, recipe.stem_channels, num_labels, depth=4)
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
    stem = {"none": None, "conv": conv_stem, "cnn": cnn_stem}[recipe.stem]
    stem = stem(in_channels, recipe.stem_channels) if stem is not None else None
    fields = {
        "image_size": image_size // 2 if recipe.stem == "cnn" else image_size,
        "patch_size": recipe.patch_size,
        "window_size": recipe.window_size,
        "embed_dim": recipe.embed_dim,
        "depths": list(recipe.depths),
        "num_heads": list(recipe.num_heads),
        "num_channels": recipe.stem_channels if stem is not None else in_channels,
        "num_labels": num_labels,
        "drop_path_rate": 0.0,
        "initializer_range": recipe.initializer_range,
    }
    if kind == "swinv2":
        model = Swinv2ForImageClassification(Swinv2Config(**fields))
    else:
        # "mano-pool": MANO's levels with parameter-free projectors (average pooling down, nearest copies up), so
        # it has SwinV2's parameters exactly: what the levels' reach gives without the learned projectors' weights
        # "mano-pool-init": MANO's learned projectors started as that pooling (`up` copies instead of zeros), so it
        # begins as "mano-pool" and not as SwinV2: separates the zero-started `up` from the extra weights
        config = ManoConfig(**fields, projector_type="pool" if kind == "mano-pool" else "conv")
        if kind == "mano-pool-init":
            config.projector_init = "avg_pool_nearest_up"
        if kind == "mano-one-level":
            config.num_levels = [1] * len(recipe.depths)
        elif recipe.mano_levels == "global":
            config.num_levels = global_levels(config)
        model = ManoForImageClassification(config)
    return TransformerClassifier(model, stem)


def global_levels(config: ManoConfig) -> list[int]:
    """Per stage, the fewest levels whose coarsest grid fits in one window at `config.image_size`: every layer's
    far field then spans the whole image."""
    levels = []
    for height, width in config.stage_grid_sizes():
        count = 1
        while max(height, width) > config.window_size:
            height, width = coarse_grid_size(height, width, config.sampling_rate)
            count += 1
        levels.append(count)
    return levels


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_flops(model: nn.Module, image_size: int, in_channels: int = 1) -> int:
    """Floating-point operations of one forward pass on one image (torch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, image_size, image_size))
    model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class Splits:
    """Normalised images (N, 1, H, W) float32 and labels (N,) int64 per split."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    normalization: tuple[float, float] = (0.0, 1.0)  # the (mean, std) the images were normalised with

    @property
    def image_size(self) -> int:
        return int(self.images["train"].shape[-1])

    @property
    def num_labels(self) -> int:
        return int(self.labels["train"].max()) + 1


def open_image_splits(source: str | Path) -> DatasetDict:
    """A `save_to_disk` folder (e.g. of `scripts/make_pathfinder.py`), or an offline preset of the fine-tuning
    script ("digits", "mnist_5k": 32 px, a validation split carved from train as that script does)."""
    if str(source) in (EMBEDDED_DATASET, MNIST_5K):
        return load_image_classification_splits(dataset=str(source))
    data = load_from_disk(str(source))
    if not isinstance(data, DatasetDict) or not {"train", "validation", "test"} <= set(data):
        raise ValueError(f"{source} must hold a DatasetDict with train, validation and test splits")
    return data


def load_splits(
    data_dir: str | Path, train_samples: int | None = None, normalization: tuple[float, float] | None = None
) -> Splits:
    """A data set of `open_image_splits` as tensors, normalised by the training set's mean and deviation (or by a
    given `(mean, std)`, such as the task's for the easier set of a curriculum)."""
    data = open_image_splits(data_dir)
    images, labels = {}, {}
    for split in ("train", "validation", "test"):
        rows = data[split] if split != "train" or train_samples is None else data[split].select(range(train_samples))
        pixels = np.stack([np.asarray(image.convert("L"), dtype=np.float32) for image in rows["image"]])
        images[split] = torch.from_numpy(pixels / 255.0).unsqueeze(1)  # N, 1, H, W
        labels[split] = torch.tensor(rows["label"], dtype=torch.long)
    mean, std = normalization or (float(images["train"].mean()), float(images["train"].std()))
    return Splits({split: (value - mean) / std for split, value in images.items()}, labels, (mean, std))


def dihedral(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each (square) image under a random element of the dihedral group: flip x, flip y, transpose, each 50 %."""
    flips = torch.rand(3, images.shape[0], 1, 1, 1, generator=generator) < 0.5
    images = torch.where(flips[0], images.flip(-1), images)
    images = torch.where(flips[1], images.flip(-2), images)
    return torch.where(flips[2], images.transpose(-1, -2), images)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Share of `images` (kept on the CPU, sent to the model's device a batch at a time) classified as `labels`."""
    model.eval()
    device = next(model.parameters()).device
    correct = sum(
        int((model(images[i : i + batch_size].to(device)).argmax(-1).cpu() == labels[i : i + batch_size]).sum())
        for i in range(0, len(labels), batch_size)
    )
    model.train()
    return correct / len(labels)


def train_epoch(
    model, optimizer, scheduler, splits: Splits, recipe: PathfinderRecipe, generator, progress: bool = False
) -> float:
    """One pass over the shuffled training set; the mean training loss. Shuffling and augmentation draw from
    `generator` on the CPU, so a run's batches are the same on every device; each batch then goes to the model's.
    `progress`: a bar over the epoch's batches with the running mean loss (gone when the epoch ends)."""
    images, labels = splits.images["train"], splits.labels["train"]
    device = next(model.parameters()).device
    order = torch.randperm(len(labels), generator=generator)
    losses = []
    starts = range(0, len(order) - recipe.batch_size + 1, recipe.batch_size)  # full batches only
    batches = tqdm(starts, desc="batches", unit="batch", leave=False, disable=not progress)
    for start in batches:
        batch = order[start : start + recipe.batch_size]
        inputs = dihedral(images[batch], generator) if recipe.augment else images[batch]
        loss = F.cross_entropy(model(inputs.to(device)), labels[batch].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if len(losses) % 10 == 0:
            batches.set_postfix(loss=f"{statistics.fmean(losses):.3f}")
    return statistics.fmean(losses)


def train_and_test(
    kind: str,
    splits: Splits,
    recipe: PathfinderRecipe,
    seed: int,
    progress: bool = True,
    curriculum: Splits | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    transfer: dict[str, Splits] | None = None,
    build_size: int | None = None,
    device: str = "cpu",
) -> tuple[dict, nn.Module]:
    """Train one model under `recipe` (first `recipe.curriculum_epochs` on `curriculum`, then `recipe.epochs` on
    `splits`, one warm-up and cosine schedule over both), from `initial_state` if given; the record (history, best
    validation epoch, test accuracy there, and the test accuracy on each `transfer` data set, other image sizes
    included, with no further training) and the model at its best epoch. Every epoch is validated on the task's
    validation split. `build_size`: the image size the model is built for, if not the data's (that of the run whose
    weights it starts from: the same network, MANO re-planning its levels for the grid it sees). `device`: where
    the model trains and is scored (the data stay on the CPU and go over a batch at a time); it comes back on the CPU."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(kind, recipe, build_size or splits.image_size, num_labels=splits.num_labels)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    flops = count_flops(model, splits.image_size)  # on the CPU, before the model moves
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    phases = [("curriculum", curriculum)] * recipe.curriculum_epochs + [("task", splits)] * recipe.epochs
    steps = sum(len(data.labels["train"]) // recipe.batch_size for _, data in phases)
    scheduler = warmup_cosine(optimizer, steps, recipe.warmup_fraction)
    history, best, best_state, start = [], -1.0, None, time.perf_counter()
    epochs = tqdm(list(enumerate(phases, 1)), desc=f"{kind} seed {seed}", disable=not progress)
    for epoch, (phase, data) in epochs:
        loss = train_epoch(model, optimizer, scheduler, data, recipe, generator, progress)
        validation = accuracy(model, splits.images["validation"], splits.labels["validation"])
        epochs.set_postfix(loss=f"{loss:.3f}", val_acc=f"{validation:.3f}")
        history.append(
            {
                "epoch": epoch,
                "phase": phase,
                "train_loss": loss,
                "validation_accuracy": validation,
                "seconds": time.perf_counter() - start,
            }
        )
        if validation > best:
            best, best_state, best_epoch = validation, copy.deepcopy(model.state_dict()), epoch
    wall = time.perf_counter() - start
    model.load_state_dict(best_state)
    samples_seen = sum(len(data.labels["train"]) // recipe.batch_size * recipe.batch_size for _, data in phases)
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
        "built_for": build_size or splits.image_size,
        "recipe": asdict(recipe),
        "best_epoch": best_epoch,
        "validation_accuracy": best,
        "test_accuracy": accuracy(model, splits.images["test"], splits.labels["test"]),
        "parameters": count_parameters(model),
        "flops": flops,
        "wall_seconds": wall,
        "train_samples": len(splits.labels["train"]),
        "samples_seen": samples_seen,
        "history": history,
        "transfer": transferred,
        "machine": machine_info(device),
    }
    return record, model.to("cpu")


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


def weights_path(folder: str | Path, kind: str, seed: int) -> Path:
    """Where a run of `run_comparison` keeps its model's weights at the best validation epoch."""
    return Path(folder) / f"{kind}-s{seed}.safetensors"


def run_comparison(
    data_dir: str | Path,
    output_dir: str | Path,
    kinds: Sequence[str],
    seeds: Sequence[int],
    recipe: PathfinderRecipe,
    transfer_dirs: Sequence[str | Path] = (),
    device: str = "cpu",
) -> list[dict]:
    """Each model kind at each seed; one `<kind>-s<seed>.json` record and `.safetensors` weights per run in
    `output_dir`, none written over. `transfer_dirs`: data sets (other image sizes, say) whose test splits each
    trained model is also scored on, as it is, under the training set's normalisation. `device`: where the models
    train ("cpu", "cuda", "cuda:1", ...), checked before any data is read."""
    from safetensors.torch import load_file, save_file

    check_device(device)
    output_dir = Path(output_dir)
    planned = [(kind, seed, output_dir / f"{kind}-s{seed}.json") for kind in kinds for seed in seeds]
    for kind, seed, path in planned:
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
        for existing in (path, weights_path(output_dir, kind, seed)):
            if existing.exists():
                raise FileExistsError(f"{existing} exists; choose another --output_dir or remove it")
        if recipe.init_from is not None and not weights_path(recipe.init_from, kind, seed).is_file():
            raise FileNotFoundError(
                f"init_from: {weights_path(recipe.init_from, kind, seed)} is missing; run {kind} seed {seed} there "
                "first (runs save their weights since this option exists)"
            )
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
        initial, build_size = None, None
        if recipe.init_from is not None:
            initial = load_file(weights_path(recipe.init_from, kind, seed))
            build_size = json.loads(Path(recipe.init_from, f"{kind}-s{seed}.json").read_text())["built_for"]
        record, model = train_and_test(
            kind,
            splits,
            recipe,
            seed,
            curriculum=curriculum,
            initial_state=initial,
            transfer=transfer,
            build_size=build_size,
            device=device,
        )
        with atomic_file(weights_path(output_dir, kind, seed)) as staged:
            save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(staged))
        result = {"data_dir": str(data_dir), **record}
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        results.append(result)
    return results


def score_saved_runs(
    folder: str | Path, data_dirs: Sequence[str | Path], models: Sequence[str] | None = None, progress: bool = True
) -> list[dict]:
    """Each run of `folder` that kept its weights (of `models`, if given), scored as trained on the test split of each of `data_dirs` (other
    image sizes, say), the images normalised as the run's training data was. Returns the runs (as `load_runs` does)
    with these scores added to their `transfer` entries, for `transfer_table`; the run files are left as they are."""
    from safetensors.torch import load_file

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


@dataclass
class PathfinderBenchmarkArguments:
    """What to compare and where: the data folder, the models, the seeds and the output folder."""

    data_dir: str = field(metadata={"help": "a folder written by scripts/make_pathfinder.py, or digits / mnist_5k"})
    output_dir: str = field(metadata={"help": "one <model>-s<seed>.json per run is written here, none over another"})
    models: list[str] = field(default_factory=lambda: list(MODEL_KINDS), metadata={"help": f"of {MODEL_KINDS}"})
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)"})
    device: str = field(default="cpu", metadata={"help": "where the models train: cpu, cuda, cuda:1, ..."})
    transfer_dirs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "data folders (other image sizes, say) whose test splits each trained model is also scored on"
        },
    )


__all__ = [
    "MODEL_KINDS",
    "PathfinderBenchmarkArguments",
    "PathfinderRecipe",
    "SmallCnn",
    "TransformerClassifier",
    "build_model",
    "check_device",
    "count_flops",
    "count_parameters",
    "load_splits",
    "open_image_splits",
    "weights_path",
    "dihedral",
    "train_and_test",
    "run_comparison",
    "load_runs",
    "score_saved_runs",
    "summary_table",
    "transfer_table",
    "series_labels",
    "plot_accuracy_against_size",
    "plot_learning_curves",
]
