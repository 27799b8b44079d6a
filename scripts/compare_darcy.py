"""Side-by-side table and figure of Darcy runs written by scripts/train_darcy.py.

    python scripts/compare_darcy.py out/mano16 out/fno16 out/vit16 --output out/darcy_comparison
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transformers_mano.darcy_benchmark import comparison_table, load_results, plot_comparison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders holding results.json")
    parser.add_argument("--output", default=None, help="prefix of the .md table and .png figure "
                        "(default: <parent of the first run>/darcy_comparison)")  # fmt: skip
    parser.add_argument("--sample", type=int, default=0, help="test sample shown in the figure")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing table / figure")
    args = parser.parse_args()

    runs = load_results(args.run_dirs)
    prefix = Path(args.output) if args.output else Path(args.run_dirs[0]).parent / "darcy_comparison"
    table_path, figure_path = prefix.with_suffix(".md"), prefix.with_suffix(".png")
    for path in (table_path, figure_path):
        if path.exists() and not args.overwrite:
            parser.error(f"{path} exists; pass --overwrite to replace it")
    table = comparison_table(runs)
    print(table)
    tmp = table_path.with_name(f".{table_path.name}.tmp")
    tmp.write_text(table + "\n")
    tmp.replace(table_path)
    plot_comparison(runs, figure_path, sample=args.sample)
    print(f"wrote {table_path} and {figure_path}")


if __name__ == "__main__":
    main()
