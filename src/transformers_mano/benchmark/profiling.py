"""Where a forward pass of mano-tiny and SwinV2-T spends its time: torch's profiler, operators grouped into parts.

The parts separate the arithmetic (matrix products, the attention core) from what moves data (copies, gathers,
concatenations) and from elementwise work, so a change that removes copies shows as a smaller share of the forward.
Times are the operators' own CPU time (`self_cpu_time_total`), averaged over the profiled forwards.
"""

from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from .scaling import MODEL_KINDS, Case, build_model_case

OPERATOR_PARTS: dict[str, frozenset[str]] = {
    "matrix products (linear, convolution)": frozenset({"aten::addmm", "aten::mm", "aten::mkldnn_convolution"}),
    "attention core (SDPA; or bmm, softmax, mask, scaling)": frozenset({
        "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::bmm", "aten::_softmax", "aten::masked_fill_",
        "aten::div",
    }),
    "copies and gathers (copy_, index, index_select, cat, clone, roll, padding)": frozenset({
        "aten::copy_", "aten::index", "aten::index_select", "aten::cat", "aten::clone", "aten::roll",
        "aten::constant_pad_nd", "aten::zeros", "aten::new_zeros", "aten::fill_", "aten::zero_",
    }),
    "elementwise and norms (gelu, add, mul, norms, sigmoid)": frozenset({
        "aten::gelu", "aten::add", "aten::add_", "aten::mul", "aten::linalg_vector_norm", "aten::native_layer_norm",
        "aten::sigmoid", "aten::clamp", "aten::clamp_min", "aten::exp", "aten::mean", "aten::sum",
    }),
}  # fmt: skip
OTHER_PART = "other operators (views, reshapes, small ops)"


def profile_forward(kind: str, image_size: int = 256, batch_size: int = 1, repeats: int = 10, warmup: int = 3) -> dict:
    """One model kind of `MODEL_KINDS`: wall time per forward (unprofiled), operator time, and operator time by part."""
    module, inputs, call, _ = build_model_case(Case("model", kind, image_size, batch_size))
    module.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            call(module, inputs)
        start = time.perf_counter()
        for _ in range(repeats):
            call(module, inputs)
        wall_ms = (time.perf_counter() - start) / repeats * 1e3
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(repeats):
                call(module, inputs)
    operators = {event.key: event.self_cpu_time_total / repeats / 1e3 for event in profiler.key_averages()}  # ms
    total = sum(operators.values())
    parts = {name: sum(ms for key, ms in operators.items() if key in keys) for name, keys in OPERATOR_PARTS.items()}
    parts[OTHER_PART] = total - sum(parts.values())
    return {"kind": kind, "image_size": image_size, "batch_size": batch_size, "wall_ms_unprofiled": wall_ms,
            "operator_ms": total, "parts_ms": parts}  # fmt: skip


def parts_table(profiles: list[dict]) -> str:
    """A markdown table: one row per part, one column per profile, milliseconds and share of the operator time."""
    header = "| part | " + " | ".join(p["kind"] for p in profiles) + " |"
    lines = [header, "|---" * (len(profiles) + 1) + "|"]
    for part in profiles[0]["parts_ms"]:
        cells = [f"{p['parts_ms'][part]:.1f} ms ({100 * p['parts_ms'][part] / p['operator_ms']:.0f} %)" for p in profiles]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| all operators | " + " | ".join(f"{p['operator_ms']:.1f} ms" for p in profiles) + " |")
    return "\n".join(lines)


__all__ = ["MODEL_KINDS", "OPERATOR_PARTS", "parts_table", "profile_forward"]
