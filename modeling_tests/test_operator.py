"""The MANO neural operator: shapes from the config at several resolutions, the window attention against a naive
loop, gradients, save/load, Auto classes and remote code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import FLOAT64_ATOL, FLOAT64_RTOL, REFUSE_PACKAGE_IMPORT
from huggingface_hub.errors import StrictDataclassError
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel

from transformers_mano import ManoOperatorConfig, ManoOperatorModel
from transformers_mano.models.mano_operator.modeling_mano_operator import (
    AUTO_MAP,
    ManoOperatorWindowAttention,
    axis_positions,
    grid_coordinates,
    interpolation_matrix,
    nearest_matrix,
    relative_l2,
    resample_grid,
    resampling_matrix,
    sampled_interpolation_matrix,
)
from transformers_mano.models.mano_operator.window_kernel import (
    fused_window_attention,
    kernel_applies,
    kernel_library,
)


KERNELS = ["torch", "fused"]


def kernel_config(kernel: str) -> dict[str, str]:
    """The config value that selects `kernel`; the fused kernel is skipped where this machine cannot build it."""
    if kernel == "fused" and kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    return {"attention_kernel": "auto" if kernel == "fused" else "torch"}


def tiny_config(**overrides) -> ManoOperatorConfig:
    kwargs = {
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "head_dim": 4,
        "intermediate_size": 16,
    }
    return ManoOperatorConfig(**(kwargs | overrides))


def fields(batch_size: int, side: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch_size, side, side, channels, generator=torch.Generator().manual_seed(seed))


def window_starts(side: int, window_size: int, window_stride: int) -> list[int]:
    """Windows start at the origin and every `window_stride` points after it until one reaches the far edge."""
    starts = [0]
    while starts[-1] + window_size < side:
        starts.append(starts[-1] + window_stride)
    return starts


def naive_window_attention(attention: ManoOperatorWindowAttention, grid: torch.Tensor) -> torch.Tensor:
    """Loop over every k x k window, attend among its points inside the grid, average the overlaps."""
    batch_size, height, width, _ = grid.shape
    k, s, heads, head_dim = attention.window_size, attention.window_stride, attention.num_heads, attention.head_dim
    inner = heads * head_dim
    query, key, value = attention.qkv(attention.norm(grid)).split(inner, dim=-1)
    total = torch.zeros(batch_size, height, width, inner, dtype=grid.dtype)
    count = torch.zeros(height, width, dtype=grid.dtype)
    for top in window_starts(height, k, s):
        for left in window_starts(width, k, s):
            points = [(y, x) for y in range(top, top + k) for x in range(left, left + k) if y < height and x < width]

            def gather(tensor: torch.Tensor) -> torch.Tensor:
                stacked = torch.stack([tensor[:, y, x] for y, x in points], dim=1)  # B, n, inner
                return stacked.view(batch_size, len(points), heads, head_dim).transpose(1, 2)  # B, heads, n, d

            out = F.scaled_dot_product_attention(gather(query), gather(key), gather(value))
            out = out.transpose(1, 2).reshape(batch_size, len(points), inner)
            for n, (y, x) in enumerate(points):
                total[:, y, x] += out[:, n]
                count[y, x] += 1
    return attention.proj(total / count[None, :, :, None])


@pytest.mark.parametrize(
    "window_size, window_stride, height, width",
    [(2, 1, 5, 6), (2, 2, 3, 3), (3, 2, 6, 7), (3, 1, 7, 4), (4, 1, 2, 3), (2, 1, 1, 1)],
    ids=["k2s1", "k2s2-odd", "k3s2-overhang", "k3s1", "grid-smaller-than-window", "single-point"],
)
@pytest.mark.parametrize("kernel", KERNELS)
def test_window_attention_matches_a_naive_loop(window_size, window_stride, height, width, kernel) -> None:
    torch.manual_seed(0)
    config = tiny_config(window_size=window_size, window_stride=window_stride, **kernel_config(kernel))
    attention = ManoOperatorWindowAttention(config).double()
    grid = torch.randn(2, height, width, 8, dtype=torch.float64)
    (output,) = attention([grid])
    # the same function in float64, summed in another order: see FLOAT64_ATOL
    torch.testing.assert_close(output, naive_window_attention(attention, grid), rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("window_size, window_stride", [(2, 1), (3, 2)], ids=["k2s1", "k3s2-overhang"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_window_attention_gradients_match_the_naive_loop(window_size, window_stride, kernel) -> None:
    """Each path's backward (the tiled one's gathers and scatter of the window probabilities; the fused kernel's
    hand-written two passes) against autograd through the loop, for the input and every parameter, on a grid whose
    tiles and windows overhang its edges."""
    torch.manual_seed(0)
    config = tiny_config(window_size=window_size, window_stride=window_stride, **kernel_config(kernel))
    attention = ManoOperatorWindowAttention(config).double()
    grid = torch.randn(2, 6, 7, 8, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 6, 7, 8, dtype=torch.float64)
    inputs = [grid, *attention.parameters()]
    (output,) = attention([grid])
    fast = torch.autograd.grad((output * upstream).sum(), inputs)
    naive = torch.autograd.grad((naive_window_attention(attention, grid) * upstream).sum(), inputs)
    for got, expected in zip(fast, naive, strict=True):
        # float64 sums of at most a few hundred terms in another order: see FLOAT64_ATOL
        torch.testing.assert_close(got, expected, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("kernel", KERNELS)
def test_window_attention_of_all_levels_at_once_equals_one_level_at_a_time(kernel) -> None:
    torch.manual_seed(0)
    attention = ManoOperatorWindowAttention(tiny_config(**kernel_config(kernel))).double()
    grids = [torch.randn(2, side, side + 1, 8, dtype=torch.float64) for side in (9, 5, 3, 2, 1)]
    for output, grid in zip(attention(grids), grids, strict=True):
        torch.testing.assert_close(
            output, naive_window_attention(attention, grid), rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_fused_kernel_equals_the_tiled_path_in_a_model(dtype) -> None:
    """A whole operator (five levels at 20 x 20, trained-like weights: not the init) through both paths, outputs
    and every parameter's gradient."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    torch.manual_seed(0)
    model = ManoOperatorModel(tiny_config(attention_kernel="torch")).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    inputs, labels = fields(2, 20).to(dtype), fields(2, 20, seed=1).to(dtype)
    results = []
    for kernel in ("torch", "auto"):
        model.config.attention_kernel = kernel
        model.zero_grad()
        output = model(inputs, labels=labels)
        output.loss.backward()
        results.append([output.predictions.detach()] + [p.grad.clone() for p in model.parameters()])
    # float64: sums of at most a few hundred terms in another order (see FLOAT64_ATOL). float32: unit roundoff 6e-8,
    # the same sums through two blocks and their backward on values of order 1-10: errors of order 1e-5 at most,
    # where a wrong mask or overlap weight moves outputs by O(0.1)
    tolerance = (
        {"rtol": FLOAT64_RTOL, "atol": FLOAT64_ATOL} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    )
    for tiled, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, tiled, **tolerance)


def test_fused_kernel_handles_windows_whose_terms_all_underflow() -> None:
    """The kernel subtracts one max per query, over all its neighbours; a window that does not hold that neighbour
    can then see every term underflow (score gaps above ~745 in float64) and must fall back to its own max."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    attention = ManoOperatorWindowAttention(tiny_config(attention_kernel="torch")).double()
    sizes = ((6, 5), (3, 3))
    qkv = torch.randn(2, 39, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    qkv[..., :8] *= 3000.0  # queries of norm ~6000 against keys of norm ~2: neighbour scores thousands apart
    scores = (qkv[:, :30, :4] * qkv[:, 1:31, 8:12]).sum(-1)  # head 0, each token against its right neighbour
    assert (scores - (qkv[:, :30, :4] * qkv[:, :30, 8:12]).sum(-1)).abs().max() > 1000
    qkv.requires_grad_(True)
    upstream = torch.randn(2, 39, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tiled = attention._tiled_attention(qkv, sizes)
    fused = fused_window_attention(
        qkv, [(h, w, h, w) for h, w in sizes], heads=2, head_dim=4, window_size=2, window_stride=1
    )
    for got, expected in zip(
        (fused, *torch.autograd.grad((fused * upstream).sum(), qkv)),
        (tiled, *torch.autograd.grad((tiled * upstream).sum(), qkv)),
        strict=True,
    ):
        assert torch.isfinite(got).all()
        # float64 sums of a few terms, of scores ~1e4 whose rounding (1e-12 relative) moves the softmax by 1e-12
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_fused_kernel_gives_the_same_bits_at_any_thread_count() -> None:
    """Threads split the tokens; each value is summed by one thread in one order, so 1 and 3 threads agree exactly."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    grids = [(9, 7, 9, 7), (5, 4, 5, 4), (1, 1, 2, 2)]
    qkv = torch.randn(2, 9 * 7 + 5 * 4 + 1, 3 * 2 * 4, requires_grad=True, generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(2, qkv.shape[1], 8, generator=torch.Generator().manual_seed(1))
    results = []
    for count in (1, 3):
        output = fused_window_attention(qkv, grids, heads=2, head_dim=4, window_size=2, window_stride=1, threads=count)
        results.append((output, torch.autograd.grad((output * upstream).sum(), qkv)[0]))
    assert all(torch.equal(one, three) for one, three in zip(*results, strict=True))


def test_second_derivatives_and_torch_func_match_the_tensor_path() -> None:
    """A loss on the operator's input gradient (as physics-informed training writes) differentiates through the
    kernel's backward, which then runs the tensor path; torch.func's transforms take the tensor path."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    torch.manual_seed(0)
    model = ManoOperatorModel(tiny_config()).double()
    inputs = fields(2, 8).double()
    tangent = fields(2, 8, seed=1).double()
    results = []
    for kernel in ("torch", "auto"):
        model.config.attention_kernel = kernel
        model.zero_grad()
        points = inputs.clone().requires_grad_(True)
        (slope,) = torch.autograd.grad(model(points).predictions.sum(), points, create_graph=True)
        slope.square().sum().backward()
        _, directional = torch.func.jvp(lambda x: model(x).predictions, (inputs,), (tangent,))
        # (biases of the last layers do not move the input gradient: no grad, as zeros)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
        results.append([slope.detach(), directional, *grads])
    for tiled, fused in zip(*results, strict=True):
        # float64 through two blocks and two orders of differentiation: see FLOAT64_ATOL
        torch.testing.assert_close(fused, tiled, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_fused_kernel_keeps_its_precision_with_denormals_flushed() -> None:
    """With flush-to-zero on, a window whose terms lie just above the smallest normal float against the query's max
    must not lose its smaller terms: it is normalised on its own max."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    qkv = torch.zeros(1, 3, 3)  # one head of width 1 on a 1 x 3 grid: q = 1, keys -87, -87.6, 0, values 1, 2, 3
    qkv[0, :, 0], qkv[0, :, 1], qkv[0, :, 2] = 1.0, torch.tensor([-87.0, -87.6, 0.0]), torch.tensor([1.0, 2, 3])
    attention = ManoOperatorWindowAttention(tiny_config(num_attention_heads=1, head_dim=1, attention_kernel="torch"))
    expected = attention._tiled_attention(qkv, ((1, 3),))
    flushing = torch.set_flush_denormal(True)
    try:
        if not flushing:
            pytest.skip("this processor cannot flush denormals")
        got = fused_window_attention(qkv, [(1, 3, 2, 3)], heads=1, head_dim=1, window_size=2, window_stride=1)
    finally:
        torch.set_flush_denormal(False)
    # float32 softmaxes of three terms: a few unit roundoffs; losing the -87.6 term moves the middle output by 0.18
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_missing_home_directory_leaves_the_tensor_path(monkeypatch) -> None:
    """Containers run as an arbitrary user may have no home: no cache, no kernel, no error."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    kernel_library.cache_clear()
    try:
        assert kernel_library() is None and not kernel_applies(torch.zeros(1))
    finally:
        monkeypatch.undo()
        kernel_library.cache_clear()


def test_torch_compile_traces_the_tensor_path(monkeypatch) -> None:
    """Inside `torch.compile` the kernel (a foreign call the compiler cannot trace) gives way to the tile path."""
    if kernel_library() is None:
        pytest.skip("no C++ compiler builds the fused window kernel here")
    tensor = torch.zeros(2, 3)
    assert kernel_applies(tensor) and not kernel_applies(tensor.bfloat16())
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not kernel_applies(tensor)


def test_a_compiler_without_native_code_builds_the_portable_kernel(monkeypatch, tmp_path) -> None:
    """A toolchain that rejects -march=native (some clang builds, cross compilers) still gets the fused kernel."""
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler here")
    wrapper = tmp_path / "cxx"
    rejecting = 'for a in "$@"; do [ "$a" = "-march=native" ] && exit 1; done'
    wrapper.write_text(f'#!/bin/sh\n{rejecting}\nexec {compiler} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CXX", str(wrapper))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kernel_library.cache_clear()
    try:
        assert kernel_library() is not None
        assert len(list((tmp_path / "cache").rglob("*.so"))) == 1  # the portable build only, no leftovers
        grids = [(5, 4, 5, 4), (2, 2, 2, 2)]
        qkv = torch.randn(2, 24, 3 * 2 * 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        output = fused_window_attention(qkv, grids, heads=2, head_dim=4, window_size=2, window_stride=1)
        assert output.shape == (2, 24, 8) and torch.isfinite(output).all()
    finally:
        monkeypatch.undo()
        kernel_library.cache_clear()


def test_without_a_compiler_the_operator_keeps_the_tensor_path(monkeypatch, tmp_path) -> None:
    """A build that fails leaves no file in the cache and no error: the same model runs, on the tensor path."""
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel_library.cache_clear()
    try:
        assert kernel_library() is None
        assert not kernel_applies(torch.zeros(1))
        assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
        torch.manual_seed(0)
        model = ManoOperatorModel(tiny_config())  # attention_kernel "auto"
        reference = ManoOperatorModel(tiny_config(attention_kernel="torch"))
        reference.load_state_dict(model.state_dict())
        inputs = fields(2, 8)
        assert torch.equal(model(inputs).predictions, reference(inputs).predictions)
    finally:
        monkeypatch.undo()
        kernel_library.cache_clear()


@pytest.mark.parametrize("side", [16, 32], ids=["16x16", "32x32"])
def test_output_shapes_at_two_resolutions(side: int) -> None:
    config = tiny_config(out_channels=2)
    model = ManoOperatorModel(config).eval()
    output = model(fields(3, side))
    assert output.predictions.shape == (3, side, side, config.out_channels)
    assert output.last_hidden_state.shape == (3, side, side, config.hidden_size)
    assert output.loss is None and torch.isfinite(output.predictions).all()


def test_level_count_follows_the_grid() -> None:
    config = tiny_config()
    assert [config.levels_for(side, side) for side in (2, 4, 16, 32, 64)] == [1, 2, 4, 5, 6]  # floor(log2 side)
    assert tiny_config(sampling_rate=4).levels_for(16, 16) == 2
    assert tiny_config(num_levels=3).levels_for(64, 64) == 3


def test_single_level_is_local_attention_without_projectors() -> None:
    model = ManoOperatorModel(tiny_config(num_levels=1))
    assert all(layer.down is None and layer.up is None for layer in model.layers)
    layer, grid = model.layers[0], torch.randn(2, 8, 8, 8)
    expected = grid + layer.attention([grid])[0]
    torch.testing.assert_close(layer(grid), expected + layer.feed_forward(expected))


def test_projectors_are_shared_by_every_level() -> None:
    names = [name for name, _ in ManoOperatorModel(tiny_config()).named_parameters()]
    assert [n for n in names if n.startswith("layers.0.") and ("down" in n or "up" in n)] == [
        "layers.0.down.weight",
        "layers.0.up.weight",
    ]


@pytest.mark.parametrize("positional_embedding", ["none", "grid"])
def test_every_parameter_gets_a_gradient(positional_embedding: str) -> None:
    model = ManoOperatorModel(tiny_config(positional_embedding=positional_embedding))
    output = model(fields(2, 8), labels=fields(2, 8, seed=1))
    assert output.loss.ndim == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["autocast", "bfloat16-weights"])
def test_bfloat16_runs_stay_close_to_float64(mode: str) -> None:
    torch.manual_seed(0)
    model = ManoOperatorModel(tiny_config(window_stride=1)).double()
    inputs, labels = fields(2, 16).double(), fields(2, 16, seed=1).double()
    with torch.no_grad():
        reference = model(inputs).predictions
    if mode == "autocast":
        model.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(inputs.float(), labels=labels.float())
    else:
        model.to(torch.bfloat16)
        output = model(inputs.bfloat16(), labels=labels.bfloat16())
    output.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # bfloat16 rounds to 2^-9 relative; two blocks chain a few dozen roundings (about 7e-3 measured), so 5e-2
    # (13 unit roundoffs) holds on any machine while a lost mask or a wrong overlap weight is off by O(1).
    error = (output.predictions.double() - reference).norm() / reference.norm()
    assert output.predictions.dtype == torch.bfloat16 and error < 5e-2


def test_normalisation_is_part_of_the_model() -> None:
    torch.manual_seed(0)
    plain = ManoOperatorModel(tiny_config()).eval()
    scaled = ManoOperatorModel(tiny_config(input_mean=1.0, input_std=2.0, output_mean=3.0, output_std=4.0)).eval()
    scaled.load_state_dict(plain.state_dict())
    inputs = fields(2, 8)
    with torch.no_grad():
        expected = plain(inputs * 0.5 - 0.5).predictions * 4.0 + 3.0  # (a - 1) / 2 = a / 2 - 1 / 2
        torch.testing.assert_close(scaled(inputs).predictions, expected)


def test_relative_l2_and_loss() -> None:
    targets = torch.ones(2, 4, 4, 1)
    predictions = targets.clone()
    predictions[1] *= 1.5
    torch.testing.assert_close(relative_l2(predictions, targets), torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(relative_l2(predictions, targets, squared=True), torch.tensor([0.0, 0.25]))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"window_stride": 3}, "window_stride"),
        ({"num_levels": 0}, "num_levels"),
        ({"num_levels": "many"}, "num_levels"),
        ({"positional_embedding": "sine"}, "positional_embedding"),
        ({"sampling_rate": 1}, "sampling_rate"),
        ({"output_std": 0.0}, "output_std"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"grid_layout": "cells"}, "grid_layout"),
        ({"attention_resolution": 1}, "attention_resolution"),
        ({"attention_kernel": "cuda"}, "attention_kernel"),
    ],
    ids=[
        "stride>window",
        "zero-levels",
        "levels-string",
        "positional",
        "rate",
        "std",
        "width",
        "layout",
        "attention-side",
        "kernel",
    ],
)
def test_bad_config_values_name_the_field(overrides, field) -> None:
    with pytest.raises(StrictDataclassError, match=field):
        tiny_config(**overrides)


def test_bad_input_shape_is_explained() -> None:
    with pytest.raises(ValueError, match="channel-last"):
        ManoOperatorModel(tiny_config())(torch.rand(2, 1, 8, 8))


def test_save_load_and_auto_round_trip(tmp_path) -> None:
    model = ManoOperatorModel(tiny_config(input_mean=0.5, output_std=2.0)).eval()
    model.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "modeling_mano_operator.py",
        "configuration_mano_operator.py",
        "multipole.py",
    } <= files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "mano_operator" and config["auto_map"] == AUTO_MAP
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ManoOperatorConfig)
    inputs = fields(2, 32)  # saved at any size, run at 32 x 32
    for loaded in (ManoOperatorModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is ManoOperatorModel
        with torch.no_grad():
            assert torch.equal(loaded.eval()(inputs).predictions, model(inputs).predictions)


LOAD_WITHOUT_PACKAGE = REFUSE_PACKAGE_IMPORT + textwrap.dedent(
    """
    import sys

    import torch
    from transformers import AutoModel

    folder, inputs, outputs = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        torch.save(model(torch.load(inputs)).predictions, outputs)
    """
)


def test_remote_code_load_without_the_package(tmp_path) -> None:
    model = ManoOperatorModel(tiny_config()).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    inputs = fields(2, 16)
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_WITHOUT_PACKAGE,
            str(tmp_path / "checkpoint"),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(tmp_path / "hf_home"),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        },  # the same thread count computes the same bits
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "out.pt"), model(inputs).predictions)


def test_native_resolution_runs_finer_grids_as_interleaved_sub_grids() -> None:
    """With native_resolution n, a 2n x 2n grid gives, on each of its four interleaved n x n sub-grids, what the
    model gives on that sub-grid alone (with the sub-grid's own coordinates taken from the fine grid)."""
    torch.manual_seed(0)
    plain = ManoOperatorModel(tiny_config(positional_embedding="grid")).double().eval()
    native = ManoOperatorModel(tiny_config(positional_embedding="grid", native_resolution=8)).double().eval()
    native.load_state_dict(plain.state_dict())
    fine = fields(2, 16).double()  # normalisation is the identity (mean 0, std 1) in this config
    with torch.no_grad():
        output = native(fine).predictions
        assert torch.equal(native(fine[:, ::2, ::2]).predictions, plain(fine[:, ::2, ::2]).predictions)  # n x n
        assert not torch.allclose(output, plain(fine).predictions)
        for i in (0, 1):
            for j in (0, 1):
                coordinates = grid_coordinates(16, 16, fine.device, fine.dtype)[:, i::2, j::2].expand(2, -1, -1, -1)
                sub_grid = native.encode(fine[:, i::2, j::2], coordinates)
                expected = native.head_out(torch.tanh(native.head_hidden(sub_grid)))
                # one batch of four sub-grids against one sub-grid, in float64: see FLOAT64_ATOL
                torch.testing.assert_close(output[:, i::2, j::2], expected, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)
        assert native(fields(2, 12).double()).predictions.shape == (2, 12, 12, 1)  # not a multiple: runs as given
    with pytest.raises(StrictDataclassError, match="native_resolution"):
        tiny_config(native_resolution=1)


@pytest.mark.parametrize("restriction", ["sample", "linear", "average"])
@pytest.mark.parametrize("layout", ["corners", "strided"])
@pytest.mark.parametrize("source, target", [(16, 8), (15, 8), (64, 32), (20, 7), (8, 16), (5, 9)])
def test_resampling_keeps_affine_fields_and_averages(layout, source, target, restriction) -> None:
    """Linear interpolation (onto a finer grid, and "linear" onto a coarser one) reproduces an affine function of
    position exactly where the target points lie between source points; "sample" takes the source point nearest
    each target point; "average" is a weighted mean (non-negative rows that sum to 1) that keeps an affine function
    where its weights are symmetric. On nested grids "sample" and "linear" both select the coarse points."""
    matrix = resampling_matrix(source, target, layout, restriction)
    assert matrix.shape == (target, source) and bool((matrix >= 0).all())
    torch.testing.assert_close(matrix.sum(-1), torch.ones(target, dtype=torch.float64), rtol=0, atol=1e-15)
    position = axis_positions(target, source, layout)  # the target points in units of the source grid's index
    affine = 0.3 + 2.0 * axis_positions(source, source, layout)
    resampled, expected = matrix @ affine, 0.3 + 2.0 * position
    if target > source or restriction == "linear":  # interpolation: exact up to the last source point
        inside = position <= source - 1
        torch.testing.assert_close(resampled[inside], expected[inside], rtol=0, atol=1e-12)  # float64 rounding
    elif restriction == "sample":  # one source point per row, the nearest (within half a source spacing)
        chosen = matrix.argmax(-1)
        assert bool((matrix.max(-1).values == 1).all()) and bool(((chosen - position).abs() <= 0.5 + 1e-12).all())
    elif layout == "strided" and source == 2 * target:  # full weighting: 1/4, 1/2, 1/4 around each coarse point
        torch.testing.assert_close(matrix[1, :4], torch.tensor([0.0, 0.25, 0.5, 0.25], dtype=torch.float64))
        torch.testing.assert_close(resampled[1:-1], expected[1:-1], rtol=0, atol=1e-12)
    nested = (layout == "strided" and source % target == 0) or (
        layout == "corners" and (source - 1) % (target - 1) == 0
    )
    if restriction != "average" and target < source and nested:  # the coarse points are points of the fine grid
        stride = source // target if layout == "strided" else (source - 1) // (target - 1)
        assert torch.equal(matrix, torch.eye(source, dtype=torch.float64)[::stride][:target])


@pytest.mark.parametrize("layout", ["corners", "strided"])
@pytest.mark.parametrize("fine, coarse", [(64, 32), (63, 32), (16, 8), (15, 8), (50, 17), (33, 32), (8, 8), (9, 1)])
def test_consistent_prolongation_is_undone_by_sampling(layout, fine, coarse) -> None:
    """The "consistent" prolongation interpolates from the fine points that "sample" reads: sampling its output gives
    the coarse values back exactly (on grids that are not nested too), it is a linear interpolation (non-negative
    rows summing to 1, affine functions of the fine index kept between the first and last points read), and on
    nested grids it is the nominal interpolation."""
    matrix = resampling_matrix(coarse, fine, layout, "sample", "consistent")
    torch.testing.assert_close(matrix, sampled_interpolation_matrix(fine, coarse, layout), rtol=0, atol=0)
    assert torch.equal(nearest_matrix(fine, coarse, layout) @ matrix, torch.eye(coarse, dtype=torch.float64))
    assert bool((matrix >= 0).all())
    torch.testing.assert_close(matrix.sum(-1), torch.ones(fine, dtype=torch.float64), rtol=0, atol=1e-15)
    read = nearest_matrix(fine, coarse, layout).argmax(-1).double()  # the fine indices the coarse values stand at
    inside = torch.arange(fine) <= read.max()
    torch.testing.assert_close(
        (matrix @ (0.3 + 2.0 * read))[inside], (0.3 + 2.0 * torch.arange(fine).double())[inside], rtol=0, atol=1e-12
    )  # float64 rounding of a two-term sum
    nested = (layout == "strided" and fine % coarse == 0) or (
        layout == "corners" and (fine - 1) % max(coarse - 1, 1) == 0
    )
    if nested:
        assert torch.equal(matrix, interpolation_matrix(fine, coarse, layout))
    for restriction in ("linear", "average"):  # their values stand at the coarse points: nominal interpolation
        assert torch.equal(
            resampling_matrix(coarse, fine, layout, restriction, "consistent"),
            interpolation_matrix(fine, coarse, layout),
        )


def test_consistent_prolongation_keeps_the_trained_computation_on_grids_that_are_not_nested() -> None:
    """On a 16 x 16 "corners" grid (not nested with 8 x 8: 15 would be), with attention_resolution 8 and the
    "consistent" prolongation, the prediction at the points the restriction reads equals the 8 x 8 model's on those
    points' values: every block reads back exactly what the attention wrote. The "nominal" prolongation moves the
    update by up to a quarter of a trained spacing there, and the blocks compound it. Both agree on nested grids."""
    torch.manual_seed(0)
    plain = ManoOperatorModel(tiny_config()).double().eval()
    models = {}
    for prolongation in ("nominal", "consistent"):
        models[prolongation] = (
            ManoOperatorModel(tiny_config(attention_resolution=8, attention_prolongation=prolongation)).double().eval()
        )
        models[prolongation].load_state_dict(plain.state_dict())
    fine = fields(2, 16).double()
    read = nearest_matrix(16, 8, "corners").argmax(-1)
    coarse = fine[:, read][:, :, read]
    with torch.no_grad():
        reference = plain(coarse).predictions
        consistent = models["consistent"](fine).predictions[:, read][:, :, read]
        nominal = models["nominal"](fine).predictions[:, read][:, :, read]
        # float64 sums of a few products over two blocks of width 8, one grid against another: see FLOAT64_ATOL
        torch.testing.assert_close(consistent, reference, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)
        assert relative_l2(nominal, reference).max() > 1e-4  # a shifted update: relative errors of order 1e-2
        nested = fields(2, 15).double()
        assert torch.equal(models["consistent"](nested).predictions, models["nominal"](nested).predictions)
        assert torch.equal(models["consistent"](coarse).predictions, reference)


def test_resample_grid_applies_the_axis_matrices_to_every_channel() -> None:
    grid = torch.rand(2, 16, 12, 3, dtype=torch.float64)
    rows, cols = resampling_matrix(16, 8, "strided"), resampling_matrix(12, 6, "strided")
    expected = torch.stack([rows @ grid[b, :, :, c] @ cols.T for b in range(2) for c in range(3)]).view(2, 3, 8, 6)
    torch.testing.assert_close(resample_grid(grid, 8, 6, "strided"), expected.permute(0, 2, 3, 1))


def smooth_field(side: int, layout: str) -> torch.Tensor:
    """(1, side, side, 1) float64: a smooth coefficient field sampled at the grid points of `layout`."""
    position = axis_positions(side, 2, layout)  # in [0, 1]: units of a two-point axis
    y, x = torch.meshgrid(position, position, indexing="ij")
    return (torch.sin(3.0 * y + 1.0) * torch.cos(2.0 * x) + 0.5 * x * y)[None, :, :, None]


@pytest.mark.parametrize("positional_embedding", ["none", "grid"])
@pytest.mark.parametrize("layout, fine_side", [("strided", 16), ("corners", 15)])
def test_attention_resolution_is_one_operator_on_nested_grids(layout, fine_side, positional_embedding) -> None:
    """With attention_resolution 8 the model is unchanged on 8 x 8 grids (bit for bit); on a finer grid that holds
    the 8 x 8 grid's points (nested) it computes at those points what it computes on the 8 x 8 grid, since the
    attention sees the values there and the interpolation back is exact there; run directly it does not."""
    torch.manual_seed(0)
    config = {"positional_embedding": positional_embedding, "grid_layout": layout}
    plain = ManoOperatorModel(tiny_config(**config)).double().eval()
    resampled = ManoOperatorModel(tiny_config(attention_resolution=8, **config)).double().eval()
    resampled.load_state_dict(plain.state_dict())
    coarse, fine = smooth_field(8, layout), smooth_field(fine_side, layout)
    torch.testing.assert_close(fine[:, ::2, ::2], coarse, rtol=0, atol=1e-15)  # nested grids: the same points
    with torch.no_grad():
        assert torch.equal(resampled(coarse).predictions, plain(coarse).predictions)
        reference = plain(coarse).predictions
        # float64 sums of a few products over two blocks of width 8, one grid against another: see FLOAT64_ATOL
        torch.testing.assert_close(
            resampled(fine).predictions[:, ::2, ::2], reference, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
        )
        direct = relative_l2(plain(fine).predictions[:, ::2, ::2], reference)
        assert resampled(fields(1, 13).double()).predictions.shape == (1, 13, 13, 1)  # any side, coarser too
        assert resampled(fields(1, 5).double()).predictions.shape == (1, 5, 5, 1)
    assert direct > 1e-3  # run as given, the stencils see other spacings (relative errors of order 0.1)


def test_averaging_restriction_stays_closer_to_the_trained_grid_than_running_directly() -> None:
    """With the "average" restriction the fine prediction at the trained points is no longer exact, but on a smooth
    field it stays much closer to the 8 x 8 prediction than the model run directly."""
    torch.manual_seed(0)
    plain = ManoOperatorModel(tiny_config()).double().eval()
    averaged = (
        ManoOperatorModel(tiny_config(attention_resolution=8, grid_layout="strided", attention_restriction="average"))
        .double()
        .eval()
    )
    averaged.load_state_dict(plain.state_dict())
    coarse, fine = smooth_field(8, "strided"), smooth_field(16, "strided")
    with torch.no_grad():
        reference = plain(coarse).predictions
        consistent = relative_l2(averaged(fine).predictions[:, ::2, ::2], reference)
        direct = relative_l2(plain(fine).predictions[:, ::2, ::2], reference)
    assert consistent < direct / 2, (consistent, direct)  # measured 0.035 against 0.121 (float64, seed 0)


def test_trained_grid_coordinates_follow_the_layout() -> None:
    """Coordinates in the trained grid's units: linspace at the trained side; on a nested finer grid, the trained
    points' own coordinates at those points."""
    for layout, fine in (("strided", 32), ("corners", 31)):
        trained = grid_coordinates(16, 16, torch.device("cpu"), torch.float64, 16, layout)
        assert torch.equal(trained, grid_coordinates(16, 16, torch.device("cpu"), torch.float64))
        finer = grid_coordinates(fine, fine, torch.device("cpu"), torch.float64, 16, layout)
        torch.testing.assert_close(finer[:, ::2, ::2], trained, rtol=0, atol=1e-15)


def test_attention_resolution_layer_attends_on_the_resampled_grid() -> None:
    """A block on a 16 x 16 grid adds the interpolated multipole attention of its 8 x 8 restriction."""
    torch.manual_seed(0)
    model = ManoOperatorModel(tiny_config(attention_resolution=8, grid_layout="strided")).double().eval()
    layer, grid = model.layers[0], torch.rand(2, 16, 16, 8, dtype=torch.float64)
    with torch.no_grad():
        attended = grid + resample_grid(
            layer.multipole_attention(resample_grid(grid, 8, 8, "strided")), 16, 16, "strided"
        )
        torch.testing.assert_close(layer(grid), attended + layer.feed_forward(attended))
        assert layer.config.levels_for(8, 8) == 3  # the trained grid's levels, whatever the input
