"""Generate a Pathfinder data set (are the two markers the ends of one dashed curve?) into a folder.

    python scripts/make_pathfinder.py --output_dir data/pathfinder-32
    python scripts/make_pathfinder.py --output_dir data/pathfinder-128 --image_size 128
    python scripts/run_image_classification.py --dataset_name data/pathfinder-32 ...

The folder is a `DatasetDict` of `save_to_disk` (splits train, validation, test; columns image, label,
marker_distance) with `pathfinder.json` (spec, seed, sizes, how much the marker distance alone gives away) and
`samples.png`. See docs/fine_tuning.md.
"""

import json
import sys
from pathlib import Path

from transformers import HfArgumentParser

from transformers_mano.utils.cli import run_main


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/ sits beside scripts/

from experiments.pathfinder.generator import PathfinderArguments, save_pathfinder


def main(argv: list[str]) -> None:
    parser = HfArgumentParser(PathfinderArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    cue = save_pathfinder(
        args.output_dir,
        args.spec(),
        args.num_train,
        args.num_validation,
        args.num_test,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.output_dir}; marker distance alone: {json.dumps(cue)}")


if __name__ == "__main__":
    sys.exit(run_main(main))
