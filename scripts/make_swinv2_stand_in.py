"""Write a SwinV2 checkpoint that stands in for a microsoft/swinv2-* one where the Hub is out of reach.

    python scripts/make_swinv2_stand_in.py --output_dir ./swinv2-t            # SwinV2-T shape, trained-like scales
    python scripts/convert_swinv2_to_mano.py --swinv2_checkpoint ./swinv2-t --output_dir ./mano-tiny

Random weights with logit scales up to the clamp of 100 and position biases near their bounds (as trained
checkpoints have them), saved as the Hub repositories are: config.json, pytorch_model.bin only, the legacy
ViTFeatureExtractor preprocessor file.
"""

from __future__ import annotations

import argparse
import sys

from transformers_mano.conversion.stand_in import save_swinv2_stand_in
from transformers_mano.utils.cli import run_main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="folder to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--fresh", action="store_true", help="keep SwinV2's initial logit scales and biases")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    args = parser.parse_args(argv)
    folder = save_swinv2_stand_in(
        args.output_dir, seed=args.seed, trained_like=not args.fresh, overwrite=args.overwrite
    )
    print(f"wrote {folder}")


if __name__ == "__main__":
    sys.exit(run_main(main))
