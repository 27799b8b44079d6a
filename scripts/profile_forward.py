#!/usr/bin/env python
"""Profile one forward of mano-tiny and SwinV2-T and print where the time goes, by part (matrix products, attention
core, copies and gathers, elementwise work); with --stages, by stage and by part of each block instead (the two
models' forwards alternated, hooks timing blocks, projectors and MLPs); with --cores, the fused path's two
attention cores alone (SDPA and the blocked matrix products) on one and two threads.

    python scripts/profile_forward.py --image_size 256 --batch_size 1 --threads 1 --output profile.json
    python scripts/profile_forward.py --stages --threads 1
    python scripts/profile_forward.py --cores --windows 84 1344
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from transformers_mano.utils import atomic_write_text, machine_info
from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.speed.profiling import (
    MODEL_KINDS,
    attention_core_times,
    core_table,
    parts_table,
    profile_forward,
    stage_table,
    stage_times,
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (None: torch's choice)")
    parser.add_argument("--repeats", type=int, default=10, help="profiled forwards per model")
    parser.add_argument("--stages", action="store_true", help="time stages and block parts instead of operators")
    parser.add_argument("--cores", action="store_true", help="time the fused path's attention cores alone instead")
    parser.add_argument(
        "--windows",
        type=int,
        nargs="*",
        default=[84, 1344],
        help="with --cores: window counts (84: stage 1 of mano-tiny at 256 px, batch 1; 1344: batch 16)",
    )
    parser.add_argument("--output", default=None, help="also write the profiles as JSON here (never over a file)")
    args = parser.parse_args(argv)
    if args.output and Path(args.output).exists():
        parser.error(f"{args.output} exists; choose another --output (results are never written over a file)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.cores:
        threads = (args.threads,) if args.threads else (1, 2)
        result = {
            "cores": [
                row
                for count in args.windows
                for row in attention_core_times(count, threads=threads, repeats=args.repeats * 6)
            ]
        }
        print(core_table(result["cores"]))
    elif args.stages:
        result = {"stages": stage_times(args.image_size, args.batch_size, args.repeats)}
        print(stage_table(result["stages"]))
    else:
        result = {
            "profiles": [profile_forward(kind, args.image_size, args.batch_size, args.repeats) for kind in MODEL_KINDS]
        }
        print(parts_table(result["profiles"]))
    if args.output:
        atomic_write_text(args.output, json.dumps({**result, "machine": machine_info()}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(run_main(main))
