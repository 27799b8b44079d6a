"""Training-step time of MANO, FNO and ViT on Darcy flow, side by side in one process.

    python scripts/benchmark_darcy_step.py --threads 1 --output docs/benchmarks/darcy-step-1thread.json

Prints each model's median step and MANO's ratios to the others, with the time of MANO's matrix products alone
(`mano-projections-only`) as the floor no attention kernel goes below. See docs/darcy.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from transformers_mano.utils import atomic_write_text
from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.speed.darcy_step import measure_step_times


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the protocol's runs)")
    parser.add_argument("--batch_size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--resolution", type=int, default=16, help="grid side (default 16)")
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per model (default 15)")
    parser.add_argument("--compile", action="store_true", help="also time MANO under torch.compile (inductor)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = measure_step_times(args.batch_size, args.resolution, args.repeats, compile=args.compile)
    for name, value in results["median_ms"].items():
        print(f"{name:24} {value:8.1f} ms/step")
    for name, value in results["ratios"].items():
        print(f"{name:24} {value:8.2f}")
    if results["compile_seconds"] is not None:
        print(f"compilation: {results['compile_seconds']:.0f} s")
    print(f"machine: {json.dumps(results['machine'])}")
    if args.output:
        atomic_write_text(args.output, json.dumps(results, indent=2), overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(run_main(main))
