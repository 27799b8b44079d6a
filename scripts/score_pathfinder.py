"""Score the models a Pathfinder comparison kept, as trained, on other data sets: other image sizes of the same scenes.

    python scripts/make_pathfinder.py --output_dir data/pathfinder-128-eval --image_size 128 --num_train 256 \
        --num_validation 256
    python scripts/score_pathfinder.py out/pf32w --data_dirs data/pathfinder-64 data/pathfinder-128-eval \
        --output out/pf32w-transfer.json

Each run of the folder (`<model>-s<seed>.json` with its `.safetensors`, from `scripts/benchmark_pathfinder.py`) is
built as it was trained (MANO re-plans its levels for the grid it sees) and tested on each folder's test split; the
table goes to stdout and, with `--output`, the scores to a JSON file (never written over).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from transformers_mano.utils import atomic_write_text
from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.pathfinder.comparison import score_saved_runs
from experiments.pathfinder.results import transfer_table


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="an output folder of scripts/benchmark_pathfinder.py")
    parser.add_argument(
        "--data_dirs", nargs="+", required=True, help="data folders whose test splits score the models"
    )
    parser.add_argument("--models", nargs="+", help="score only these models' runs (default: all)")
    parser.add_argument("--output", help="write the scores here as JSON")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = score_saved_runs(args.folder, args.data_dirs, args.models)
    print(transfer_table(runs))
    if args.output:
        keep = ("model", "seed", "image_size", "built_for", "test_accuracy", "transfer", "run_dir", "data_dir")
        atomic_write_text(args.output, json.dumps([{k: run.get(k) for k in keep} for run in runs], indent=2) + "\n")
        print(f"scores: {args.output}")


if __name__ == "__main__":
    sys.exit(run_main(main))
