"""The DSP kernel variants (runtime_c/src/int8/*_dsp.c) equal the portable kernels bit for
bit, on the host (where dsp.h computes each SIMD instruction in C): the shapes that
exercise their blocking remainders (odd channel counts, odd pixel counts, channel counts
that are not a multiple of four), strides, padding, dilation, left and right shifts, exact
rounding ties, and the layers they hand to the portable kernel. In QEMU the same kernels
run as SXTB16/SMLAD/SMMULR (tests/test_int8_dsp_qemu.py and the model tests)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcutl.quant import fixedpoint as fp
from mcutl.quant import int8_ref as ref
from mcutl.tflite.builder import explicit_output_size
from tests._cbuild import Int8Lib, KernelError, load_int8_lib

pytestmark = [pytest.mark.host]


@pytest.fixture(scope="session")
def clib(tmp_path_factory: pytest.TempPathFactory) -> Int8Lib:
    return load_int8_lib(tmp_path_factory.mktemp("int8lib"))


@st.composite
def conv_cases(draw: st.DrawFn, depthwise: bool = False) -> dict[str, Any]:
    kh = draw(st.sampled_from([1, 1, 3, 5]))
    kw = draw(st.sampled_from([kh, kh, 1, 3, 5]))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    out = []
    for i, (size, k) in enumerate(((h, kh), (w, kw))):
        after = draw(st.integers(0, k - 1))
        eff = (k - 1) * dil[i] + 1
        if size + pad[i] + after < eff:
            after = eff - size - pad[i]
        out.append(explicit_output_size(size, k, stride[i], pad[i], after, dil[i]))
    return dict(
        n=draw(st.integers(1, 2)), h=h, w=w, kh=kh, kw=kw, stride=stride, dil=dil, pad=pad,
        out=tuple(out),
        c_in=draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 12, 16, 17])),
        c_out=draw(st.integers(1, 11)),
        dm=draw(st.sampled_from([1, 1, 1, 2])) if depthwise else 1,
        zp_in=draw(st.integers(-128, 127)), zp_out=draw(st.integers(-128, 127)),
        # small spreads give multipliers > 1 (left shifts), pow2 exact rounding ties
        spread=draw(st.sampled_from([0.001, 0.03, 0.3, 1.0, 10.0])),
        pow2=draw(st.booleans()),
        act=draw(st.sampled_from(["NONE", "RELU", "RELU6"])),
        with_bias=draw(st.sampled_from([True, True, False])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _scales(rng: np.random.Generator, c: dict[str, Any], n_out: int, k: int
            ) -> tuple[float, np.ndarray, float]:
    s_in = float(np.float32(10 ** rng.uniform(-3, 0)))
    s_w = (10 ** rng.uniform(-4, -1) * 10 ** rng.uniform(-0.5, 0.5, n_out)).astype(np.float32)
    s_out = float(np.float32(s_in * float(np.median(s_w)) * 190 * math.sqrt(k) * c["spread"]))
    if c["pow2"]:
        def p2(x: Any) -> Any:
            return np.float32(2.0) ** np.round(np.log2(np.asarray(x, np.float64))).astype(
                np.float32)
        s_in, s_w, s_out = float(p2(s_in)), p2(s_w).astype(np.float32), float(p2(s_out))
    return s_in, s_w, s_out


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(conv_cases())
def test_conv2d_dsp_equals_portable(clib: Int8Lib, c: dict[str, Any]) -> None:
    rng = np.random.default_rng(c["seed"])
    k = c["kh"] * c["kw"] * c["c_in"]
    s_in, s_w, s_out = _scales(rng, c, c["c_out"], k)
    p = fp.conv_params(s_in, c["zp_in"], s_w, s_out, c["zp_out"], c["c_out"],
                       stride=c["stride"], dilation=c["dil"], pad=c["pad"],
                       activation=c["act"])
    x = rng.integers(-128, 128, (c["n"], c["h"], c["w"], c["c_in"])).astype(np.int8)
    wq = rng.integers(-127, 128, (c["c_out"], c["kh"], c["kw"], c["c_in"])).astype(np.int8)
    bias = (rng.normal(0, 5400 * math.sqrt(k), c["c_out"]).round().astype(np.int32)
            if c["with_bias"] else None)
    want = ref.conv2d_s8(p, x, wq, bias, c["out"])
    np.testing.assert_array_equal(clib.conv2d_s8(p, x, wq, bias, c["out"]), want)
    np.testing.assert_array_equal(clib.conv2d_s8(p, x, wq, bias, c["out"], kernels="dsp"),
                                  want)


def _conv_layer(c_in: int, c_out: int, k: int, bias_value: int | None = None,
                ) -> tuple[fp.ConvParams, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(c_in * 100 + c_out)
    p = fp.conv_params(0.05, 3, np.full(c_out, 0.01, np.float32), 0.05 * 0.01 * 60, -4,
                       c_out, pad=(k // 2, k // 2), activation="RELU6")
    x = rng.integers(-128, 128, (1, 5, 6, c_in)).astype(np.int8)
    wq = rng.integers(-127, 128, (c_out, k, k, c_in)).astype(np.int8)
    bias = np.full(c_out, 1000 if bias_value is None else bias_value, np.int32)
    return p, x, wq, bias


def test_conv2d_dsp_takes_its_fast_path(clib: Int8Lib) -> None:
    """A plain layer runs the SIMD path: it needs its scratch (NULL is rejected, and so is
    a misaligned one: LDRD would fault on the device)."""
    p, x, wq, bias = _conv_layer(8, 6, 3)
    with pytest.raises(KernelError):
        clib.conv2d_s8(p, x, wq, bias, (5, 6), kernels="dsp", scratch=False)
    with pytest.raises(KernelError):
        clib.conv2d_s8(p, x, wq, bias, (5, 6), kernels="dsp", scratch_offset=2)
    np.testing.assert_array_equal(
        clib.conv2d_s8(p, x, wq, bias, (5, 6), kernels="dsp", scratch_offset=4),
        ref.conv2d_s8(p, x, wq, bias, (5, 6)))


def test_conv2d_dsp_hands_unprovable_layers_to_the_portable_kernel(clib: Int8Lib) -> None:
    """A bias so large that the fast requantisation could overflow: the portable kernel
    runs (no scratch needed) and the output is still exact."""
    p, x, wq, bias = _conv_layer(8, 6, 3, bias_value=600_000_000)
    want = ref.conv2d_s8(p, x, wq, bias, (5, 6))
    got = clib.conv2d_s8(p, x, wq, bias, (5, 6), kernels="dsp", scratch=False)
    np.testing.assert_array_equal(got, want)


def test_conv2d_dsp_buffer_size_matches_the_planner(clib: Int8Lib) -> None:
    """What the C asks for is what mcutl plans into the arena."""
    from mcutl.ops.conv import conv_dsp_scratch_bytes

    for groups, shape in ((1, (16, 3, 3, 8)), (1, (5, 1, 1, 3)), (2, (4, 3, 3, 2))):
        p, _, _, _ = _conv_layer(8, 6, 3)
        p = dataclasses.replace(p, groups=groups)
        assert clib.conv2d_s8_dsp_buffer_size(p, shape) == conv_dsp_scratch_bytes(shape,
                                                                                 groups)


@SETTINGS
@given(conv_cases(depthwise=True))
def test_depthwise_conv2d_dsp_equals_portable(clib: Int8Lib, c: dict[str, Any]) -> None:
    from mcutl.ops.conv import dw_dsp_scratch_bytes

    rng = np.random.default_rng(c["seed"])
    c_out = c["c_in"] * c["dm"]
    s_in, s_w, s_out = _scales(rng, c, c_out, c["kh"] * c["kw"])
    p = fp.depthwise_conv_params(s_in, c["zp_in"], s_w, s_out, c["zp_out"], c_out,
                                 stride=c["stride"], dilation=c["dil"], pad=c["pad"],
                                 depth_multiplier=c["dm"], activation=c["act"])
    x = rng.integers(-128, 128, (c["n"], c["h"], c["w"], c["c_in"])).astype(np.int8)
    wq = rng.integers(-127, 128, (1, c["kh"], c["kw"], c_out)).astype(np.int8)
    bias = (rng.normal(0, 5400 * c["kh"] * c["kw"], c_out).round().astype(np.int32)
            if c["with_bias"] else None)
    want = ref.depthwise_conv2d_s8(p, x, wq, bias, c["out"])
    np.testing.assert_array_equal(clib.depthwise_conv2d_s8(p, x, wq, bias, c["out"]), want)
    got = clib.depthwise_conv2d_s8(p, x, wq, bias, c["out"], kernels="dsp")
    np.testing.assert_array_equal(got, want)
    # what the C asks for is what mcutl plans into the arena
    assert clib.last_dw_buffer_size == dw_dsp_scratch_bytes(
        x.shape, wq.shape, (c["n"], *c["out"], c_out), c["stride"][1], c["pad"][1], c["dm"],
        c["dil"][1])


def test_depthwise_dsp_takes_its_fast_path_and_hands_back_the_rest(clib: Int8Lib) -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (1, 6, 7, 8)).astype(np.int8)
    for dm, dil, bias_value, fast in ((1, (1, 1), 1000, True), (1, (2, 1), 1000, True),
                                      (2, (1, 1), 1000, False), (1, (1, 2), 1000, False),
                                      (1, (1, 1), 600_000_000, False)):
        c_out = 8 * dm
        p = fp.depthwise_conv_params(0.05, 3, np.full(c_out, 0.01, np.float32), 0.02, -4,
                                     c_out, pad=(1, 1), dilation=dil, depth_multiplier=dm,
                                     activation="RELU")
        wq = rng.integers(-127, 128, (1, 3, 3, c_out)).astype(np.int8)
        bias = np.full(c_out, bias_value, np.int32)
        out_hw = (6 - 2 * (dil[0] - 1), 7 - 2 * (dil[1] - 1))
        want = ref.depthwise_conv2d_s8(p, x, wq, bias, out_hw)
        if fast:  # the SIMD path: it needs its scratch
            with pytest.raises(KernelError):
                clib.depthwise_conv2d_s8(p, x, wq, bias, out_hw, kernels="dsp", scratch=False)
            got = clib.depthwise_conv2d_s8(p, x, wq, bias, out_hw, kernels="dsp")
        else:  # the portable kernel, which needs none
            got = clib.depthwise_conv2d_s8(p, x, wq, bias, out_hw, kernels="dsp",
                                           scratch=False)
        np.testing.assert_array_equal(got, want)


def test_the_planner_gives_each_dsp_kernel_its_scratch() -> None:
    """With the DSP kernels every conv call gets its scratch in the arena, live only
    while it runs (no overlap with anything live then), of the size the op asks; the
    portable kernels get none; a target's set is its `kernels`."""
    import torch

    from examples.backbones import TinyMBV2, randomize_batchnorm_stats, spread_init
    from mcutl.codegen.backbone import generate_backbone
    from mcutl.codegen.context import scratch_key
    from mcutl.compile import load_and_quantize
    from mcutl.ops.base import get_op
    from mcutl.tflite.export import export_tflite

    torch.manual_seed(0)
    model = randomize_batchnorm_stats(spread_init(TinyMBV2(seed=1))).eval()
    calib = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    graph = load_and_quantize(model, calib, (1, 1, 28, 28))
    tfl = export_tflite(graph)
    # layer by layer: one call per conv (row streaming repeats a call per band,
    # test_streaming.py)
    dsp = generate_backbone(graph, tfl, "stm32f405", streaming="off")
    portable = generate_backbone(graph, tfl, "stm32f405", kernels="portable", streaming="off")
    host = generate_backbone(graph, tfl, "host", streaming="off")  # the banner names the target
    assert host.files["model.c"].split("\n", 1)[1] == portable.files["model.c"].split("\n", 1)[1]
    convs = [n for n in graph.nodes if n.op == "conv2d"]
    scratch = {b.name: b for b in dsp.plan.buffers if b.name.endswith("#scratch")}
    # a conv keeps its DSP kernel where the scratch fits under the all-portable peak
    # (test_fast_kernels_never_raise_the_arena); those that do get exactly their scratch
    assert 5 <= len(scratch) < len(convs)
    model_c = dsp.files["model.c"]
    for step, node in enumerate(graph.nodes, start=1):
        if node.op == "conv2d" and scratch_key(node.name) in scratch:
            b = scratch[scratch_key(node.name)]
            assert (b.first, b.last) == (step, step)
            assert b.size == get_op(node.op, node).scratch_bytes(node, graph, "dsp") > 0
    assert model_c.count("_conv2d_s8_dsp(") == len(scratch)
    dsp.plan.check_no_overlap()
    assert dsp.plan.arena_size() == portable.plan.arena_size()
    assert not any(b.name.endswith("#scratch") for b in portable.plan.buffers)
    assert "_dsp(" not in portable.files["model.c"]


def test_fast_kernels_never_raise_the_arena(tmp_path: Path) -> None:
    """The planner keeps a layer's DSP kernel only where its scratch fits under the
    all-portable peak: a stm32f405 build's arena is the portable build's, inference and
    training, and some layers still run the DSP kernels."""
    import json

    import torch

    from examples.backbones import TinyMBV2, randomize_batchnorm_stats, spread_init
    from mcutl.compile import compile_backbone, compile_training

    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyMBV2(seed=1))).eval()
    calib = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    arena, total, calls = {}, {}, {}
    for k in ("portable", "dsp"):
        info = compile_backbone(model, "stm32f405", tmp_path / k, calib=calib,
                                input_shape=(1, 1, 28, 28), kernels=k)[0]
        arena[k] = info.arena_bytes
        calls[k] = (tmp_path / k / "model.c").read_text().count("_dsp(")
        compile_training(model, "stm32f405", tmp_path / f"t{k}", num_classes=4, calib=calib,
                         input_shape=(1, 1, 28, 28), method="last", kernels=k)
        total[k] = json.loads((tmp_path / f"t{k}" / "plan.json").read_text())["total_bytes"]
    assert arena["dsp"] == arena["portable"] and total["dsp"] == total["portable"]
    assert calls["portable"] == 0 and calls["dsp"] >= 5
