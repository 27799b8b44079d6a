"""Train one neural operator (MANO, FNO or ViT) on Darcy flow with Trainer, and test it at every resolution.

    python scripts/train_darcy.py --model mano --output_dir out/darcy/mano
    python scripts/train_darcy.py --model fno  --output_dir out/darcy/fno --learning_rate 3e-3
    python scripts/train_darcy.py --help          # every option, with the protocol's defaults

Baselines are sized to the parameter count of the MANO of the same arguments. A mistake in the arguments or data
prints one line; `--traceback` shows the traceback. See docs/darcy.md.
"""

import sys

from transformers_mano.physics.training import main
from transformers_mano.utils.cli import run_main


if __name__ == "__main__":
    sys.exit(run_main(main))
