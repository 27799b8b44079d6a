"""Forward FLOPs of a model on given inputs, as torch's `FlopCounterMode` counts them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@contextmanager
def attention_on_tensor_path(model: nn.Module) -> Iterator[None]:
    """Within the block, every configuration in `model` with an `attention_kernel` field (the MANO operator's) says
    `"torch"`; each is put back after, also on an error.

    The FLOP counter cannot see inside the operator's fused CPU kernel (a ctypes call, no torch operator), so a count
    through it would miss the attention's products; its tensor path computes the same function with torch operators.
    Once the kernel is a torch custom operator with a registered FLOP formula, this switch can go.
    """
    found = (getattr(module, "config", None) for module in model.modules())
    configs = {id(config): config for config in found if config is not None}  # the operator's layers share one
    switched = {key: config.attention_kernel for key, config in configs.items() if hasattr(config, "attention_kernel")}
    try:
        for key in switched:
            configs[key].attention_kernel = "torch"
        yield
    finally:
        for key, kernel in switched.items():
            configs[key].attention_kernel = kernel


def count_flops(model: nn.Module, example_inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Floating-point operations of one forward call `model(*example_inputs)`, counted by `FlopCounterMode`.

    The counter counts 2 per multiply-add of the matrix products, convolutions and attention (pointwise operations
    not counted), so the count depends on the shapes of `example_inputs` only, not on their values: pass one sample
    (batch of 1) for FLOPs per sample, in the layout the model takes (e.g. (1, C, H, W) for an image classifier,
    (1, H, W, C) for the operators' fields). The call runs without gradients, in eval mode (the model's mode is
    restored afterwards, module by module) and with the MANO operator on its tensor path (see
    `attention_on_tensor_path`). A model that computes a table once and keeps it (the position bias of MANO's
    SwinV2 family on its SDPA path, kept when computed without gradients) has it counted on its first call only:
    count a fresh model to compare it with one that computes the table on every call, as SwinV2 does.
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    modes = [(module, module.training) for module in model.modules()]
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with attention_on_tensor_path(model), torch.no_grad(), counter:
            model(*inputs)
    finally:
        for module, training in modes:
            module.training = training
    return int(counter.get_total_flops())


__all__ = ["attention_on_tensor_path", "count_flops"]
