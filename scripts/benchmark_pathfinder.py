"""Train MANO, SwinV2, their ablations and two CNNs on a Pathfinder folder under one recipe.

    python scripts/make_pathfinder.py --output_dir data/pathfinder-32
    python scripts/benchmark_pathfinder.py --data_dir data/pathfinder-32 --output_dir out/pf32 --models swinv2 mano
    python scripts/summarize_pathfinder.py out/pf32  # the tables of reports/pathfinder.md
    # a SwinV2 trained at 32 px, converted to MANO by the project's converter, continued at 64 px:
    python scripts/benchmark_pathfinder.py --data_dir data/pathfinder-64 --output_dir out/pf64 \
        --convert_from out/pf32 --models converted-gated --epochs 2 --learning_rate 1e-4
    python scripts/benchmark_pathfinder.py ... --resume true   # an interrupted run goes on from its last epoch
    python scripts/benchmark_pathfinder.py --data_dir data/pathfinder-128 --output_dir out/pf128 --device cuda

Each run writes `<model>-s<seed>.json` (history, best validation epoch, test accuracy there, parameters, FLOPs,
wall time, machine, commit) and `<model>-s<seed>.safetensors` into `--output_dir`. See reports/pathfinder.md.
"""

import sys
from pathlib import Path

import torch
from transformers import HfArgumentParser

from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.pathfinder.comparison import PathfinderBenchmarkArguments, run_comparison
from experiments.pathfinder.training import PathfinderRecipe


def main(argv: list[str]) -> None:
    parser = HfArgumentParser((PathfinderBenchmarkArguments, PathfinderRecipe), description=__doc__.split("\n\n")[0])
    args, recipe = parser.parse_args_into_dataclasses(args=argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = run_comparison(
        args.data_dir, args.output_dir, args.models, args.seeds, recipe, args.transfer_dirs, args.device, args.resume
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
