"""Where a forward pass of mano-tiny and SwinV2-T spends its time: torch's profiler, operators grouped into parts.

The parts separate the arithmetic (matrix products, the attention core) from what moves data (copies, gathers,
concatenations) and from elementwise work, so a change that removes copies shows as a smaller share of the forward.
Times are the operators' own CPU time (`self_cpu_time_total`), averaged over the profiled forwards.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from .scaling import MODEL_KINDS, Case, build_model_case, minor_page_faults


OPERATOR_PARTS: dict[str, frozenset[str]] = {
    "matrix products (linear, convolution)": frozenset({"aten::addmm", "aten::mm", "aten::mkldnn_convolution"}),
    "attention core (SDPA; or bmm, softmax, mask, scaling)": frozenset(
        {
            "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::bmm",
            "aten::_softmax",
            "aten::masked_fill_",
            "aten::div",
        }
    ),
    "copies and gathers (copy_, index, index_select, cat, clone, roll, padding)": frozenset(
        {
            "aten::copy_",
            "aten::index",
            "aten::index_select",
            "aten::cat",
            "aten::clone",
            "aten::roll",
            "aten::constant_pad_nd",
            "aten::zeros",
            "aten::new_zeros",
            "aten::fill_",
            "aten::zero_",
        }
    ),
    "elementwise and norms (gelu, add, mul, norms, sigmoid)": frozenset(
        {
            "aten::gelu",
            "aten::add",
            "aten::add_",
            "aten::mul",
            "aten::linalg_vector_norm",
            "aten::native_layer_norm",
            "aten::sigmoid",
            "aten::clamp",
            "aten::clamp_min",
            "aten::exp",
            "aten::mean",
            "aten::sum",
        }
    ),
}
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
    return {
        "kind": kind,
        "image_size": image_size,
        "batch_size": batch_size,
        "wall_ms_unprofiled": wall_ms,
        "operator_ms": total,
        "parts_ms": parts,
    }


def parts_table(profiles: list[dict]) -> str:
    """A markdown table: one row per part, one column per profile, milliseconds and share of the operator time."""
    header = "| part | " + " | ".join(p["kind"] for p in profiles) + " |"
    lines = [header, "|---" * (len(profiles) + 1) + "|"]
    for part in profiles[0]["parts_ms"]:
        cells = [
            f"{p['parts_ms'][part]:.1f} ms ({100 * p['parts_ms'][part] / p['operator_ms']:.0f} %)" for p in profiles
        ]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| all operators | " + " | ".join(f"{p['operator_ms']:.1f} ms" for p in profiles) + " |")
    return "\n".join(lines)


BLOCK_PARTS = ("projectors (down, up)", "MLP (intermediate, output)")
REST_OF_BLOCK = "window attention and the rest"
OUTSIDE_STAGES = "outside the stages (final norm, pooling, hooks)"
PAGE_FAULTS = "minor page faults (count, not ms)"


def _block_modules(model: torch.nn.Module) -> dict[str, list[tuple[str, torch.nn.Module]]]:
    """Per stage: the modules whose forward times make up the stage's rows (blocks, their projectors and MLPs,
    the patch merging that closes the stage). Names are those of `model.named_modules()`."""
    rows: dict[str, list[tuple[str, torch.nn.Module]]] = {"embeddings": [("embeddings", model.embeddings)]}
    for index, stage in enumerate(model.encoder.layers):
        modules = []
        for block in stage.blocks:
            modules.append(("block", block))
            for name in ("down", "up"):
                if getattr(block, name, None) is not None:
                    modules.append((BLOCK_PARTS[0], getattr(block, name)))
            modules += [(BLOCK_PARTS[1], block.intermediate), (BLOCK_PARTS[1], block.output)]
        if stage.downsample is not None:
            modules.append(("patch merging", stage.downsample))
        rows[f"stage {index + 1}"] = modules
    return rows


def stage_times(image_size: int = 256, batch_size: int = 1, repeats: int = 9, warmup: int = 2) -> dict:
    """mano-tiny and SwinV2-T, forwards alternated in one process, timed by stage and by part of each block.

    Forward hooks time every block, its projectors (`down`, `up`; MANO only) and its MLP; "window attention and
    the rest" is the block's time less those (window gathers, q/k/v and output projections of every level, the
    attention core, norms and residuals). Medians over `repeats` forwards, in ms per forward, and the median count
    of minor page faults per forward. The hooks add a few microseconds per module to both models alike.
    """
    samples: dict[str, defaultdict] = {}
    forwards = {}
    for kind in MODEL_KINDS:
        module, inputs, call, _ = build_model_case(Case("model", kind, image_size, batch_size))
        module.eval()
        totals: defaultdict = defaultdict(float)  # (stage, part) -> ms within the current forward
        for stage, modules in _block_modules(module).items():
            for part, submodule in modules:
                _time_module(submodule, totals, (stage, part))
        samples[kind], forwards[kind] = defaultdict(list), (call, module, inputs, totals)
    with torch.inference_mode():
        for repeat in range(warmup + repeats):
            for kind, (call, module, inputs, totals) in forwards.items():
                totals.clear()
                faults, start = minor_page_faults(), time.perf_counter()
                call(module, inputs)
                totals[("total", "forward")] = (time.perf_counter() - start) * 1e3
                totals[("total", PAGE_FAULTS)] = float(minor_page_faults() - faults)
                if repeat >= warmup:
                    for key, ms in totals.items():
                        samples[kind][key].append(ms)
    medians = {
        kind: {key: statistics.median(values) for key, values in by_key.items()} for kind, by_key in samples.items()
    }
    for by_key in medians.values():
        for stage in {stage for stage, part in by_key if part == "block"}:
            by_key[(stage, REST_OF_BLOCK)] = by_key[(stage, "block")] - sum(
                by_key.get((stage, p), 0.0) for p in BLOCK_PARTS
            )
        timed = sum(ms for (_, part), ms in by_key.items() if part in ("embeddings", "block", "patch merging"))
        # counts, not ms: kept apart from the timed rows
        by_key[("total", OUTSIDE_STAGES)] = by_key[("total", "forward")] - timed
    return {
        "image_size": image_size,
        "batch_size": batch_size,
        "repeats": repeats,
        "median_ms": {
            kind: {f"{stage} / {part}": ms for (stage, part), ms in by_key.items()} for kind, by_key in medians.items()
        },
    }


def _time_module(module: torch.nn.Module, totals: defaultdict, key: tuple[str, str]) -> None:
    """Add the wall time of each forward of `module` to `totals[key]` (ms)."""
    starts: list[float] = []
    module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

    def stop(*_) -> None:
        totals[key] += (time.perf_counter() - starts.pop()) * 1e3

    module.register_forward_hook(stop)


def stage_table(result: dict) -> str:
    """A markdown table of `stage_times`: per stage its blocks and their parts, both models' ms and the difference."""
    mano, swinv2 = result["median_ms"]["mano-tiny"], result["median_ms"]["swinv2-tiny"]
    stages = list(dict.fromkeys(key.split(" / ")[0] for key in mano))
    parts = (
        "embeddings",
        "block",
        REST_OF_BLOCK,
        *BLOCK_PARTS,
        "patch merging",
        OUTSIDE_STAGES,
        "forward",
        PAGE_FAULTS,
    )
    lines = ["| part (ms per forward) | mano-tiny | swinv2-tiny | difference |", "|---|---|---|---|"]
    for stage in stages:
        for part in parts:
            key = f"{stage} / {part}"
            if key in mano or key in swinv2:
                ours, theirs = mano.get(key, 0.0), swinv2.get(key, 0.0)
                label = {"block": f"**{stage}, all blocks**", "forward": "**whole forward**"}.get(part, key)
                label = part if part in ("embeddings", OUTSIDE_STAGES, PAGE_FAULTS) else label
                digits = 0 if part == PAGE_FAULTS else 2
                lines.append(f"| {label} | {ours:.{digits}f} | {theirs:.{digits}f} | {ours - theirs:+.{digits}f} |")
    return "\n".join(lines)


__all__ = ["MODEL_KINDS", "OPERATOR_PARTS", "parts_table", "profile_forward", "stage_table", "stage_times"]


ATTENTION_CORES = ("sdpa", "blocked products", "products, one block")


def attention_core_times(
    num_windows: int,
    heads: int = 3,
    tokens: int = 64,
    head_dim: int = 32,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 60,
    warmup: int = 5,
    rounds: int = 3,
) -> list[dict]:
    """The fused path's two attention cores alone, on (num_windows, heads, tokens, head_dim) float32 windows under a
    per-window mask: SDPA, `blocked_window_attention` at its default block size, and the same products over all
    windows at once. Per thread count, `rounds` rounds of each core's calls back to back (interleaving single calls
    of cores with different allocation patterns disturbs the allocator between them); medians in ms.

    The default shape is stage 1 of mano-tiny at 256 px, batch 1 (84 windows of its three levels).
    """
    from transformers_mano.models.mano.sdpa_attention_mano import blocked_window_attention

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(num_windows, heads, tokens, head_dim, generator=generator) for _ in range(3))
    mask = torch.randn(num_windows, heads, tokens, tokens, generator=generator)
    calls = {
        "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=1.0),
        "blocked products": lambda: blocked_window_attention(query, key, value, mask),
        "products, one block": lambda: blocked_window_attention(query, key, value, mask, block_bytes=2**62),
    }
    before, results = torch.get_num_threads(), []
    try:
        for count in threads:
            torch.set_num_threads(count)
            times: dict[str, list[float]] = {name: [] for name in calls}
            with torch.inference_mode():
                for _ in range(rounds):  # each core's calls back to back, as a forward makes them; rounds alternate
                    for name, call in calls.items():
                        for repeat in range(warmup + repeats // rounds):
                            start = time.perf_counter()
                            call()
                            if repeat >= warmup:
                                times[name].append((time.perf_counter() - start) * 1e3)
            results.append(
                {
                    "threads": count,
                    "num_windows": num_windows,
                    "heads": heads,
                    "tokens": tokens,
                    "head_dim": head_dim,
                    "median_ms": {n: statistics.median(t) for n, t in times.items()},
                }
            )
    finally:
        torch.set_num_threads(before)
    return results


def core_table(results: list[dict]) -> str:
    """A markdown table: one row per (windows, threads), one column per attention core, median ms per call."""
    lines = [
        "| windows x heads x tokens | threads | " + " | ".join(ATTENTION_CORES) + " |",
        "|---" * (len(ATTENTION_CORES) + 2) + "|",
    ]
    for row in results:
        cells = " | ".join(f"{row['median_ms'][name]:.2f}" for name in ATTENTION_CORES)
        lines.append(f"| {row['num_windows']} x {row['heads']} x {row['tokens']} | {row['threads']} | {cells} |")
    return "\n".join(lines)
