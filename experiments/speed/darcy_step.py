"""Training-step time of the Darcy operators, side by side in one process.

Each model is the one `scripts/train_darcy.py` builds (baselines matched to MANO's parameter count) with AdamW; the
steps of the models alternate (one step of each, repeated), so a change in the machine's load hits all of them
alike, and each model's median step is reported with the ratios. Two references put MANO's time in context:

- `mano-projections-only`: MANO with the attention core of every level replaced by its value projection (LayerNorm,
  the q/k/v and output projections, the projectors, the MLPs and everything else kept): the time of the model's
  matrix products and pointwise layers, which no attention kernel can go below;
- `mano-tiled`: MANO on the attention's tensor path (`attention_kernel="torch"`), where `mano` takes the fused
  CPU kernel (`window_kernel.py`) when it is built: the kernel's gain, side by side;
- `mano-compiled` (with `compile=True`): MANO under `torch.compile` (inductor), after the compilation steps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from transformers_mano.models.mano_operator.modeling_mano_operator import ManoOperatorWindowAttention, relative_l2
from transformers_mano.physics.training import DarcyModelArguments, build_operator, count_flops, count_parameters
from transformers_mano.utils import machine_info


@contextmanager
def projections_only():
    """Within the block, MANO's window attention computes `proj(value)` per token: no windows, no softmax."""
    original = ManoOperatorWindowAttention.forward

    def forward(self, grids: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for grid in grids:
            query, key, value = self.qkv(self.norm(grid)).chunk(3, dim=-1)
            outputs.append(self.proj(value + 0.0 * (query + key)))  # q and k stay in the graph, as projections
        return outputs

    ManoOperatorWindowAttention.forward = forward
    try:
        yield
    finally:
        ManoOperatorWindowAttention.forward = original


def _stepper(model: torch.nn.Module, batch_size: int, resolution: int) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch_size, resolution, resolution, 1, generator=generator).round()
    targets = torch.rand(batch_size, resolution, resolution, 1, generator=generator)

    def step() -> None:
        loss = relative_l2(model(inputs).predictions, targets).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_step_times(
    batch_size: int = 16,
    resolution: int = 16,
    repeats: int = 15,
    warmup: int = 3,
    compile: bool = False,
    model_args: DarcyModelArguments | None = None,
) -> dict[str, object]:
    """Median training-step time (ms) of MANO, FNO and ViT (and the references), alternated in one process."""
    model_args = model_args or DarcyModelArguments()
    names = ["mano", "fno", "vit"]
    models = {name: build_operator(DarcyModelArguments(**{**vars(model_args), "model": name})) for name in names}
    description = {
        name: {"parameters": count_parameters(model), "mflops_per_sample": count_flops(model, resolution) / 1e6}
        for name, model in models.items()
    }
    steppers = {name: _stepper(model, batch_size, resolution) for name, model in models.items()}
    reference = build_operator(DarcyModelArguments(**{**vars(model_args), "model": "mano"}))
    with projections_only():
        floor_step = _stepper(reference, batch_size, resolution)
        for _ in range(warmup):
            floor_step()
    steppers["mano-projections-only"] = lambda: _in(projections_only, floor_step)
    tiled = build_operator(DarcyModelArguments(**{**vars(model_args), "model": "mano"}))
    tiled.config.attention_kernel = "torch"  # every layer reads the model's config
    steppers["mano-tiled"] = _stepper(tiled, batch_size, resolution)
    compile_seconds = None
    if compile:
        compiled = torch.compile(build_operator(DarcyModelArguments(**{**vars(model_args), "model": "mano"})))
        start = time.perf_counter()
        steppers["mano-compiled"] = _stepper(compiled, batch_size, resolution)
        steppers["mano-compiled"]()  # compiles forward and backward
        compile_seconds = time.perf_counter() - start
    for step in steppers.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, step in steppers.items():
            start = time.perf_counter()
            step()
            times[name].append(1000 * (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {f"mano/{name}": medians["mano"] / medians[name] for name in medians if name != "mano"}
    return {
        "batch_size": batch_size,
        "resolution": resolution,
        "median_ms": medians,
        "ratios": ratios,
        "models": description,
        "compile_seconds": compile_seconds,
        "machine": machine_info(),
    }


def _in(context, step: Callable[[], None]) -> None:
    with context():
        step()


__all__ = ["measure_step_times", "projections_only"]
