"""Shared fixtures: tiny MANO configurations whose shapes the tests compute from the config."""

from __future__ import annotations

import os

import pytest
import torch

# No Hub, no network: every model and data set in the tests is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# Prepended to the code of a subprocess that must run as on a machine without this package: any import of
# `transformers_mano` fails, so models can only come from the remote code saved beside their weights.
REFUSE_PACKAGE_IMPORT = """
import importlib.abc, sys

class RefuseMano(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers_mano":
            raise ImportError("transformers_mano is blocked in this process")

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
        self.config_kwargs = dict(
            image_size=image_size,
            patch_size=2,
            num_channels=3,
            embed_dim=16,
            depths=[2, 2],
            num_heads=[2, 4],
            window_size=2,
            mlp_ratio=2.0,
            drop_path_rate=0.0,
            num_labels=5,
            encoder_stride=4,
            projector_init="avg_pool_nearest_up",
        )
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
