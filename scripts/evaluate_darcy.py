"""Evaluate finished Darcy runs again at every test resolution; MANO optionally with sub-grid inference.

    python scripts/evaluate_darcy.py out/darcy-protocol/mano-lr0.001-s0 --native_resolution 16 --tag native16
    python scripts/evaluate_darcy.py out/darcy-protocol/fno-lr0.003-s0 --interpolate_from 16 --tag interp16
    python scripts/evaluate_darcy.py out/darcy-protocol/mano-lr0.001-s0 --num_levels 4 --tag levels4
    python scripts/evaluate_darcy.py out/darcy-protocol/mano-lr0.001-s0 --attention_resolution none --tag direct
    python scripts/evaluate_darcy.py out/r32-100/mano-lr0.003-s0 --attention_prolongation nominal --tag nominal

Writes evaluation[-<tag>].json into each run folder and prints the errors. See docs/darcy.md.
"""

from __future__ import annotations

import argparse
import sys

from transformers_mano.physics.evaluate import EvaluationArguments, evaluate_run
from transformers_mano.utils.cli import run_main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders written by scripts/train_darcy.py")
    parser.add_argument(
        "--native_resolution",
        type=int,
        default=None,
        help="MANO only: run grids that are multiples of this side as interleaved sub-grids",
    )
    parser.add_argument(
        "--interpolate_from",
        type=int,
        default=None,
        help="any model: predict on the sub-grid of this side at the origin, interpolate linearly",
    )
    parser.add_argument(
        "--attention_resolution",
        default=None,
        help="MANO only: the grid side its attention runs at instead of the saved one ('none': as given)",
    )
    parser.add_argument(
        "--attention_restriction",
        default=None,
        choices=["sample", "linear", "average"],
        help="MANO only: how a finer grid is resampled for the attention (default: the saved way)",
    )
    parser.add_argument(
        "--attention_prolongation",
        default=None,
        choices=["consistent", "nominal"],
        help="MANO only: how the attention's output returns to a finer grid: from the points the "
        "restriction read (consistent) or the trained points' positions (nominal; default: the saved way)",
    )
    parser.add_argument(
        "--num_levels",
        type=int,
        default=None,
        help="MANO only: this level count on every grid instead of the saved one",
    )
    parser.add_argument("--data", default=None, help="data set (default: each run's own)")
    parser.add_argument(
        "--dataset_seed",
        type=int,
        default=None,
        help="generated data: another seed (its test splits as validation sets), not the run's",
    )
    parser.add_argument("--cache_dir", default=None, help="data cache (default: the datasets cache)")
    parser.add_argument("--batch_size", type=int, default=50, help="evaluation batch size (default 50)")
    parser.add_argument("--tag", default="", help="suffix of the output file: evaluation-<tag>.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing evaluation file")
    args = EvaluationArguments(**vars(parser.parse_args(argv)))
    for run_dir in args.run_dirs:
        tests = evaluate_run(run_dir, args)["test"]
        print(
            run_dir,
            " | ".join(
                f"{n}x{n}: rel L2 {m['relative_l2']:.4f}, rel MSE {m['relative_mse']:.5f}" for n, m in tests.items()
            ),
        )


if __name__ == "__main__":
    sys.exit(run_main(main))
