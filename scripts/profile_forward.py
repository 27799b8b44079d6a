#!/usr/bin/env python
"""Profile one forward of mano-tiny and SwinV2-T and print where the time goes, by part (matrix products, attention
core, copies and gathers, elementwise work).

    python scripts/profile_forward.py --image_size 256 --batch_size 1 --threads 1 --output profile.json
"""

import argparse
import json
import sys

import torch

from transformers_mano.benchmark.profiling import MODEL_KINDS, parts_table, profile_forward
from transformers_mano.utils import atomic_write_text, machine_info
from transformers_mano.utils.cli import run_main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (None: torch's choice)")
    parser.add_argument("--repeats", type=int, default=10, help="profiled forwards per model")
    parser.add_argument("--output", default=None, help="also write the profiles as JSON here (never over a file)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    profiles = [profile_forward(kind, args.image_size, args.batch_size, args.repeats) for kind in MODEL_KINDS]
    print(parts_table(profiles))
    if args.output:
        atomic_write_text(args.output, json.dumps({"profiles": profiles, "machine": machine_info()}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(run_main(main))
