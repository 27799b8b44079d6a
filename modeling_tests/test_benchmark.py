"""The benchmark's scaling fits: an exponent is flagged when the sweep cannot support it."""

from __future__ import annotations

import re

import pytest

from transformers_mano.benchmark.scaling import fit_exponent


def test_a_clean_linear_sweep_gives_a_trusted_exponent_of_one() -> None:
    tokens = [32**2, 64**2, 128**2, 256**2]
    fit = fit_exponent(tokens, [0.01 * n for n in tokens])
    assert fit["exponent"] == pytest.approx(1.0) and fit["r_squared"] == pytest.approx(1.0) and fit["trusted"]
    quadratic = fit_exponent(tokens, [1e-6 * n * n for n in tokens])
    assert quadratic["exponent"] == pytest.approx(2.0) and quadratic["trusted"]


@pytest.mark.parametrize(
    "tokens, values, reason",
    [([16**2, 32**2], [5.0, 1.2], "2 sizes"), ([32**2, 40**2, 48**2], [5.0, 4.0, 6.0], "span"),
     ([16**2, 32**2, 64**2, 128**2], [4.0, 1.0, 9.0, 2.0], "R\\^2"), ([16**2, 64**2, 256**2], [9.0, 3.0, 1.0], "negative")],
    ids=["two-sizes", "narrow-span", "noise", "decreasing"],
)  # fmt: skip
def test_a_sweep_that_cannot_support_its_exponent_is_flagged(tokens, values, reason) -> None:
    fit = fit_exponent(tokens, values)
    assert not fit["trusted"]
    assert re.search(reason, fit["reason"]), fit["reason"]
