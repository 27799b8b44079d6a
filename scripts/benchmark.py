#!/usr/bin/env python
"""Measure MANO's scaling against window and global attention, and mano-tiny against SwinV2-T.

    python scripts/benchmark.py                                  # CPU sweep
    python scripts/benchmark.py --device cuda --dtype bfloat16   # on a GPU

Writes results.json, results.csv and scaling.png (log-log) into --output_dir and prints the table, the fitted
scaling exponents and the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from transformers_mano.utils import check_new_output, machine_info
from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.speed.scaling import (
    LAYER_KINDS,
    Case,
    format_table,
    model_flops,
    run_cases,
    run_paired,
    summarize,
    write_results,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default in `--help`."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="data type of the weights and inputs",
    )
    parser.add_argument("--output_dir", default=None, help="results folder (None: benchmark_results/<device>-<dtype>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    parser.add_argument(
        "--layer_grids", type=int, nargs="*", default=[32, 64, 128, 256], help="token grid sides of the layer sweep"
    )
    parser.add_argument(
        "--global_max_grid",
        type=int,
        default=128,
        help="largest grid side for the global-attention layers (quadratic cost)",
    )
    parser.add_argument(
        "--eager_max_grid",
        type=int,
        default=64,
        help="largest grid side for eager global attention (it stores the N x N scores)",
    )
    parser.add_argument(
        "--image_sizes", type=int, nargs="*", default=[256, 512, 1024], help="image sides (pixels) of the model sweep"
    )
    parser.add_argument(
        "--batch_sizes",
        type=int,
        nargs="*",
        default=[1, 16],
        help="batch sizes of the model sweep; batches above 1 only at the first image size",
    )
    parser.add_argument("--layer_batch_size", type=int, default=1, help="batch size of the layer sweep")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per case (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (None: torch's choice)")
    parser.add_argument("--skip_flops", action="store_true", help="do not count the FLOPs of the models")
    parser.add_argument("--only", choices=["layers", "models"], default=None, help="run one of the two sweeps")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    output_dir = args.output_dir or f"benchmark_results/{args.device.replace(':', '')}-{args.dtype}"
    check_new_output(output_dir, args.overwrite)  # before the sweep, not after it
    common = {
        "device": args.device,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
    }
    cases = []
    for kind in LAYER_KINDS if args.only != "models" else ():
        limit = {"global_sdpa": args.global_max_grid, "global_eager": args.eager_max_grid}.get(kind, 10**9)
        cases += [
            Case("layer", kind, grid, args.layer_batch_size, **common) for grid in args.layer_grids if grid <= limit
        ]
    for index, size in enumerate(args.image_sizes if args.only != "layers" else ()):
        for batch_size in args.batch_sizes if index == 0 else args.batch_sizes[:1]:
            for kind in ("swinv2-tiny", "mano-tiny"):
                cases.append(Case("model", kind, size, batch_size, **common))

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args.device)
    measurements = run_cases(cases, isolate=not args.device.startswith("cuda"))
    summary = summarize(measurements)
    summary["paired"] = run_paired([case for case in cases if case.sweep == "model"])
    for paired in summary["paired"]:
        name = f"mano-tiny/swinv2-tiny time at {paired['size']}px batch {paired['batch_size']}, paired"
        summary["ratios"][name] = paired["median_ratio"]
    if not args.skip_flops:
        flops = {kind: model_flops(kind) for kind in ("mano-tiny", "swinv2-tiny")}
        summary["flops_256px"] = flops
        summary["ratios"]["mano-tiny/swinv2-tiny FLOPs at 256px"] = flops["mano-tiny"] / flops["swinv2-tiny"]
    folder = write_results(measurements, summary, info, output_dir, overwrite=args.overwrite)

    print(format_table(measurements))
    print("\nscaling exponents (time, memory) over grids, with the R^2 of each log-log fit:")
    for kind, fit in summary["exponents"].items():
        time_fit, memory_fit = fit["time_fit"], fit["memory_fit"]
        print(
            f"  {kind:13} time {time_fit['exponent']:.2f} (R^2 {time_fit['r_squared']:.2f})  memory "
            f"{memory_fit['exponent']:.2f} (R^2 {memory_fit['r_squared']:.2f})  grids {fit['grids']}"
        )
        for name, item in (("time", time_fit), ("memory", memory_fit)):
            if not item["trusted"]:
                print(f"    the {name} exponent is not trustworthy: {item['reason']}; sweep more, larger grids")
    print("\nratios:")
    for name, value in summary["ratios"].items():
        print(f"  {name}: {value:.3f}")
    print(f"\nmachine: {json.dumps(info)}")
    print(f"written: {folder}/results.json, results.csv, scaling.png")


if __name__ == "__main__":
    sys.exit(run_main(main))
