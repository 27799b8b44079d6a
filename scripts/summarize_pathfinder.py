"""The Pathfinder comparison as a markdown table (and a plot of accuracy against image size) from run folders.

    python scripts/summarize_pathfinder.py out/pf32 out/pf64 --plot reports/pathfinder/accuracy.png \
        --curves reports/pathfinder/curves.png --reach data/pathfinder-32 data/pathfinder-64 data/pathfinder-128

Each folder holds the `<model>-s<seed>.json` runs of `scripts/benchmark_pathfinder.py`; accuracies are the mean
± half the range over seeds.
"""

import argparse
import sys
from pathlib import Path

from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.pathfinder.reach import reach_table
from experiments.pathfinder.results import (
    load_runs,
    plot_accuracy_against_size,
    plot_learning_curves,
    summary_table,
    transfer_table,
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="output folders of scripts/benchmark_pathfinder.py")
    parser.add_argument("--plot", help="write a PNG of test accuracy against image size here")
    parser.add_argument("--curves", help="write a PNG of validation accuracy per epoch, one panel per image size")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --plot and --curves files")
    parser.add_argument(
        "--reach", nargs="+", default=[], help="Pathfinder folders: their curves' spans against the receptive fields"
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.folders)
    print(summary_table(runs))
    if transfer := transfer_table(runs):
        print(f"\nScored on other image sizes as trained (--transfer_dirs):\n\n{transfer}")
    if args.plot:
        print(f"plot: {plot_accuracy_against_size(runs, args.plot, args.overwrite)}")
    if args.curves:
        print(f"curves: {plot_learning_curves(runs, args.curves, args.overwrite)}")
    if args.reach:
        print(f"\nCurve spans and receptive fields (px, measured by gradient):\n\n{reach_table(args.reach)}")


if __name__ == "__main__":
    sys.exit(run_main(main))
