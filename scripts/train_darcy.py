"""Train one neural operator (MANO, FNO or ViT) on Darcy flow and evaluate it at every test resolution.

    python scripts/train_darcy.py --model mano --data neuralop_darcy_16 --output_dir out/mano16
    python scripts/train_darcy.py --model fno  --data neuralop_darcy_16 --output_dir out/fno16
    python scripts/train_darcy.py --model vit  --data neuralop_darcy_16 --output_dir out/vit16

Baselines are sized to the parameter count of the MANO of the same arguments. See docs/darcy.md.
"""

from __future__ import annotations

from transformers import HfArgumentParser

from transformers_mano.darcy_benchmark import DarcyRunArguments, run_darcy


def main() -> None:
    (args,) = HfArgumentParser(DarcyRunArguments).parse_args_into_dataclasses()
    results = run_darcy(args)
    print(f"wrote {args.output_dir} ({results['train_wall_s']:.0f} s of training)")


if __name__ == "__main__":
    main()
