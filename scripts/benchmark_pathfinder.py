"""Train MANO, SwinV2, MANO with one level per stage and a small CNN on a Pathfinder folder under one recipe.

    python scripts/make_pathfinder.py --output_dir data/pathfinder-32
    python scripts/benchmark_pathfinder.py --data_dir data/pathfinder-32 --output_dir out/pathfinder-32 --stem conv
    python scripts/summarize_pathfinder.py out/pathfinder-32  # the table of docs/fine_tuning.md
    python scripts/benchmark_pathfinder.py --data_dir data/pathfinder-128 --output_dir out/pf128 --device cuda

Each run writes `<model>-s<seed>.json` (history, best validation epoch, test accuracy there, parameters, FLOPs,
wall time, machine) into `--output_dir`. See docs/fine_tuning.md for the recipe and the results.
"""

import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser

from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.pathfinder.harness import PathfinderBenchmarkArguments, PathfinderRecipe, run_comparison


def main(argv: list[str]) -> None:
    parser = HfArgumentParser((PathfinderBenchmarkArguments, PathfinderRecipe), description=__doc__.split("\n\n")[0])
    args, recipe = parser.parse_args_into_dataclasses(args=argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_comparison(
        args.data_dir, args.output_dir, args.models, args.seeds, recipe, args.transfer_dirs, args.device
    )
    for result in results:
        print(
            f"{result['model']} seed {result['seed']}: test accuracy {result['test_accuracy']:.4f} "
            f"(best validation epoch {result['best_epoch']}, {result['wall_seconds']:.0f} s)"
        )
        for folder, scored in result["transfer"].items():
            print(f"  on {folder} ({scored['image_size']} px, as trained): {scored['test_accuracy']:.4f}")


if __name__ == "__main__":
    sys.exit(run_main(main))
