#!/usr/bin/env python
"""Fine-tune MANO (or a SwinV2 baseline) for image classification with Trainer.

    python scripts/run_image_classification.py                    # embedded digits, tiny MANO from scratch, offline
    python scripts/run_image_classification.py --model_type swinv2           # the same run with SwinV2
    python scripts/run_image_classification.py --model_name_or_path org/mano-tiny --dataset cifar100 \
        --train_mode full --output_dir out/ --num_train_epochs 30
    torchrun --nproc_per_node 2 scripts/run_image_classification.py ...

Arguments: `--help`, or docs/fine_tuning.md. A mistake in the arguments or data prints one line; `--traceback` shows the
traceback. Everything lives in `transformers_mano.image_classification`.
"""

import sys

from transformers_mano.image_classification import main
from transformers_mano.utils.cli import run_main


if __name__ == "__main__":
    sys.exit(run_main(main))
