"""Which parameters train: full fine-tuning, linear probing, MANO projector warm-up, and warm-up then full.

The MANO paper converts SwinV2 weights and first trains only the new multipole projectors (`ManoLayer.down` and
`.up`) with the classifier, then fine-tunes everything. `projectors_then_full` does both phases in one run;
`scale_projector_learning_rate` gives the projectors a learning rate of their own (`ManoTrainer` applies it).
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..models.mano.modeling_mano import ManoPreTrainedModel


logger = logging.getLogger(__name__)

TRAIN_MODES = ("full", "linear_probe", "projectors", "projectors_then_full")
HEAD_MODULE_NAME = "classifier"


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the classification head's parameters (`classifier.*`, as SwinV2 and MANO name it)."""
    names = {name for name, _ in model.named_parameters() if name.split(".")[0] == HEAD_MODULE_NAME}
    if not names:
        raise ValueError(f"{type(model).__name__} has no {HEAD_MODULE_NAME!r} head with parameters to train")
    return names


def projector_parameter_names(model: nn.Module) -> set[str]:
    """Names of MANO's learned `down`/`up` projector weights (`ManoPreTrainedModel.projector_parameter_names`);
    empty for SwinV2 models and parameter-free (pool) projectors."""
    if isinstance(model, ManoPreTrainedModel):
        return set(model.projector_parameter_names())
    return set()


def trainable_parameter_names(model: nn.Module, train_mode: str) -> set[str]:
    """Parameters that train in `train_mode`; for `projectors_then_full`, those of the warm-up phase."""
    if train_mode not in TRAIN_MODES:
        raise ValueError(f"--train_mode must be one of {TRAIN_MODES}, got {train_mode!r}")
    if train_mode == "full":
        return {name for name, _ in model.named_parameters()}
    if train_mode == "linear_probe":
        return head_parameter_names(model)
    projectors = projector_parameter_names(model)
    if not projectors:
        raise ValueError(
            f"--train_mode {train_mode} trains MANO's down/up projectors, but {type(model).__name__} has none "
            "(a SwinV2 model, a MANO model with projector_type='pool', or one planned with a single level); "
            "use --train_mode full or linear_probe"
        )
    return projectors | head_parameter_names(model)


def apply_train_mode(model: nn.Module, train_mode: str) -> set[str]:
    """Freeze every parameter outside `train_mode`'s set (`requires_grad=False`) and return the trainable names.

    `projectors_then_full` leaves every parameter trainable here, so the optimizer and a distributed wrapper see
    them all; `ProjectorWarmupCallback` then keeps the backbone still during the warm-up epochs.
    """
    trainable = trainable_parameter_names(model, train_mode)
    if train_mode == "projectors_then_full":
        return trainable
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    return trainable


def scale_projector_learning_rate(optimizer: torch.optim.Optimizer, model: nn.Module, scale: float) -> None:
    """Give MANO's projectors (`down`, `up`, a far-field gate) `scale` times their group's learning rate: each of the
    optimizer's groups that holds some is split in two, the projectors moving to a copy of the group at the scaled
    rate (weight decay and the rest unchanged). Call it before the first step and before the schedule is built."""
    if scale <= 0:
        raise ValueError(f"--projector_learning_rate_scale must be positive, got {scale}")
    names = projector_parameter_names(model)
    if scale == 1 or not names:
        return
    projectors = {id(param) for name, param in model.named_parameters() if name in names}
    for group in list(optimizer.param_groups):
        moved = [param for param in group["params"] if id(param) in projectors]
        if not moved:
            continue
        group["params"] = [param for param in group["params"] if id(param) not in projectors]
        if not group["params"]:
            optimizer.param_groups.remove(group)
        settings = {key: value for key, value in group.items() if key != "params"}
        optimizer.add_param_group({**settings, "params": moved, "lr": group["lr"] * scale})


class ProjectorWarmupCallback(TrainerCallback):
    """Train only the projectors and the head for the first `warmup_epochs` epochs, then every parameter.

    During the warm-up the other parameters' gradients are zeroed as they are computed (so gradient clipping and
    the distributed all-reduce see the warm-up gradients only) and dropped before the optimizer step (so AdamW
    neither decays those weights nor starts their moments). Parameters keep `requires_grad=True` throughout: a
    `DistributedDataParallel` wrapper is built once and must see the same parameters in both phases. The phase
    follows `state.epoch`, which a resumed run restores from its checkpoint.
    """

    def __init__(self, model: nn.Module, warmup_epochs: float) -> None:
        if warmup_epochs < 0:
            raise ValueError(f"--projector_warmup_epochs must be >= 0, got {warmup_epochs}")
        self.warmup_epochs = warmup_epochs
        warm = trainable_parameter_names(model, "projectors")
        self.frozen = [param for name, param in model.named_parameters() if name not in warm]
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    def in_warmup(self, state: TrainerState) -> bool:
        """Whether the step about to run belongs to the warm-up phase."""
        return (state.epoch or 0.0) < self.warmup_epochs

    def _freeze(self) -> None:
        if not self.hooks:
            self.hooks = [param.register_hook(torch.zeros_like) for param in self.frozen]

    def _unfreeze(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.in_warmup(state):
            logger.info(f"Projector warm-up until epoch {self.warmup_epochs}: backbone and embeddings frozen")
            self._freeze()

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.hooks and not self.in_warmup(state):
            logger.info(f"Epoch {state.epoch:.2f}: projector warm-up done, fine-tuning every parameter")
            self._unfreeze()

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.hooks:
            for param in self.frozen:
                param.grad = None

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._unfreeze()


__all__ = [
    "TRAIN_MODES",
    "ProjectorWarmupCallback",
    "apply_train_mode",
    "head_parameter_names",
    "projector_parameter_names",
    "scale_projector_learning_rate",
    "trainable_parameter_names",
]
