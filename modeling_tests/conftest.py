"""Shared fixtures: tiny MANO configurations whose shapes the tests compute from the config."""

from __future__ import annotations

import math
import os


# No Hub, no network: every model and data set in the tests is built locally. Set before anything imports
# huggingface_hub, which reads these once, at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--other-transformers-python",
        default=None,
        help="Python of an environment with another supported transformers release (and this package): the "
        "cross-release remote-code test saves in each environment and loads in the other. .ci/run passes it.",
    )


# Prepended to the code of a subprocess that must run as on a machine without this package, and with a transformers
# whose SwinV2 modules moved or changed: any import of `transformers_mano` or `transformers.models.swinv2` fails, so
# models can only come from the self-contained code saved beside their weights.
REFUSE_PACKAGE_IMPORT = """
import importlib.abc, sys

class RefuseMano(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers_mano" or name.startswith("transformers.models.swinv2"):
            raise ImportError(f"{name} is blocked in this process")

sys.meta_path.insert(0, RefuseMano())
"""


class ManoModelTester:
    """Builds a tiny MANO config and inputs, and computes the shapes every head must return.

    32 px images in 2 px patches give a 16x16 token grid; with window 2, the automatic rule plans
    3 levels in stage 1 (16 -> 8 -> 4) and 2 in stage 2 (8 -> 4).
    """

    def __init__(self, batch_size: int = 2, image_size: int = 32, **overrides):
        self.batch_size = batch_size
        self.image_size = image_size
        self.config_kwargs = {
            "image_size": image_size,
            "patch_size": 2,
            "num_channels": 3,
            "embed_dim": 16,
            "depths": [2, 2],
            "num_heads": [2, 4],
            "window_size": 2,
            "mlp_ratio": 2.0,
            "drop_path_rate": 0.0,
            "num_labels": 5,
            "encoder_stride": 4,
            "projector_init": "avg_pool_nearest_up",
        }
        self.config_kwargs.update(overrides)

    def get_config(self):
        from transformers_mano import ManoConfig

        return ManoConfig(**self.config_kwargs)

    def pixel_values(self, size: int | None = None, seed: int = 0) -> torch.Tensor:
        size = size or self.image_size
        generator = torch.Generator().manual_seed(seed)
        channels = self.config_kwargs["num_channels"]
        return torch.randn(self.batch_size, channels, size, size, generator=generator)

    def expected_grid(self, size: int | None = None) -> tuple[int, int]:
        """Token grid of the last stage for square images of `size` pixels (SwinV2 pads odd grids up)."""
        side = -(-(size or self.image_size) // self.config_kwargs["patch_size"])
        for _ in range(len(self.config_kwargs["depths"]) - 1):
            side = (side + 1) // 2
        return side, side

    @property
    def hidden_size(self) -> int:
        return self.config_kwargs["embed_dim"] * 2 ** (len(self.config_kwargs["depths"]) - 1)


@pytest.fixture
def tester() -> ManoModelTester:
    torch.manual_seed(0)
    return ManoModelTester()


# ----------------------------------------------------------------------------------------------------------------------
# Interrupted training runs (the resume tests of fine-tuning and Darcy)


class StopAtStep(TrainerCallback):
    """Stops training after `step` (after its checkpoint is written), as a killed job would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


# ----------------------------------------------------------------------------------------------------------------------
# Trained-like weights and numeric comparisons


from transformers_mano.conversion.stand_in import make_trained_like  # noqa: E402, F401  (re-exported for tests)


# float32 unit roundoff
FLOAT32_EPS = 2.0**-24
# Two float32 orderings of the same arithmetic each miss the exact (float64) value by their own rounding. Per
# output, that rounding is a sum of many roughly independent terms, so two orderings' largest errors over a
# tensor differ by a small factor (1.0-1.2 measured on SwinV2-T at trained scales); 4 leaves room for that
# spread. The floor, 64 ulps of the largest output, covers outputs where the baseline happens to round exactly.
ACCURACY_FACTOR = 4.0
ACCURACY_FLOOR_ULPS = 64


def assert_as_accurate(
    candidate: torch.Tensor, baseline: torch.Tensor, reference: torch.Tensor, what: str = "", reduction: int = 1
) -> None:
    """float32 `candidate` is about as close to the float64 `reference` as float32 `baseline` is.

    Used where two float32 paths compute the same function: at trained logit scales (up to 100), float32 rounding
    is amplified through every softmax, so SwinV2's own float32 output is ~2e-4 off its float64 value on SwinV2-T.
    An absolute float32 tolerance would be a statement about one machine; this one is about the arithmetic.

    `reduction`: how many terms each element sums when the two paths sum them by different formulas (a weight's
    gradient sums one term per token of every image). Reordering such a sum moves it by about sqrt(reduction) ulps
    of its magnitude whichever path is the more accurate, so the floor grows with 4 sqrt(reduction).
    """
    reference = reference.double()
    candidate_error = (candidate.double() - reference).abs().max().item()
    baseline_error = (baseline.double() - reference).abs().max().item()
    ulps = max(ACCURACY_FLOOR_ULPS, 4 * math.sqrt(reduction))
    floor = ulps * FLOAT32_EPS * reference.abs().max().item()
    assert candidate_error <= ACCURACY_FACTOR * baseline_error + floor, (
        f"{what}: float32 error {candidate_error:.3e} against float64, baseline's {baseline_error:.3e} "
        f"(allowed {ACCURACY_FACTOR:g}x + {floor:.1e})"
    )


# Where two paths compute the same function in float64, they differ by reordered float64 rounding: unit roundoff
# 1.1e-16, amplified by the logit scale (<= 116 with the position bias), reductions of up to ~10^3 terms and a few
# layers: at most ~1e-11 on outputs of order 1 (4e-13 measured on SwinV2-T at trained scales). A semantic
# difference (a mask applied once instead of twice, a missing level) shows at 1e-6 or more.
FLOAT64_ATOL = 1e-9
FLOAT64_RTOL = 1e-9
