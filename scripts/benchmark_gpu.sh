#!/usr/bin/env bash
# A bounded GPU check (a few minutes): correctness of the fused path on CUDA, then the benchmark sweep in bf16.
#
#   bash scripts/benchmark_gpu.sh [OUTPUT_DIR]
#
# Needs torch with CUDA and this package importable (pip install -e . or PYTHONPATH=src).
set -euo pipefail
out="${1:-benchmark_results/cuda-bfloat16}"
export PYTHONUNBUFFERED=1

timeout 90 python - <<'PY'
import torch
import transformers_mano as tm

assert torch.cuda.is_available(), "no CUDA device"
print("device:", torch.cuda.get_device_name(), "torch", torch.__version__)
torch.manual_seed(0)
model = tm.ManoForImageClassification(tm.ManoConfig(projector_init="avg_pool_nearest_up")).cuda().eval()
pixels = torch.randn(4, 3, 256, 256, device="cuda")
with torch.inference_mode():
    model.set_attn_implementation("eager")
    eager = model(pixels).logits
    model.set_attn_implementation("sdpa")
    sdpa = model(pixels).logits
    difference = (eager - sdpa).abs().max().item()
    print(f"fp32 sdpa vs eager max |logit diff|: {difference:.3e}")
    assert difference < 1e-3
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for size in (256, 512, 1024):
            logits = model(torch.randn(2, 3, size, size, device="cuda")).logits
            assert torch.isfinite(logits).all(), size
    print("bf16 autocast at 256/512/1024 px: finite")
PY

timeout 300 python scripts/benchmark.py --device cuda --dtype bfloat16 --output_dir "$out" --overwrite \
    --layer_grids 32 64 128 256 --global_max_grid 256 --eager_max_grid 128 \
    --image_sizes 256 512 1024 --batch_sizes 1 16 --repeats 5 --warmup 2 --skip_flops
