"""The benchmark's scaling fits: an exponent is flagged when the sweep cannot support it."""

from __future__ import annotations

import re

import pytest
import torch

from experiments.speed.scaling import fit_exponent


def test_a_clean_linear_sweep_gives_a_trusted_exponent_of_one() -> None:
    tokens = [32**2, 64**2, 128**2, 256**2]
    fit = fit_exponent(tokens, [0.01 * n for n in tokens])
    assert fit["exponent"] == pytest.approx(1.0) and fit["r_squared"] == pytest.approx(1.0) and fit["trusted"]
    quadratic = fit_exponent(tokens, [1e-6 * n * n for n in tokens])
    assert quadratic["exponent"] == pytest.approx(2.0) and quadratic["trusted"]


@pytest.mark.parametrize(
    "tokens, values, reason",
    [
        ([16**2, 32**2], [5.0, 1.2], "2 sizes"),
        ([32**2, 40**2, 48**2], [5.0, 4.0, 6.0], "span"),
        ([16**2, 32**2, 64**2, 128**2], [4.0, 1.0, 9.0, 2.0], "R\\^2"),
        ([16**2, 64**2, 256**2], [9.0, 3.0, 1.0], "negative"),
    ],
    ids=["two-sizes", "narrow-span", "noise", "decreasing"],
)
def test_a_sweep_that_cannot_support_its_exponent_is_flagged(tokens, values, reason) -> None:
    fit = fit_exponent(tokens, values)
    assert not fit["trusted"]
    assert re.search(reason, fit["reason"]), fit["reason"]


def test_forward_profile_splits_operator_time_into_parts():
    from experiments.speed.profiling import OPERATOR_PARTS, OTHER_PART, parts_table, profile_forward

    torch.manual_seed(0)
    profiles = [profile_forward(kind, image_size=64, repeats=1, warmup=1) for kind in ("mano-tiny", "swinv2-tiny")]
    for result in profiles:
        parts = result["parts_ms"]
        assert set(parts) == {*OPERATOR_PARTS, OTHER_PART}
        assert all(ms >= 0 for name, ms in parts.items() if name != OTHER_PART)
        # the parts are a partition of the operators' own time (summed in another order: float rounding only)
        assert sum(parts.values()) == pytest.approx(result["operator_ms"], rel=1e-9)
        assert parts["matrix products (linear, convolution)"] > 0
    table = parts_table(profiles)
    assert table.count("\n") == len(OPERATOR_PARTS) + 3 and "mano-tiny" in table and "swinv2-tiny" in table


def test_stage_times_split_each_block_into_its_parts_for_both_models():
    from experiments.speed.profiling import (
        BLOCK_PARTS,
        OUTSIDE_STAGES,
        REST_OF_BLOCK,
        stage_table,
        stage_times,
    )

    torch.manual_seed(0)
    # 128 px: stage 1 of mano-tiny is a 32x32 grid, planned with coarse levels, so its projectors run
    result = stage_times(image_size=128, repeats=1, warmup=1)
    mano, swinv2 = result["median_ms"]["mano-tiny"], result["median_ms"]["swinv2-tiny"]
    assert mano[f"stage 1 / {BLOCK_PARTS[0]}"] > 0 and f"stage 1 / {BLOCK_PARTS[0]}" not in swinv2
    for times in (mano, swinv2):
        for stage in ("stage 1", "stage 2", "stage 3", "stage 4"):
            assert times[f"{stage} / {BLOCK_PARTS[1]}"] > 0
            # the parts are timed inside the block: what is left of it cannot be negative
            assert times[f"{stage} / {REST_OF_BLOCK}"] >= 0
        # one forward (repeats=1): every hooked module runs inside the timed forward
        assert times[f"total / {OUTSIDE_STAGES}"] >= 0
    table = stage_table(result)
    assert "**whole forward**" in table and table.count("**stage") == 4


def test_attention_core_times_cover_every_core_and_thread_count_and_restore_threads(tmp_path):
    from experiments.speed.profiling import ATTENTION_CORES, attention_core_times, core_table

    before = torch.get_num_threads()
    rows = attention_core_times(6, heads=2, tokens=4, head_dim=3, threads=(1, 2), repeats=3, warmup=1)
    assert torch.get_num_threads() == before
    assert [row["threads"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row["median_ms"]) == set(ATTENTION_CORES) and all(ms > 0 for ms in row["median_ms"].values())
    table = core_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| 6 x 2 x 4 | 2 |" in table


def test_paired_ratio_alternates_both_models_and_counts_page_faults():
    from experiments.speed.scaling import Case, paired_model_ratio

    result = paired_model_ratio(Case("model", "mano-tiny", 64, 1, repeats=3, warmup=1))
    assert len(result["ratios"]) == 3 and all(ratio > 0 for ratio in result["ratios"])
    medians = result["median_ms"]
    assert set(medians) == set(result["minor_page_faults_per_forward"]) == {"mano-tiny", "swinv2-tiny"}
    assert all(count >= 0 for count in result["minor_page_faults_per_forward"].values())
    # the reported ratio is the median of the per-pair ratios, which lies between their extremes
    assert min(result["ratios"]) <= result["median_ratio"] <= max(result["ratios"])
