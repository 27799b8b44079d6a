"""Side-by-side table and figure of Darcy runs written by scripts/train_darcy.py.

python scripts/compare_darcy.py out/darcy/mano out/darcy/fno out/darcy/vit --output out/darcy/comparison
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformers_mano.physics.compare import comparison_table, load_results, plot_comparison, seed_table
from transformers_mano.utils import atomic_write_text, check_new_output
from transformers_mano.utils.cli import run_main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders holding results.json")
    parser.add_argument(
        "--output",
        default=None,
        help="prefix of the .md table and .png figure (default: <parent of the first run>/darcy_comparison)",
    )
    parser.add_argument("--sample", type=int, default=0, help="test sample shown in the figure (default 0)")
    parser.add_argument(
        "--tag",
        default=None,
        help="use the test metrics and predictions of scripts/evaluate_darcy.py --tag TAG where a run has them",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing table and figure")
    args = parser.parse_args(argv)

    runs = load_results(args.run_dirs, tag=args.tag)
    prefix = Path(args.output) if args.output else Path(args.run_dirs[0]).parent / "darcy_comparison"
    table_path, figure_path = prefix.with_suffix(".md"), prefix.with_suffix(".png")
    for path in (table_path, figure_path):
        check_new_output(path, args.overwrite)
    table = comparison_table(runs) + "\n\n" + seed_table(runs)
    print(table)
    atomic_write_text(table_path, table + "\n", overwrite=args.overwrite)
    plot_comparison(runs, figure_path, sample=args.sample, overwrite=args.overwrite, tag=args.tag)
    print(f"wrote {table_path} and {figure_path}")


if __name__ == "__main__":
    sys.exit(run_main(main))
