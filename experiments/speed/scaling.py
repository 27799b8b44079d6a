"""Time and memory of MANO against window and global attention, measured the same way on CPU and CUDA.

Two sweeps:
- one attention layer (token mixing: q/k/v and output projections and the attention, without the MLP that every
  kind would share) at token grids of n x n: a MANO layer (levels following the grid), SwinV2's window attention,
  and global attention of the same width and heads (SDPA and eager);
- whole models: mano-tiny against SwinV2-T of transformers at several image sizes and batch sizes.

Each measurement warms up, synchronises the device, and takes the median of repeats. On CUDA the peak memory is
`torch.cuda.max_memory_allocated`; on CPU, where torch keeps no such counter, each case runs in a fresh process and
the peak is the growth of the resident set (`ru_maxrss`) over the forward, which includes allocator slack.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import math
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import Swinv2Config, Swinv2Model

from transformers_mano.models.mano.configuration_mano import ManoConfig
from transformers_mano.models.mano.modeling_mano import ManoLayer, ManoModel
from transformers_mano.utils import atomic_directory


LAYER_KINDS = ("mano", "swinv2", "global_sdpa", "global_eager")
MODEL_KINDS = ("mano-tiny", "swinv2-tiny")


@dataclass
class Case:
    """One measurement: a layer at an n x n token grid, or a model at an image size."""

    sweep: str  # "layer" or "model"
    kind: str  # one of LAYER_KINDS or MODEL_KINDS
    size: int  # tokens per side (layer) or pixels per side (model)
    batch_size: int = 1
    channels: int = 96
    heads: int = 3
    device: str = "cpu"
    dtype: str = "float32"
    repeats: int = 5
    warmup: int = 2
    threads: int | None = None


@dataclass
class Measurement:
    case: Case
    tokens: int
    median_ms: float
    times_ms: list[float]
    peak_memory_mb: float
    extra: dict = field(default_factory=dict)


class GlobalAttention(nn.Module):
    """Attention over the whole grid, with SwinV2's projections around it: the quadratic baseline.

    (B, N, C) -> (B, N, C): proj(softmax(q k^T / sqrt(d)) v) with q, k, v = qkv(x).
    """

    def __init__(self, channels: int, heads: int, implementation: str = "sdpa"):
        super().__init__()
        self.heads, self.implementation = heads, implementation
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch_size, tokens, channels = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, tokens, 3, self.heads, channels // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B, heads, N, d
        if self.implementation == "sdpa":
            context = F.scaled_dot_product_attention(query, key, value)
        else:
            scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # B, heads, N, N
            context = scores.softmax(-1) @ value
        return self.proj(context.transpose(1, 2).reshape(batch_size, tokens, channels))


def build_layer_case(case: Case) -> tuple[nn.Module, torch.Tensor, Callable, int]:
    """One attention layer (token mixing: projections and attention, no MLP) at an n x n grid.

    Returns (module, input, forward(module, input), token count). The MANO and SwinV2 layers are a stage-1 block of
    mano-tiny / SwinV2-T (planned at 64 x 64 tokens, window 8, shifted): MANO's fused path with its levels re-planned
    for the grid, and the same block at one level on the eager path, which runs SwinV2's own attention code.
    """
    side, tokens = case.size, case.size * case.size
    if case.kind in ("mano", "swinv2"):
        config = ManoConfig(embed_dim=case.channels, num_heads=[case.heads, 6, 12, 24], drop_path_rate=0.0)
        config._attn_implementation = "sdpa" if case.kind == "mano" else "eager"
        levels = config.resolved_num_levels()[0] if case.kind == "mano" else 1
        layer = ManoLayer(
            config,
            case.channels,
            (64, 64),
            case.heads,
            shift_size=4,
            num_levels=levels,
            min_coarse_side=config.min_coarse_sides()[0],
        )
        grid = torch.randn(case.batch_size, side, side, case.channels)  # B, H, W, C
        return layer, grid, lambda module, x: module.multipole_window_attention(x)[0], tokens
    if case.kind in ("global_sdpa", "global_eager"):
        layer = GlobalAttention(case.channels, case.heads, implementation=case.kind.split("_")[1])
        hidden_states = torch.randn(case.batch_size, tokens, case.channels)  # B, N, C
        return layer, hidden_states, lambda module, x: module(x), tokens
    raise ValueError(f"unknown layer kind {case.kind!r}; expected one of {LAYER_KINDS}")


def build_model_case(case: Case) -> tuple[nn.Module, torch.Tensor, Callable, int]:
    """mano-tiny or SwinV2-T on size x size images: (model, pixels, forward, token count of stage 1)."""
    if case.kind == "mano-tiny":
        model = ManoModel._from_config(ManoConfig(), attn_implementation="sdpa")
    elif case.kind == "swinv2-tiny":
        model = Swinv2Model(Swinv2Config(image_size=256, window_size=8))
    else:
        raise ValueError(f"unknown model kind {case.kind!r}; expected one of {MODEL_KINDS}")
    pixel_values = torch.randn(case.batch_size, 3, case.size, case.size)
    return model, pixel_values, lambda module, x: module(x).last_hidden_state, (case.size // 4) ** 2


def model_flops(kind: str, image_size: int = 256) -> int:
    """Forward FLOPs of one image, counted by `torch.utils.flop_counter` on the eager attention path."""
    from torch.utils.flop_counter import FlopCounterMode

    if kind == "mano-tiny":
        model = ManoModel._from_config(ManoConfig(), attn_implementation="eager")
    else:
        model = Swinv2Model(Swinv2Config(image_size=256, window_size=8))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.randn(1, 3, image_size, image_size))
    return counter.get_total_flops()


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(case: Case) -> Measurement:
    """Warm up, then time `case.repeats` forwards (median) and record the peak memory of one forward."""
    if case.threads:
        torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    module, inputs, call, tokens = (build_layer_case if case.sweep == "layer" else build_model_case)(case)
    dtype = getattr(torch, case.dtype)
    module = module.to(device=case.device, dtype=dtype).eval()
    inputs = inputs.to(device=case.device, dtype=dtype)

    def forward() -> torch.Tensor:
        return call(module, inputs)

    with torch.inference_mode():
        _synchronize(case.device)
        if case.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            baseline = torch.cuda.memory_allocated()
        else:
            baseline = _rss_mb()
        forward()
        _synchronize(case.device)
        if case.device.startswith("cuda"):
            peak_mb = (torch.cuda.max_memory_allocated() - baseline) / 2**20
        else:
            peak_mb = _rss_mb() - baseline
        for _ in range(max(case.warmup - 1, 0)):
            forward()
        times = []
        for _ in range(case.repeats):
            _synchronize(case.device)
            start = time.perf_counter()
            forward()
            _synchronize(case.device)
            times.append((time.perf_counter() - start) * 1e3)
    return Measurement(case, tokens, statistics.median(times), times, peak_mb)


def minor_page_faults() -> int:
    """Minor page faults of this process so far: memory the allocator gave back to the system and takes again,
    which a forward pays for in its time (both models alike; how much depends on the allocator's state)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def paired_model_ratio(case: Case) -> dict:
    """mano-tiny against SwinV2-T in one process, forwards alternated: the median of the per-pair time ratios.

    Alternating the two models exposes both to the same background load, which separate processes run minutes
    apart are not; this is the ratio the README reports. `case.kind` is ignored.
    """
    if case.threads:
        torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, case.dtype)
    forwards = {}
    for kind in MODEL_KINDS:
        module, inputs, call, _ = build_model_case(Case("model", kind, case.size, case.batch_size))
        module = module.to(device=case.device, dtype=dtype).eval()
        forwards[kind] = (call, module, inputs.to(device=case.device, dtype=dtype))
    times: dict[str, list[float]] = {kind: [] for kind in MODEL_KINDS}
    faults: dict[str, list[int]] = {kind: [] for kind in MODEL_KINDS}
    with torch.inference_mode():
        for repeat in range(case.warmup + case.repeats):
            for kind, (call, module, inputs) in forwards.items():
                _synchronize(case.device)
                faults_before, start = minor_page_faults(), time.perf_counter()
                call(module, inputs)
                _synchronize(case.device)
                if repeat >= case.warmup:
                    times[kind].append((time.perf_counter() - start) * 1e3)
                    faults[kind].append(minor_page_faults() - faults_before)
    ratios = [mano / swinv2 for mano, swinv2 in zip(times["mano-tiny"], times["swinv2-tiny"])]
    return {
        "size": case.size,
        "batch_size": case.batch_size,
        "median_ms": {kind: statistics.median(values) for kind, values in times.items()},
        "median_ratio": statistics.median(ratios),
        "ratios": ratios,
        "minor_page_faults_per_forward": {kind: statistics.median(values) for kind, values in faults.items()},
    }


def run_paired(cases: list[Case]) -> list[dict]:
    """`paired_model_ratio` for each (size, batch) of the model cases, each in a fresh process on CPU."""
    seen, results = set(), []
    for case in tqdm(cases, desc="paired mano-tiny/SwinV2-T", unit="size"):
        if (case.size, case.batch_size) in seen:
            continue
        seen.add((case.size, case.batch_size))
        if case.device.startswith("cuda"):
            results.append(paired_model_ratio(case))
            continue
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            results.append(pool.submit(paired_model_ratio, case).result())
    return results


def run_cases(cases: list[Case], isolate: bool) -> list[Measurement]:
    """Measure every case, each in a fresh process when `isolate` (the CPU memory peak needs it), with a progress bar."""
    results = []
    if not isolate:
        for case in tqdm(cases, desc="benchmark", unit="case"):
            results.append(measure(case))
        return results
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        for case in tqdm(cases, desc="benchmark", unit="case"):
            results.append(pool.submit(measure, case).result())
    return results


# A fitted exponent is reported as trustworthy only over at least three sizes spanning 16x in tokens (two doublings
# of the grid side), with the log-log line explaining at least 95 % of the variance, and a positive slope (more
# tokens cannot cost less): short sweeps on a busy machine give exponents that are noise.
TRUSTED_MIN_SIZES = 3
TRUSTED_MIN_SPAN = 16.0
TRUSTED_MIN_R_SQUARED = 0.95


def fit_exponent(tokens: list[int], values: list[float]) -> dict[str, object]:
    """Least-squares slope of log(value) against log(tokens) (1 is linear scaling, 2 quadratic) and its quality.

    Returns `exponent`, `r_squared` (of the log-log fit) and `trusted` with, when False, the `reason`.
    """
    xs, ys = [math.log(t) for t in tokens], [math.log(max(v, 1e-9)) for v in values]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(xs, ys))
    total = sum((y - mean_y) ** 2 for y in ys)
    r_squared = 1.0 - residual / total if total > 0 else 0.0
    reasons = []
    if len(set(tokens)) < TRUSTED_MIN_SIZES:
        reasons.append(f"{len(set(tokens))} sizes (< {TRUSTED_MIN_SIZES})")
    if max(tokens) / min(tokens) < TRUSTED_MIN_SPAN:
        reasons.append(f"tokens span {max(tokens) / min(tokens):.0f}x (< {TRUSTED_MIN_SPAN:.0f}x)")
    if r_squared < TRUSTED_MIN_R_SQUARED:
        reasons.append(f"R^2 {r_squared:.2f} (< {TRUSTED_MIN_R_SQUARED})")
    if slope <= 0:
        reasons.append("a negative slope")
    return {"exponent": slope, "r_squared": r_squared, "trusted": not reasons, "reason": "; ".join(reasons)}


def summarize(measurements: list[Measurement]) -> dict:
    """Scaling exponents per layer kind and the headline ratios the README reports."""
    summary: dict = {"exponents": {}, "ratios": {}}
    layers: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.case.sweep == "layer":
            layers.setdefault(m.case.kind, []).append(m)
    for kind, rows in layers.items():
        if len(rows) >= 2:
            tokens = [m.tokens for m in rows]
            time_fit = fit_exponent(tokens, [m.median_ms for m in rows])
            memory_fit = fit_exponent(tokens, [max(m.peak_memory_mb, 1e-3) for m in rows])
            summary["exponents"][kind] = {
                "time": time_fit["exponent"],
                "memory": memory_fit["exponent"],
                "time_fit": time_fit,
                "memory_fit": memory_fit,
                "grids": [m.case.size for m in rows],
            }
    by_key = {(m.case.sweep, m.case.kind, m.case.size, m.case.batch_size): m for m in measurements}
    for (sweep, kind, size, batch), m in by_key.items():
        if sweep == "layer" and kind == "global_sdpa" and ("layer", "mano", size, batch) in by_key:
            summary["ratios"][f"global_sdpa/mano layer time at {size}x{size}"] = (
                m.median_ms / by_key[("layer", "mano", size, batch)].median_ms
            )
        if sweep == "model" and kind == "mano-tiny" and ("model", "swinv2-tiny", size, batch) in by_key:
            summary["ratios"][f"mano-tiny/swinv2-tiny time at {size}px batch {batch}"] = (
                m.median_ms / by_key[("model", "swinv2-tiny", size, batch)].median_ms
            )
    return summary


def write_results(
    measurements: list[Measurement], summary: dict, info: dict, output_dir: Path, overwrite: bool = False
) -> Path:
    """Write results.json, results.csv and scaling.png into `output_dir`, atomically (see `utils.io`)."""
    rows = [
        {**asdict(m.case), "tokens": m.tokens, "median_ms": m.median_ms, "peak_memory_mb": m.peak_memory_mb}
        for m in measurements
    ]
    with atomic_directory(output_dir, overwrite) as staging:
        (staging / "results.json").write_text(
            json.dumps({"machine": info, "summary": summary, "measurements": rows}, indent=2)
        )
        with open(staging / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        plot_scaling(measurements, summary, info, staging / "scaling.png")
    return Path(output_dir)


def plot_scaling(measurements: list[Measurement], summary: dict, info: dict, path: Path) -> None:
    """Log-log time and peak memory of the layer sweep against the token count, with fitted exponents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in LAYER_KINDS:
        rows = [m for m in measurements if m.case.sweep == "layer" and m.case.kind == kind]
        if not rows:
            continue
        exponents = summary["exponents"].get(kind, {})
        tokens = [m.tokens for m in rows]
        for axis, values, key in (
            (axes[0], [m.median_ms for m in rows], "time"),
            (axes[1], [max(m.peak_memory_mb, 1e-3) for m in rows], "memory"),
        ):
            label = kind + (f" (slope {exponents[key]:.2f})" if key in exponents else "")
            axis.loglog(tokens, values, marker="o", label=label)
    axes[0].set(
        xlabel="tokens N (n x n grid)", ylabel="forward time, ms (median)", title="time of one attention layer"
    )
    axes[1].set(xlabel="tokens N (n x n grid)", ylabel="peak memory, MiB", title="peak memory of one forward")
    for axis in axes:
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    device = info.get("gpu", info["cpu"])
    figure.suptitle(f"{device}, torch {info['torch']}, {info['torch_threads']} threads", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def format_table(measurements: list[Measurement]) -> str:
    """A plain-text table of every measurement."""
    lines = [f"{'sweep':6} {'kind':13} {'size':>5} {'batch':>5} {'tokens':>7} {'median ms':>10} {'peak MiB':>9}"]
    for m in measurements:
        c = m.case
        lines.append(
            f"{c.sweep:6} {c.kind:13} {c.size:>5} {c.batch_size:>5} {m.tokens:>7} {m.median_ms:>10.2f} "
            f"{m.peak_memory_mb:>9.1f}"
        )
    return "\n".join(lines)


__all__ = [
    "Case",
    "GlobalAttention",
    "Measurement",
    "fit_exponent",
    "format_table",
    "measure",
    "model_flops",
    "minor_page_faults",
    "paired_model_ratio",
    "run_cases",
    "run_paired",
    "summarize",
    "write_results",
]
