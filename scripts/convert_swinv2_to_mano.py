"""Convert a SwinV2 checkpoint (Hub id or local folder) into a MANO checkpoint folder, and optionally publish it.

    python scripts/convert_swinv2_to_mano.py \
        --swinv2_checkpoint microsoft/swinv2-tiny-patch4-window8-256 --output_dir ./mano-tiny \
        [--levels 3 2 1 1] [--projector_init avg_pool_zero_up] [--num_labels 100 --label_names ...] \
        [--overwrite] [--push_to_hub --hub_model_id org/mano-tiny]

Everything happens in `transformers_mano.conversion.convert_swinv2_checkpoint`; this script parses arguments and prints
the conversion report. Publishing happens only with --push_to_hub. A failed conversion prints one line and writes
nothing; `--traceback` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from transformers_mano.conversion import convert_swinv2_checkpoint
from transformers_mano.conversion.swinv2_to_mano import MANO_COUNTERPARTS
from transformers_mano.multipole import LEVEL_WEIGHTINGS, PROJECTOR_INITS, PROJECTOR_TYPES
from transformers_mano.utils.cli import run_main


def parse_levels(values: list[str]) -> str | list[int]:
    """`--levels auto` or one positive integer per stage."""
    if values == ["auto"]:
        return "auto"
    try:
        return [int(value) for value in values]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels takes 'auto' or one integer per stage, got {values}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swinv2_checkpoint", required=True, help="Hub id or local folder of a SwinV2 checkpoint")
    parser.add_argument("--output_dir", required=True, help="folder to create with the MANO checkpoint")
    parser.add_argument("--levels", nargs="+", default=["auto"], help="'auto' or levels per stage, e.g. 3 2 1 1")
    parser.add_argument("--projector_init", choices=PROJECTOR_INITS, default="avg_pool_zero_up")
    parser.add_argument("--projector_type", choices=PROJECTOR_TYPES, default="conv")
    parser.add_argument("--level_weighting", choices=LEVEL_WEIGHTINGS, default="vcycle")
    parser.add_argument("--num_labels", type=int, help="new classification head of this size (re-initialised)")
    parser.add_argument("--label_names", nargs="+", help="names of the new head's classes, in index order")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output_dir")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --swinv2_checkpoint")
    parser.add_argument("--cache_dir", help="download cache for Hub checkpoints (default: the Hub cache)")
    parser.add_argument(
        "--source_architecture",
        choices=sorted(MANO_COUNTERPARTS),
        help="the SwinV2 class of the checkpoint, where its config.json names none",
    )
    parser.add_argument("--num_check_inputs", type=int, default=2, help="random inputs of the check (0 skips it)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-5, help="largest accepted |output difference| in float64 (default 1e-5)"
    )
    parser.add_argument("--base_model", help="Hub id for the card's base_model (default: the Hub checkpoint)")
    parser.add_argument("--license", default="apache-2.0", help="license in the model card")
    parser.add_argument("--card_template", help="a model card template of your own (default: the package's)")
    parser.add_argument("--push_to_hub", action="store_true", help="upload the folder to --hub_model_id")
    parser.add_argument("--hub_model_id", help="Hub repository to upload to, e.g. your-org/mano-tiny")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")
    return parser


def main(argv: list[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        levels = parse_levels(args.levels)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    report = convert_swinv2_checkpoint(
        args.swinv2_checkpoint,
        args.output_dir,
        num_levels=levels,
        projector_init=args.projector_init,
        projector_type=args.projector_type,
        level_weighting=args.level_weighting,
        num_labels=args.num_labels,
        label_names=args.label_names,
        overwrite=args.overwrite,
        revision=args.revision,
        cache_dir=args.cache_dir,
        source_architecture_name=args.source_architecture,
        num_check_inputs=args.num_check_inputs,
        tolerance=args.tolerance,
        base_model=args.base_model,
        license=args.license,
        card_template=args.card_template,
        push_to_hub=args.push_to_hub,
        hub_model_id=args.hub_model_id,
        private=args.private,
    )
    print(report.format())


if __name__ == "__main__":
    sys.exit(run_main(main))
