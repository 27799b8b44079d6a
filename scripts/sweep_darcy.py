"""The Darcy protocol: a learning-rate sweep per model (chosen on validation), then more seeds, then a summary.

    python scripts/sweep_darcy.py --output_dir out/darcy-protocol            # MANO, FNO, ViT; 1e-3, 3e-3, 1e-2
    python scripts/sweep_darcy.py --models mano --tag nopos --run_args "--positional_embedding none"

Resumes where it stopped. See docs/darcy.md.
"""

import sys

from transformers import HfArgumentParser

from transformers_mano.physics.sweep import SweepArguments, run_protocol
from transformers_mano.utils.cli import run_main


def main(argv: list[str]) -> None:
    parser = HfArgumentParser(SweepArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    run_protocol(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
