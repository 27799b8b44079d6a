"""One recipe for every model of the Pathfinder comparison, and the loop that trains one run under it.

Every model sees the same tensors in the same order (the seed fixes the shuffle, the augmentation and the
initialisation), for the same number of epochs, with the same optimiser and schedule:

- AdamW (betas 0.9, 0.999), linear warm-up then cosine decay to zero over the whole run, gradient norm clipped at 1;
  MANO's projectors (`down`, `up`, a far-field gate) at `projector_learning_rate_scale` times the learning rate;
- optionally the paper's two phases: for the first `projector_warmup_fraction` of the steps only the projectors and
  the head train (the rest frozen; for a model without projectors, the head alone), then every parameter;
- the dihedral group as augmentation (flips and transposes keep a curve a curve, so the label holds);
- every epoch validated; the epoch with the best validation accuracy is the one tested (choices on validation,
  never on test).

The loop is plain torch on tensors held in memory rather than `Trainer`: 32 px images are small enough that a data
loader and image processor would cost more per step than the models themselves on a CPU. A run checkpoints after
every epoch (weights, optimiser, schedule, the generator that draws its batches, its history) and resumes from the
last one exactly: a run stopped and resumed ends where an uninterrupted run ends.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from transformers_mano.utils import atomic_file

from .data import Splits, dihedral
from .models import head_parameter_names, projector_parameter_names


STEMS = ("none", "conv", "cnn")
MANO_LEVELS = ("auto", "global")


@dataclass
class PathfinderRecipe:
    """The training recipe and the transformers' shape, shared by every model of a comparison.

    The defaults are the recipe under which MANO and SwinV2 leave Pathfinder's plateau at 32 px (reports/pathfinder.md):
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
    # a comparison's output folder holding SwinV2 runs: the converted kinds start from the run of the same seed there,
    # turned into MANO by the project's converter
    convert_from: str | None = None
    # learning rate of MANO's projectors (down, up, a far-field gate) as a multiple of `learning_rate`
    projector_learning_rate_scale: float = 1.0
    # the share of the run's steps (from its first) in which only the projectors and the head train
    projector_warmup_fraction: float = 0.0

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
        if self.projector_learning_rate_scale <= 0:
            raise ValueError(
                f"projector_learning_rate_scale must be positive, got {self.projector_learning_rate_scale}"
            )
        if not 0 <= self.projector_warmup_fraction < 1:
            raise ValueError(f"projector_warmup_fraction must be in [0, 1), got {self.projector_warmup_fraction}")
        if self.init_from is not None and self.convert_from is not None:
            raise ValueError("give init_from (continue runs) or convert_from (convert SwinV2 runs), not both")


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float):
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def parameter_groups(model: nn.Module, recipe: PathfinderRecipe) -> list[dict]:
    """AdamW's parameter groups: the projectors at `projector_learning_rate_scale` times the rate, the rest at it."""
    projectors = projector_parameter_names(model)
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in projectors], "lr": recipe.learning_rate},
        {
            "params": [p for n, p in model.named_parameters() if n in projectors],
            "lr": recipe.learning_rate * recipe.projector_learning_rate_scale,
        },
    ]
    return [group for group in groups if group["params"]]


class BackboneFreeze:
    """The first phase of a two-phase run: every parameter but the projectors and the head frozen for `steps`
    optimiser steps (`requires_grad` off, so AdamW neither steps nor decays them and their moments stay empty)."""

    def __init__(self, model: nn.Module, steps: int):
        warm = projector_parameter_names(model) | head_parameter_names(model)
        self.frozen = [parameter for name, parameter in model.named_parameters() if name not in warm]
        self.steps = steps
        self.active = False

    def before_step(self, step: int) -> None:
        """Freeze or release the backbone for optimiser step `step` (0-based)."""
        if (step < self.steps) != self.active:
            self.active = step < self.steps
            for parameter in self.frozen:
                parameter.requires_grad_(not self.active)


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


@dataclass
class Optimisation:
    """What one run's steps need: the optimiser, its schedule, the generator that draws batches and augmentation, and
    the two-phase freeze."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    freeze: BackboneFreeze


def build_optimisation(model: nn.Module, recipe: PathfinderRecipe, total_steps: int, seed: int) -> Optimisation:
    optimizer = torch.optim.AdamW(parameter_groups(model, recipe), weight_decay=recipe.weight_decay)
    scheduler = warmup_cosine(optimizer, total_steps, recipe.warmup_fraction)
    freeze = BackboneFreeze(model, round(total_steps * recipe.projector_warmup_fraction))
    return Optimisation(optimizer, scheduler, torch.Generator().manual_seed(seed), freeze)


def train_epoch(
    model: nn.Module, optimisation: Optimisation, splits: Splits, recipe: PathfinderRecipe, progress: bool = False
) -> float:
    """One pass over the shuffled training set; the mean training loss. Shuffling and augmentation draw from the
    run's generator on the CPU, so a run's batches are the same on every device; each batch then goes to the model's.
    `progress`: a bar over the epoch's batches with the running mean loss (gone when the epoch ends)."""
    images, labels = splits.images["train"], splits.labels["train"]
    device = next(model.parameters()).device
    optimizer, scheduler = optimisation.optimizer, optimisation.scheduler
    order = torch.randperm(len(labels), generator=optimisation.generator)
    losses = []
    starts = range(0, len(order) - recipe.batch_size + 1, recipe.batch_size)  # full batches only
    batches = tqdm(starts, desc="batches", unit="batch", leave=False, disable=not progress)
    for start in batches:
        optimisation.freeze.before_step(scheduler.last_epoch)  # LambdaLR counts the steps taken
        batch = order[start : start + recipe.batch_size]
        inputs = dihedral(images[batch], optimisation.generator) if recipe.augment else images[batch]
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


@dataclass
class RunState:
    """What a run carries from epoch to epoch: the epochs done, their history, the best validation epoch and its
    weights, and the training seconds spent (over every process that ran it)."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0


def save_checkpoint(path: Path, model: nn.Module, optimisation: Optimisation, state: RunState, identity: dict) -> None:
    """Everything a run needs to go on after its last finished epoch, written atomically over the previous one."""
    checkpoint = {
        "identity": identity,
        "state": asdict(state),
        "model": model.state_dict(),
        "optimizer": optimisation.optimizer.state_dict(),
        "scheduler": optimisation.scheduler.state_dict(),
        "generator": optimisation.generator.get_state(),
    }
    with atomic_file(path, overwrite=True) as staged:
        torch.save(checkpoint, staged)


def load_checkpoint(path: Path, model: nn.Module, optimisation: Optimisation, identity: dict) -> RunState:
    """Restore a run from `save_checkpoint`'s file; refuses one written by another run or recipe, naming the field."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    keys = identity.keys() | checkpoint["identity"].keys()
    differing = sorted(key for key in keys if identity.get(key) != checkpoint["identity"].get(key))
    if differing:
        key = differing[0]
        raise ValueError(
            f"{path} belongs to another run: its {key} is {checkpoint['identity'].get(key)!r}, this run's is "
            f"{identity.get(key)!r}; remove the checkpoint to start this run afresh"
        )
    model.load_state_dict(checkpoint["model"])
    optimisation.optimizer.load_state_dict(checkpoint["optimizer"])
    optimisation.scheduler.load_state_dict(checkpoint["scheduler"])
    optimisation.generator.set_state(checkpoint["generator"])
    return RunState(**checkpoint["state"])


def train_epochs(
    model: nn.Module,
    optimisation: Optimisation,
    phases: list[tuple[str, Splits]],
    validation: Splits,
    recipe: PathfinderRecipe,
    state: RunState,
    checkpoint: tuple[Path, dict] | None = None,
    progress: bool = True,
    description: str = "",
) -> RunState:
    """Train the phases' epochs from `state.epochs_done` on, validating after each; after every epoch the state
    (and, given `checkpoint` = (path, the run's identity), a checkpoint) is brought up to date."""
    epochs = tqdm(
        list(enumerate(phases, 1))[state.epochs_done :],
        desc=description,
        disable=not progress,
        initial=state.epochs_done,
        total=len(phases),
    )
    for epoch, (phase, data) in epochs:
        start = time.perf_counter()
        loss = train_epoch(model, optimisation, data, recipe, progress)
        score = accuracy(model, validation.images["validation"], validation.labels["validation"])
        state.seconds += time.perf_counter() - start
        epochs.set_postfix(loss=f"{loss:.3f}", val_acc=f"{score:.3f}")
        state.history.append(
            {
                "epoch": epoch,
                "phase": phase,
                "train_loss": loss,
                "validation_accuracy": score,
                "seconds": state.seconds,
            }
        )
        if score > state.best:
            state.best, state.best_epoch = score, epoch
            state.best_state = copy.deepcopy(model.state_dict())
        state.epochs_done = epoch
        if checkpoint is not None and epoch < len(phases):
            save_checkpoint(checkpoint[0], model, optimisation, state, checkpoint[1])
    return state


__all__ = [
    "BackboneFreeze",
    "Optimisation",
    "PathfinderRecipe",
    "RunState",
    "accuracy",
    "build_optimisation",
    "load_checkpoint",
    "parameter_groups",
    "save_checkpoint",
    "train_epoch",
    "train_epochs",
    "warmup_cosine",
]
