"""`count_flops`: what it counts, the state it leaves the model in, and the MANO operator counted on its tensor path."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transformers_mano import ManoOperatorConfig, ManoOperatorModel
from transformers_mano.models.mano_operator.window_kernel import kernel_library
from transformers_mano.physics.training import DarcyModelArguments, build_operator, flops_per_sample
from transformers_mano.utils import count_flops


class Recorder(nn.Module):
    """A linear layer that records the mode and the gradient setting of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 3)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.linear(x) if y is None else self.linear(x) + self.linear(y)


def test_counts_two_per_multiply_add_of_one_call() -> None:
    """A (B, 5) @ (5, 3) product is B * 5 * 3 multiply-adds: 2 * B * 15 FLOPs (the bias add is not counted)."""
    model = Recorder()
    assert count_flops(model, torch.rand(1, 5)) == 2 * 15
    assert count_flops(model, torch.rand(4, 5)) == 2 * 4 * 15
    assert count_flops(model, (torch.rand(1, 5), torch.rand(1, 5))) == 2 * 2 * 15  # positional inputs, as a tuple


def test_counts_in_eval_mode_without_gradients_and_restores_every_module_mode() -> None:
    model = Recorder()
    model.train()
    model.linear.eval()  # a submodule in another mode than its parent keeps it
    count_flops(model, torch.rand(1, 5))
    assert model.calls == [(False, False)]
    assert model.training and not model.linear.training
    model.eval()
    count_flops(model, torch.rand(1, 5))
    assert not model.training and not model.linear.training


def test_modes_come_back_after_a_failing_call() -> None:
    model = Recorder().train()
    with pytest.raises(RuntimeError):
        count_flops(model, torch.rand(1, 4))  # the wrong width
    assert model.training


def tiny_operator() -> ManoOperatorModel:
    torch.manual_seed(0)
    return ManoOperatorModel(
        ManoOperatorConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, head_dim=4, intermediate_size=16)
    )


def test_mano_flops_are_counted_on_the_tensor_path() -> None:
    """The FLOP counter cannot see inside the fused kernel: MANO is counted on its tensor path, whatever it runs."""
    model = build_operator(DarcyModelArguments(model="mano", hidden_size=8, num_layers=1, num_heads=2))
    assert model.config.attention_kernel == "auto"
    flops = count_flops(model, torch.rand(1, 16, 16, 1))
    assert model.config.attention_kernel == "auto"  # put back
    assert flops_per_sample(model, 16) == flops  # the Darcy record's count: one sample of the training grid
    model.config.attention_kernel = "torch"
    assert count_flops(model, torch.rand(1, 16, 16, 1)) == flops
    if kernel_library() is not None:  # what a count through the kernel sees: the attention's products missing
        model.config.attention_kernel = "auto"
        with FlopCounterMode(display=False) as through_kernel, torch.no_grad():
            model(torch.rand(1, 16, 16, 1))
        assert through_kernel.get_total_flops() < flops


class Wrapper(nn.Module):
    """An operator inside a module that has no configuration of its own."""

    def __init__(self, operator: ManoOperatorModel) -> None:
        super().__init__()
        self.operator = operator

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return self.operator(fields).predictions


def test_an_operator_inside_another_module_is_switched_too_and_put_back_after_an_error() -> None:
    operator = tiny_operator()
    flops = count_flops(operator, torch.rand(1, 8, 8, 1))
    assert count_flops(Wrapper(operator), torch.rand(1, 8, 8, 1)) == flops
    with pytest.raises(ValueError):
        count_flops(Wrapper(operator), torch.rand(1, 8, 8, 2))  # the wrong channel count
    assert operator.config.attention_kernel == "auto"
