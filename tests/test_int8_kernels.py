"""The int8 C kernels are bit-exact with TFLite's reference kernels.

For every operator, hypothesis draws random geometries and quantisation, builds a
single-op .tflite with ``mcutl.tflite.builder``, runs it on tflite-runtime
(BUILTIN_REF) and TFLite Micro, runs the C kernel (ctypes) and the numpy
reference, and asserts that all four agree bit for bit.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcutl.quant import fixedpoint as fp
from mcutl.quant import int8_ref as ref
from mcutl.tflite.builder import (
    TFLiteBuilder,
    compute_padding,
    explicit_output_size,
    tflite_padding,
)
from mcutl.tflite.oracle import OracleError, run_tflite_ref, run_tflm
from tests._cbuild import ARM_CFLAGS, Int8Lib, KernelError, compile_objects, load_int8_lib

pytestmark = [pytest.mark.tflite, pytest.mark.host]

HAVE_GCC = shutil.which("gcc") is not None
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None

OPS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ACTS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])


@pytest.fixture(scope="session")
def clib(tmp_path_factory: pytest.TempPathFactory) -> Int8Lib:
    if not HAVE_GCC:
        pytest.skip("gcc not installed")
    return load_int8_lib(tmp_path_factory.mktemp("int8lib"))


# --------------------------------------------------------------------------- helpers


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """float32-representable values spread over [lo, hi] on a log scale."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(np.float32(10.0**e)))


zero_points = st.integers(-128, 127)


def rand_int8(rng: np.random.Generator, shape: tuple[int, ...], lo: int = -128) -> np.ndarray:
    return rng.integers(lo, 128, size=shape).astype(np.int8)


def assert_bit_exact(**results: np.ndarray) -> None:
    """All arrays equal (same shape, same values); the message names who differs."""
    names = list(results)
    base = results[names[0]]
    for name in names[1:]:
        other = results[name]
        assert other.shape == base.shape, f"{name} shape {other.shape} != {names[0]} {base.shape}"
        diff = other.astype(np.int32) - base.astype(np.int32)
        nbad = int(np.count_nonzero(diff))
        assert nbad == 0, (
            f"{name} differs from {names[0]} at {nbad}/{diff.size} outputs "
            f"(max |diff| {int(np.abs(diff).max())}, first at "
            f"{np.argwhere(diff)[0].tolist()})"
        )


def run_oracles(model: bytes, inputs: list[np.ndarray], tflm_model: bytes | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outputs of tflite-runtime (BUILTIN_REF) and TFLM; TFLM's arena must be reported."""
    tfl = run_tflite_ref(model, inputs)
    micro, arena = run_tflm(tflm_model if tflm_model is not None else model, inputs)
    assert arena > 0
    return tfl, micro


def weight_scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """A base scale in [1e-4, 1e-1] with +-0.5 decade of per-channel variation."""
    base = 10.0 ** rng.uniform(-4, -1)
    return (base * 10.0 ** rng.uniform(-0.5, 0.5, n)).astype(np.float32)


def output_scale_for(s_in: float, s_w: np.ndarray, k: int, spread: float) -> float:
    """An output scale putting typical outputs (accumulator std ~ 7600 sqrt(K) with the
    bias) near +-40 LSB, times ``spread``."""
    return float(np.float32(s_in * float(np.median(s_w)) * 190.0 * math.sqrt(k) * spread))


def pow2(x: float | np.ndarray) -> Any:
    """Round scales to powers of two: the real multipliers become exact powers of two,
    so both rounding steps of the requantisation meet exact ties (the cases where
    implementations such as CMSIS-NN's or ruy's differ)."""
    r = np.float32(2.0) ** np.round(np.log2(np.asarray(x, dtype=np.float64))).astype(np.float32)
    return float(r) if np.ndim(x) == 0 else r.astype(np.float32)


def random_bias(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.normal(0.0, 5400.0 * math.sqrt(k), size=n).round().astype(np.int32)


@st.composite
def spatial_padding(draw: st.DrawFn, hw: tuple[int, int], k: tuple[int, int],
                    stride: tuple[int, int], dil: tuple[int, int]) -> dict[str, Any]:
    """TFLite has one padding mode for both dims: 'SAME', 'VALID' or 'EXPLICIT'
    (pads up to k-1 per side, realised in the model as a PAD op + VALID)."""
    eff = [(k[i] - 1) * dil[i] + 1 for i in range(2)]
    modes = ["SAME", "EXPLICIT"] + (["VALID"] if all(hw[i] >= eff[i] for i in range(2)) else [])
    mode = draw(st.sampled_from(modes))
    out, before, after = [], [], []
    for i in range(2):
        if mode == "EXPLICIT":
            bf = draw(st.integers(0, k[i] - 1))
            lo = max(0, eff[i] - hw[i] - bf)
            af = draw(st.sampled_from([max(bf, lo), lo, max(lo, k[i] - 1)]))
            o = explicit_output_size(hw[i], k[i], stride[i], bf, af, dil[i])
        else:
            o, bf, af = compute_padding(mode, hw[i], k[i], stride[i], dil[i])
        out.append(o)
        before.append(bf)
        after.append(af)
    return dict(mode=mode, out=tuple(out), pad=tuple(before), pad_after=tuple(after))


# --------------------------------------------------------------------------- fixed point


@settings(max_examples=400, deadline=None)
@given(
    x=st.integers(fp.INT32_MIN, fp.INT32_MAX),
    m=st.one_of(st.integers(1 << 30, fp.INT32_MAX), st.just(0), st.just(fp.INT32_MIN)),
    shift=st.integers(-31, 12),
)
def test_requantize_c_matches_numpy_and_exact_model(clib: Int8Lib, x: int, m: int,
                                                    shift: int) -> None:
    """C helper == numpy model == an independent big-integer evaluation of the spec."""
    got_np = int(fp.multiply_by_quantized_multiplier(np.int64(x), m, shift))
    got_c = int(clib.lib.mcutl_test_requantize(x, m, shift))
    # independent model: Python ints, explicit rounding rules
    left, right = max(shift, 0), max(-shift, 0)
    xs = ((x << left) + 2**31) % 2**32 - 2**31  # int32 wrap
    if xs == m == fp.INT32_MIN:
        hi = fp.INT32_MAX
    else:
        prod = xs * m
        hi = (prod + 2**30) // 2**31  # floor(p + 1/2): nearest, exact ties upward
    if right:
        q, r = divmod(abs(hi), 2**right)
        q += 1 if 2 * r >= 2**right else 0
        hi = q if hi >= 0 else -q
    assert got_c == got_np == hi


@settings(max_examples=200, deadline=None)
@given(a=st.integers(fp.INT32_MIN, fp.INT32_MAX), b=st.integers(fp.INT32_MIN, fp.INT32_MAX),
       e=st.integers(0, 31))
def test_fixedpoint_primitives_c_matches_numpy(clib: Int8Lib, a: int, b: int, e: int) -> None:
    assert clib.lib.mcutl_test_srdhm(a, b) == int(fp.saturating_rounding_doubling_high_mul(a, b))
    assert clib.lib.mcutl_test_rdbpot(a, e) == int(fp.rounding_divide_by_pot(a, e))


def test_quantize_multiplier_edge_cases() -> None:
    assert fp.quantize_multiplier(0.0) == (0, 0)
    assert fp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fp.quantize_multiplier(0.75) == (3 << 29, 0)
    # q * 2^31 rounds up to 2^31: halved, exponent incremented
    assert fp.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    # below 2^-32 everything is flushed to zero
    assert fp.quantize_multiplier(2.0**-33) == (0, 0)
    assert fp.quantize_multiplier(2.0**-32) == (1 << 30, -31)
    # ties round away from zero: q*2^31 = 2^30 + 0.5
    assert fp.quantize_multiplier((2.0**30 + 0.5) / 2.0**31) == ((1 << 30) + 1, 0)
    assert fp.quantize_multiplier(-0.75) == (-(3 << 29), 0)
    with pytest.raises(ValueError):
        fp.quantize_multiplier(float("nan"))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e6))
def test_quantize_multiplier_represents_value(real: float) -> None:
    m, s = fp.quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert abs(fp.dequantize_multiplier(m, s) - real) <= real * 2.0**-30


def test_tflite_padding_mapping() -> None:
    # PyTorch k=3 s=1 p=1 == SAME; p=0 == VALID
    assert tflite_padding(7, 3, 1, 1, 1) == "SAME"
    assert tflite_padding(7, 3, 1, 0, 0) == "VALID"
    # k=3 s=2 p=1: SAME on odd input, but not on even input (SAME pads 0 top, 1 bottom)
    assert tflite_padding(7, 3, 2, 1, 1) == "SAME"
    assert tflite_padding(8, 3, 2, 1, 1) is None
    assert compute_padding("SAME", 8, 3, 2) == (4, 0, 1)
    assert tflite_padding(8, 3, 2, 0, 1) == "SAME"
    # k=1 s=2: SAME and VALID coincide (VALID is reported first)
    assert tflite_padding(8, 1, 2, 0, 0) == "VALID"
    # k=5 p=2 s=1 == SAME; trailing padding no window reaches does not matter
    assert tflite_padding(9, 5, 1, 2, 2) == "SAME"
    assert tflite_padding(6, 3, 2, 0, 1) == "SAME"
    assert tflite_padding(6, 3, 2, 0, 0) == "VALID"


# --------------------------------------------------------------------------- CONV_2D


@st.composite
def conv_cases(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg_in = draw(st.integers(1, 5))
    cg_out = draw(st.integers(1, 4))
    kh = draw(st.sampled_from([1, 3, 5]))
    kw = draw(st.sampled_from([kh, kh, 1, 3, 5]))
    sh = draw(st.integers(1, 2))
    sw = draw(st.integers(1, 2))
    dh = draw(st.sampled_from([1, 1, 1, 2]))
    dw = draw(st.sampled_from([1, 1, 1, 2]))
    h = draw(st.integers(1, 11))
    w = draw(st.integers(1, 11))
    geo = draw(spatial_padding((h, w), (kh, kw), (sh, sw), (dh, dw)))
    return dict(
        n=draw(st.integers(1, 2)), h=h, w=w, groups=groups, cg_in=cg_in,
        c_out=groups * cg_out, kh=kh, kw=kw, stride=(sh, sw), dil=(dh, dw),
        **geo,
        s_in=draw(log_uniform(1e-3, 1.0)), zp_in=draw(zero_points), zp_out=draw(zero_points),
        per_channel=draw(st.booleans()), spread=draw(log_uniform(0.3, 10.0)),
        act=draw(ACTS), with_bias=draw(st.sampled_from([True, True, True, False])),
        pow2=draw(st.sampled_from([False, False, False, True])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _spatial_model(
    b: TFLiteBuilder, c: dict[str, Any], x_shape: list[int], s_in: float, zp_in: int
) -> tuple[int, int, int | None, str]:
    """Graph input (and a PAD op for explicit padding): returns (graph input,
    conv input, padded tensor or None, padding mode for the conv)."""
    x = b.add_tensor("x", x_shape, "int8", scale=s_in, zero_point=zp_in)
    if c["mode"] != "EXPLICIT":
        return x, x, None, c["mode"]
    (pt, pl), (pb, pr) = c["pad"], c["pad_after"]
    n, h, w, ch = x_shape
    xp = b.add_tensor("x_padded", [n, h + pt + pb, w + pl + pr, ch], "int8", scale=s_in,
                      zero_point=zp_in)
    b.add_operator("PAD", [x, b.add_constant_paddings("paddings", pt, pb, pl, pr)], [xp])
    return x, xp, xp, "VALID"


@OPS
@given(conv_cases())
@example(dict(n=1, h=8, w=8, groups=1, cg_in=3, c_out=4, kh=3, kw=3, stride=(2, 2),
              dil=(1, 1), mode="EXPLICIT", out=(4, 4), pad=(1, 1), pad_after=(1, 1),
              s_in=0.02, zp_in=-5, zp_out=3, per_channel=True, spread=1.0, act="RELU6",
              with_bias=True, pow2=False, seed=1))  # PyTorch k3 s2 p1, even map: not SAME
@example(dict(n=1, h=8, w=7, groups=2, cg_in=2, c_out=4, kh=3, kw=3, stride=(2, 2),
              dil=(1, 1), mode="SAME", out=(4, 4), pad=(0, 1), pad_after=(1, 1),
              s_in=0.02, zp_in=7, zp_out=-3, per_channel=True, spread=1.0, act="NONE",
              with_bias=True, pow2=True, seed=2))  # SAME with odd total padding (0 top, 1 bottom)
def test_conv2d(clib: Int8Lib, c: dict[str, Any]) -> None:
    rng = np.random.default_rng(c["seed"])
    n, h, w, g = c["n"], c["h"], c["w"], c["groups"]
    c_in, c_out, kh, kw = g * c["cg_in"], c["c_out"], c["kh"], c["kw"]
    k = kh * kw * c["cg_in"]
    s_w = weight_scales(rng, c_out if c["per_channel"] else 1)
    s_out = output_scale_for(c["s_in"], s_w, k, c["spread"])
    s_in = c["s_in"]
    if c["pow2"]:
        s_in, s_w, s_out = pow2(s_in), pow2(s_w), pow2(s_out)
    wq = rand_int8(rng, (c_out, kh, kw, c["cg_in"]), lo=-127)
    bias = random_bias(rng, c_out, k) if c["with_bias"] else None
    xq = rand_int8(rng, (n, h, w, c_in))
    ho, wo = c["out"]

    def model(with_bias_tensor: bool) -> bytes:
        b = TFLiteBuilder()
        x, xin, xp, mode = _spatial_model(b, c, [n, h, w, c_in], s_in, c["zp_in"])
        wt = b.add_tensor("w", wq.shape, "int8", data=wq, scale=s_w, zero_point=0)
        inputs = [xin, wt]
        if with_bias_tensor:
            bdata = bias if bias is not None else np.zeros(c_out, np.int32)
            inputs.append(b.add_tensor("b", [c_out], "int32", data=bdata,
                                       scale=fp.bias_scale(s_in, s_w), zero_point=0))
        y = b.add_tensor("y", [n, ho, wo, c_out], "int8", scale=s_out, zero_point=c["zp_out"])
        b.add_operator("CONV_2D", inputs, [y], padding=mode, stride_h=c["stride"][0],
                       stride_w=c["stride"][1], dilation_h=c["dil"][0], dilation_w=c["dil"][1],
                       fused_activation=c["act"])
        return b.finish([x], [y] if xp is None else [y, xp])

    # tflite-runtime 2.14's CONV_2D requires a bias tensor (TFLM does not): a
    # missing bias is given to it as zeros.
    tfl, micro = run_oracles(model(True), [xq], tflm_model=model(bias is not None))
    p = fp.conv_params(s_in, c["zp_in"], s_w, s_out, c["zp_out"], c_out,
                       stride=c["stride"], dilation=c["dil"], pad=c["pad"], groups=g,
                       activation=c["act"])
    got_c = clib.conv2d_s8(p, xq, wq, bias, (ho, wo))
    got_np = ref.conv2d_s8(p, xq, wq, bias, (ho, wo))
    got_dsp = clib.conv2d_s8(p, xq, wq, bias, (ho, wo), kernels="dsp")
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=got_c, numpy=got_np, c_dsp=got_dsp)
    if c["mode"] == "EXPLICIT":  # the PAD op's output too
        (pt, pl), (pb, pr) = c["pad"], c["pad_after"]
        assert_bit_exact(tflite_ref=tfl[1], tflm=micro[1],
                         c=clib.pad_s8(xq, pt, pb, pl, pr, c["zp_in"]),
                         numpy=ref.pad_s8(xq, pt, pb, pl, pr, c["zp_in"]))


# --------------------------------------------------------------------------- DEPTHWISE


@st.composite
def dw_cases(draw: st.DrawFn) -> dict[str, Any]:
    c = draw(conv_cases())
    c["groups"] = 1
    c["c_in"] = draw(st.integers(1, 7))
    c["dm"] = draw(st.sampled_from([1, 1, 2, 3]))
    return c


@OPS
@given(dw_cases())
def test_depthwise_conv2d(clib: Int8Lib, c: dict[str, Any]) -> None:
    rng = np.random.default_rng(c["seed"])
    n, h, w, c_in, dm = c["n"], c["h"], c["w"], c["c_in"], c["dm"]
    c_out, kh, kw = c_in * dm, c["kh"], c["kw"]
    s_w = weight_scales(rng, c_out if c["per_channel"] else 1)
    s_out = output_scale_for(c["s_in"], s_w, kh * kw, c["spread"])
    s_in = c["s_in"]
    if c["pow2"]:
        s_in, s_w, s_out = pow2(s_in), pow2(s_w), pow2(s_out)
    wq = rand_int8(rng, (1, kh, kw, c_out), lo=-127)
    bias = random_bias(rng, c_out, kh * kw) if c["with_bias"] else None
    xq = rand_int8(rng, (n, h, w, c_in))
    ho, wo = c["out"]

    def model(with_bias_tensor: bool) -> bytes:
        b = TFLiteBuilder()
        x, xin, xp, mode = _spatial_model(b, c, [n, h, w, c_in], s_in, c["zp_in"])
        wt = b.add_tensor("w", wq.shape, "int8", data=wq, scale=s_w, zero_point=0,
                          quantized_dimension=3)
        inputs = [xin, wt]
        if with_bias_tensor:
            bdata = bias if bias is not None else np.zeros(c_out, np.int32)
            inputs.append(b.add_tensor("b", [c_out], "int32", data=bdata,
                                       scale=fp.bias_scale(s_in, s_w), zero_point=0))
        y = b.add_tensor("y", [n, ho, wo, c_out], "int8", scale=s_out, zero_point=c["zp_out"])
        b.add_operator("DEPTHWISE_CONV_2D", inputs, [y], padding=mode,
                       stride_h=c["stride"][0], stride_w=c["stride"][1],
                       dilation_h=c["dil"][0], dilation_w=c["dil"][1], depth_multiplier=dm,
                       fused_activation=c["act"])
        return b.finish([x], [y] if xp is None else [y, xp])

    tfl, micro = run_oracles(model(True), [xq], tflm_model=model(bias is not None))
    p = fp.depthwise_conv_params(s_in, c["zp_in"], s_w, s_out, c["zp_out"], c_out,
                                 stride=c["stride"], dilation=c["dil"], pad=c["pad"],
                                 depth_multiplier=dm, activation=c["act"])
    got_c = clib.depthwise_conv2d_s8(p, xq, wq, bias, (ho, wo))
    got_np = ref.depthwise_conv2d_s8(p, xq, wq, bias, (ho, wo))
    got_dsp = clib.depthwise_conv2d_s8(p, xq, wq, bias, (ho, wo), kernels="dsp")
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=got_c, numpy=got_np, c_dsp=got_dsp)


# --------------------------------------------------------------------------- FULLY_CONNECTED


@OPS
@given(
    batches=st.integers(1, 3), in_f=st.integers(1, 40), out_f=st.integers(1, 19),
    s_in=log_uniform(1e-3, 1.0), zp_in=zero_points, zp_out=zero_points,
    per_channel=st.booleans(), spread=log_uniform(0.3, 10.0), act=ACTS,
    with_bias=st.sampled_from([True, True, False]), use_pow2=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fully_connected(clib: Int8Lib, batches: int, in_f: int, out_f: int, s_in: float,
                         zp_in: int, zp_out: int, per_channel: bool, spread: float, act: str,
                         with_bias: bool, use_pow2: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_w = weight_scales(rng, out_f if per_channel else 1)
    s_out = output_scale_for(s_in, s_w, in_f, spread)
    if use_pow2:
        s_in, s_w, s_out = pow2(s_in), pow2(s_w), pow2(s_out)
    wq = rand_int8(rng, (out_f, in_f), lo=-127)
    bias = random_bias(rng, out_f, in_f) if with_bias else None
    xq = rand_int8(rng, (batches, in_f))

    b = TFLiteBuilder()
    x = b.add_tensor("x", [batches, in_f], "int8", scale=s_in, zero_point=zp_in)
    wt = b.add_tensor("w", [out_f, in_f], "int8", data=wq, scale=s_w, zero_point=0)
    inputs = [x, wt]
    if bias is not None:
        inputs.append(b.add_tensor("b", [out_f], "int32", data=bias,
                                   scale=fp.bias_scale(s_in, s_w), zero_point=0))
    else:
        inputs.append(-1)  # FULLY_CONNECTED accepts an omitted bias in both runtimes
    y = b.add_tensor("y", [batches, out_f], "int8", scale=s_out, zero_point=zp_out)
    b.add_operator("FULLY_CONNECTED", inputs, [y], fused_activation=act)
    tfl, micro = run_oracles(b.finish([x], [y]), [xq])

    # per-tensor FC multipliers differ between the runtimes (see
    # test_fc_per_tensor_multiplier_conventions): each oracle gets its convention
    for oracle, conv in ((tfl[0], "tflite"), (micro[0], "tflm")):
        p = fp.fully_connected_params(s_in, zp_in, s_w, s_out, zp_out, out_f, activation=act,
                                      convention=conv)
        got_c = clib.fully_connected_s8(p, xq, wq, bias)
        got_np = ref.fully_connected_s8(p, xq, wq, bias)
        assert_bit_exact(**{f"{conv}_oracle": oracle}, c=got_c, numpy=got_np)
    if per_channel:
        assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0])


# --------------------------------------------------------------------------- ADD


@OPS
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 13)),
    s1=log_uniform(1e-3, 1.0), s2=log_uniform(1e-3, 1.0), out_spread=log_uniform(0.3, 10.0),
    zp1=zero_points, zp2=zero_points, zp_out=zero_points, act=ACTS,
    inplace=st.sampled_from([None, 1, 2]), use_pow2=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_add(clib: Int8Lib, shape: tuple[int, int, int, int], s1: float, s2: float,
             out_spread: float, zp1: int, zp2: int, zp_out: int, act: str,
             inplace: int | None, use_pow2: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_out = float(np.float32(max(s1, s2) * out_spread))
    if use_pow2:
        s1, s2, s_out = pow2(s1), pow2(s2), pow2(s_out)
    a = rand_int8(rng, shape)
    c = rand_int8(rng, shape)
    b = TFLiteBuilder()
    ta = b.add_tensor("a", shape, "int8", scale=s1, zero_point=zp1)
    tc = b.add_tensor("c", shape, "int8", scale=s2, zero_point=zp2)
    y = b.add_tensor("y", shape, "int8", scale=s_out, zero_point=zp_out)
    b.add_operator("ADD", [ta, tc], [y], fused_activation=act)
    tfl, micro = run_oracles(b.finish([ta, tc], [y]), [a, c])

    p = fp.add_params(s1, zp1, s2, zp2, s_out, zp_out, act)
    got_np = ref.add_s8(p, a, c)
    a_c, c_c = a.copy(), c.copy()
    out = None if inplace is None else (a_c if inplace == 1 else c_c)
    got_c = clib.add_s8(p, a_c, c_c, out=out)
    a_d, c_d = a.copy(), c.copy()
    out_d = None if inplace is None else (a_d if inplace == 1 else c_d)
    got_dsp = clib.add_s8(p, a_d, c_d, out=out_d, kernels="dsp")
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=got_c, numpy=got_np, c_dsp=got_dsp)


def test_add_rejects_too_small_output_scale() -> None:
    with pytest.raises(ValueError, match="output multiplier"):
        fp.add_params(1.0, 0, 1.0, 0, 1e-7, 0)


# --------------------------------------------------------------------------- pooling


@st.composite
def pool_cases(draw: st.DrawFn) -> dict[str, Any]:
    fh = draw(st.sampled_from([1, 2, 3, 5]))
    fw = draw(st.sampled_from([fh, 1, 2, 3]))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    modes = ["SAME"] + (["VALID"] if h >= fh and w >= fw else [])
    mode = draw(st.sampled_from(modes))
    if draw(st.integers(0, 5)) == 0:  # global pooling: whole map, VALID
        fh, fw, sh, sw, mode = h, w, 1, 1, "VALID"
    oh, pt, _ = compute_padding(mode, h, fh, sh)
    ow, pl, _ = compute_padding(mode, w, fw, sw)
    return dict(
        n=draw(st.integers(1, 2)), h=h, w=w, c=draw(st.integers(1, 9)), filt=(fh, fw),
        stride=(sh, sw), mode=mode, out=(oh, ow), pad=(pt, pl),
        scale=draw(log_uniform(1e-3, 1.0)), zp=draw(zero_points), act=draw(ACTS),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _pool_test(clib: Int8Lib, c: dict[str, Any], op: str,
               c_fn: Callable[..., np.ndarray], np_fn: Callable[..., np.ndarray]) -> None:
    rng = np.random.default_rng(c["seed"])
    shape = (c["n"], c["h"], c["w"], c["c"])
    xq = rand_int8(rng, shape)
    oh, ow = c["out"]
    b = TFLiteBuilder()
    # int8 pooling does not rescale: same scale and zero point in and out
    x = b.add_tensor("x", shape, "int8", scale=c["scale"], zero_point=c["zp"])
    y = b.add_tensor("y", [c["n"], oh, ow, c["c"]], "int8", scale=c["scale"], zero_point=c["zp"])
    b.add_operator(op, [x], [y], padding=c["mode"], stride_h=c["stride"][0],
                   stride_w=c["stride"][1], filter_h=c["filt"][0], filter_w=c["filt"][1],
                   fused_activation=c["act"])
    tfl, micro = run_oracles(b.finish([x], [y]), [xq])
    p = fp.pool_params(c["filt"], stride=c["stride"], pad=c["pad"], activation=c["act"],
                       output_scale=c["scale"], output_zero_point=c["zp"])
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=c_fn(p, xq, (oh, ow)),
                     numpy=np_fn(p, xq, (oh, ow)))
    if c["filt"] == (c["h"], c["w"]) and c["mode"] == "VALID" and op == "AVERAGE_POOL_2D":
        flat = tfl[0].reshape(c["n"], c["c"])
        assert_bit_exact(tflite_ref=flat, c=clib.global_avg_pool_s8(xq, p.act_min, p.act_max),
                         numpy=ref.global_avg_pool_s8(xq, p.act_min, p.act_max))


@OPS
@given(pool_cases())
def test_avg_pool(clib: Int8Lib, c: dict[str, Any]) -> None:
    _pool_test(clib, c, "AVERAGE_POOL_2D", clib.avg_pool_s8, ref.avg_pool_s8)


@OPS
@given(pool_cases())
def test_max_pool(clib: Int8Lib, c: dict[str, Any]) -> None:
    _pool_test(clib, c, "MAX_POOL_2D", clib.max_pool_s8, ref.max_pool_s8)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), fh=st.integers(1, 4), fw=st.integers(1, 4),
    sh=st.integers(1, 3), sw=st.integers(1, 3), data=st.data(), seed=st.integers(0, 2**32 - 1),
)
def test_pools_explicit_padding_c_matches_numpy(clib: Int8Lib, h: int, w: int, fh: int, fw: int,
                                                sh: int, sw: int, data: st.DataObject,
                                                seed: int) -> None:
    """Pads that TFLite's SAME/VALID never produce (C and numpy share the semantics:
    padding is excluded from the window)."""
    pt = data.draw(st.integers(0, fh - 1))
    pl = data.draw(st.integers(0, fw - 1))
    oh = data.draw(st.integers(1, max(1, (h - 1 + pt) // sh + 1)))
    ow = data.draw(st.integers(1, max(1, (w - 1 + pl) // sw + 1)))
    xq = rand_int8(np.random.default_rng(seed), (1, h, w, 3))
    p = fp.PoolParams(fh, fw, sh, sw, pt, pl, -128, 127)
    assert_bit_exact(c=clib.avg_pool_s8(p, xq, (oh, ow)), numpy=ref.avg_pool_s8(p, xq, (oh, ow)))
    assert_bit_exact(c=clib.max_pool_s8(p, xq, (oh, ow)), numpy=ref.max_pool_s8(p, xq, (oh, ow)))


def test_pool_rejects_empty_windows(clib: Int8Lib) -> None:
    xq = np.zeros((1, 4, 4, 1), np.int8)
    p = fp.PoolParams(2, 2, 1, 1, 2, 0, -128, 127)  # pad_top == filter_h: empty window
    with pytest.raises(KernelError):
        clib.avg_pool_s8(p, xq, (4, 3))
    with pytest.raises(ValueError):
        ref.avg_pool_s8(p, xq, (4, 3))


def test_tflm_rejects_rescaling_avg_pool_but_tflite_runtime_does_not() -> None:
    """Trap (shared/notes/tflite.md): int8 AVERAGE_POOL_2D needs equal in/out quantisation."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 4, 4, 2], "int8", scale=0.02, zero_point=-3)
    y = b.add_tensor("y", [1, 2, 2, 2], "int8", scale=0.04, zero_point=1)
    b.add_operator("AVERAGE_POOL_2D", [x], [y], filter_h=2, filter_w=2, stride_h=2, stride_w=2)
    m = b.finish([x], [y])
    xq = rand_int8(np.random.default_rng(0), (1, 4, 4, 2))
    tfl = run_tflite_ref(m, [xq])[0]  # silently ignores the rescaling
    p = fp.pool_params((2, 2), stride=(2, 2))
    assert_bit_exact(tflite_ref=tfl, numpy=ref.avg_pool_s8(p, xq, (2, 2)))
    with pytest.raises(OracleError, match="AVERAGE_POOL_2D"):
        run_tflm(m, [xq])


# --------------------------------------------------------------------------- RELU / RELU6


@OPS
@given(
    kind=st.sampled_from(["RELU", "RELU6", "RELU_N1_TO_1"]),
    shape=st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 7), st.integers(1, 9)),
    s_in=log_uniform(1e-3, 1.0), ratio=log_uniform(0.1, 10.0), same_quant=st.booleans(),
    zp_in=zero_points, zp_out=zero_points, seed=st.integers(0, 2**32 - 1),
)
def test_relu(clib: Int8Lib, kind: str, shape: tuple[int, int, int, int], s_in: float,
              ratio: float, same_quant: bool, zp_in: int, zp_out: int, seed: int) -> None:
    """Standalone int8 RELU/RELU6 requantise (tflite-runtime); TFLM's RELU computes its
    multiplier in double and its RELU6 does not requantise (see fixedpoint.relu_params)."""
    s_out = s_in if same_quant else float(np.float32(s_in * ratio))
    if seed % 4 == 0:
        s_in, s_out = pow2(s_in), pow2(s_out)
    zp_out = zp_in if same_quant else zp_out
    xq = rand_int8(np.random.default_rng(seed), shape)
    # exhaustive over the int8 domain in the first row
    xq.reshape(-1)[: min(256, xq.size)] = np.arange(-128, 128, dtype=np.int8)[: min(256, xq.size)]
    b = TFLiteBuilder()
    x = b.add_tensor("x", shape, "int8", scale=s_in, zero_point=zp_in)
    y = b.add_tensor("y", shape, "int8", scale=s_out, zero_point=zp_out)
    b.add_operator(kind, [x], [y])
    m = b.finish([x], [y])
    tfl = run_tflite_ref(m, [xq])[0]
    p = fp.relu_params(kind, s_in, zp_in, s_out, zp_out)
    got_np = ref.relu_s8(p, xq)
    inplace = xq.copy()
    got_c = clib.relu_s8(p, inplace, out=inplace)
    assert_bit_exact(tflite_ref=tfl, c=got_c, numpy=got_np)
    if kind == "RELU_N1_TO_1":
        return  # not registered in TFLite Micro
    micro, _ = run_tflm(m, [xq])
    p_micro = fp.relu_params(kind, s_in, zp_in, s_out, zp_out, convention="tflm")
    assert_bit_exact(tflm=micro[0], c=clib.relu_s8(p_micro, xq),
                     numpy=ref.relu_s8(p_micro, xq))
    if same_quant:
        assert_bit_exact(tflite_ref=tfl, tflm=micro[0])


def test_relu6_tflm_ignores_output_quantisation() -> None:
    """Trap: with different in/out quantisation TFLM's RELU6 clamps in the input domain."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 1, 1, 256], "int8", scale=0.05, zero_point=-10)
    y = b.add_tensor("y", [1, 1, 1, 256], "int8", scale=0.03, zero_point=-100)
    b.add_operator("RELU6", [x], [y])
    m = b.finish([x], [y])
    xq = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 1, 256)
    tfl = run_tflite_ref(m, [xq])[0]
    micro = run_tflm(m, [xq])[0][0]
    assert np.count_nonzero(tfl != micro) > 100
    assert_bit_exact(tflm=micro, numpy=np.clip(xq, -10, -10 + 120))


# --------------------------------------------------------------------------- CONCATENATION


@OPS
@given(
    n_inputs=st.integers(1, 4), axis=st.sampled_from([3, 3, 3, 1, 2, -1]),
    base=st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    sizes=st.lists(st.integers(1, 7), min_size=4, max_size=4),
    scale=log_uniform(1e-3, 1.0), zp=zero_points, seed=st.integers(0, 2**32 - 1),
)
def test_concatenation(clib: Int8Lib, n_inputs: int, axis: int, base: tuple[int, ...],
                       sizes: list[int], scale: float, zp: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ax = axis % 4
    shapes = []
    for i in range(n_inputs):
        s = list(base)
        s[ax] = sizes[i]
        shapes.append(s)
    xs = [rand_int8(rng, tuple(s)) for s in shapes]
    out_shape = list(base)
    out_shape[ax] = sum(sizes[:n_inputs])
    b = TFLiteBuilder()
    ts = [b.add_tensor(f"x{i}", s, "int8", scale=scale, zero_point=zp)
          for i, s in enumerate(shapes)]
    y = b.add_tensor("y", out_shape, "int8", scale=scale, zero_point=zp)
    b.add_operator("CONCATENATION", ts, [y], axis=axis)
    tfl, micro = run_oracles(b.finish(ts, [y]), xs)
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=clib.concatenation_s8(xs, axis),
                     numpy=ref.concatenation_s8(xs, axis))


def test_concatenation_requires_equal_quantisation() -> None:
    """Both runtimes reject int8 CONCATENATION whose inputs need rescaling."""
    b = TFLiteBuilder()
    a = b.add_tensor("a", [1, 2, 2, 3], "int8", scale=0.02, zero_point=-3)
    c = b.add_tensor("c", [1, 2, 2, 2], "int8", scale=0.03, zero_point=4)
    y = b.add_tensor("y", [1, 2, 2, 5], "int8", scale=0.02, zero_point=-3)
    b.add_operator("CONCATENATION", [a, c], [y], axis=3)
    m = b.finish([a, c], [y])
    xs = [np.zeros((1, 2, 2, 3), np.int8), np.zeros((1, 2, 2, 2), np.int8)]
    with pytest.raises(OracleError, match="scale"):
        run_tflite_ref(m, xs)
    with pytest.raises(OracleError, match="CONCATENATION"):
        run_tflm(m, xs)


# --------------------------------------------------------------------------- conventions
# Random tests rarely see a 1-LSB difference in a 31-bit multiplier: these use
# scales found (by searching offline) to make the candidate rules disagree.

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)


def _fc_probe_model(s_in: float, s_w: list[float], s_out: float, zp_out: int,
                    bias: list[int]) -> tuple[bytes, np.ndarray]:
    """FC with in_features 1, weights 1 and input zero point 0: row r computes
    acc = bias + (r - 128) for every int8 value."""
    nch = len(s_w)
    b = TFLiteBuilder()
    x = b.add_tensor("x", [256, 1], "int8", scale=s_in, zero_point=0)
    w = b.add_tensor("w", [nch, 1], "int8", data=np.ones((nch, 1), np.int8), scale=s_w,
                     zero_point=0)
    bt = b.add_tensor("b", [nch], "int32", data=np.asarray(bias, np.int32),
                      scale=fp.bias_scale(s_in, s_w), zero_point=0)
    y = b.add_tensor("y", [256, nch], "int8", scale=s_out, zero_point=zp_out)
    b.add_operator("FULLY_CONNECTED", [x, w, bt], [y])
    return b.finish([x], [y]), ALL_INT8.reshape(256, 1)


def test_fc_per_tensor_multiplier_conventions(clib: Int8Lib) -> None:
    """Trap: tflite-runtime's per-tensor FULLY_CONNECTED computes s_in * s_w in float32,
    TFLM in double; with these scales the multipliers differ by 40 (1761345663 vs
    1761345703) and accumulator -34645 requantises to -55 vs -56."""
    s_in, s_w, s_out = 0.020176352933049202, 0.08366784453392029, 1.0537958145141602
    m, xq = _fc_probe_model(s_in, [s_w], s_out, 56, [-34645])
    tfl = run_tflite_ref(m, [xq])[0]
    micro = run_tflm(m, [xq])[0][0]
    assert int(tfl[128, 0]) == 1 and int(micro[128, 0]) == 0
    wq = np.ones((1, 1), np.int8)
    bias = np.array([-34645], np.int32)
    for oracle, conv in ((tfl, "tflite"), (micro, "tflm")):
        p = fp.fully_connected_params(s_in, 0, s_w, s_out, 56, 1, convention=conv)
        assert_bit_exact(oracle=oracle, c=clib.fully_connected_s8(p, xq, wq, bias),
                         numpy=ref.fully_connected_s8(p, xq, wq, bias))
    # per-channel FC (and CONV_2D / DEPTHWISE_CONV_2D, per-tensor or not) use double
    # in both runtimes
    m2, _ = _fc_probe_model(s_in, [s_w, s_w * 1.37], s_out, 56, [-34645, 0])
    tfl2 = run_tflite_ref(m2, [xq])[0]
    micro2 = run_tflm(m2, [xq])[0][0]
    assert int(tfl2[128, 0]) == int(micro2[128, 0]) == 0
    p2 = fp.fully_connected_params(s_in, 0, [s_w, np.float32(s_w * 1.37)], s_out, 56, 2)
    w2 = np.ones((2, 1), np.int8)
    b2 = np.array([-34645, 0], np.int32)
    assert_bit_exact(tflite_ref=tfl2, tflm=micro2, c=clib.fully_connected_s8(p2, xq, w2, b2),
                     numpy=ref.fully_connected_s8(p2, xq, w2, b2))


@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_conv_multiplier_is_double_in_both_runtimes(clib: Int8Lib, op: str) -> None:
    """Same probe as above for per-tensor CONV_2D / DEPTHWISE_CONV_2D: double product."""
    s_in, s_w, s_out = 0.020176352933049202, 0.08366784453392029, 1.0537958145141602
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 16, 16, 1], "int8", scale=s_in, zero_point=0)
    w = b.add_tensor("w", [1, 1, 1, 1], "int8", data=np.ones((1, 1, 1, 1), np.int8),
                     scale=s_w, zero_point=0, quantized_dimension=3 if op != "CONV_2D" else 0)
    bt = b.add_tensor("b", [1], "int32", data=np.array([-34645], np.int32),
                      scale=fp.bias_scale(s_in, [s_w]), zero_point=0)
    y = b.add_tensor("y", [1, 16, 16, 1], "int8", scale=s_out, zero_point=56)
    b.add_operator(op, [x, w, bt], [y])
    xq = ALL_INT8.reshape(1, 16, 16, 1)
    tfl, micro = run_oracles(b.finish([x], [y]), [xq])
    wq = np.ones((1, 1, 1, 1), np.int8)
    bias = np.array([-34645], np.int32)
    if op == "CONV_2D":
        p = fp.conv_params(s_in, 0, s_w, s_out, 56, 1)
        got_c, got_np = clib.conv2d_s8(p, xq, wq, bias, (16, 16)), ref.conv2d_s8(
            p, xq, wq, bias, (16, 16))
    else:
        q = fp.depthwise_conv_params(s_in, 0, s_w, s_out, 56, 1)
        got_c, got_np = clib.depthwise_conv2d_s8(q, xq, wq, bias, (16, 16)), \
            ref.depthwise_conv2d_s8(q, xq, wq, bias, (16, 16))
    assert int(tfl[0].reshape(-1)[128]) == 0
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=got_c, numpy=got_np)


@pytest.mark.parametrize(
    "s1,s2,s_out,zp1,zp2,zp_out",
    [
        # a float32 s_i / (2 max) would change one of the 65536 outputs
        (0.0031289514154195786, 0.0177135169506073, 0.0069687520153820515, -55, 0, -122),
        # a float32 2 max / (2^20 s_out) would change one output
        (0.00781373493373394, 0.14983895421028137, 0.42858070135116577, -40, -110, 22),
    ],
)
def test_add_multipliers_use_double(clib: Int8Lib, s1: float, s2: float, s_out: float,
                                    zp1: int, zp2: int, zp_out: int) -> None:
    """ADD over all 65536 input pairs with scales where computing the multipliers in
    float32 would change an output: both runtimes compute them in double."""
    a = np.repeat(ALL_INT8, 256)
    c = np.tile(ALL_INT8, 256)
    b = TFLiteBuilder()
    t1 = b.add_tensor("a", [65536], "int8", scale=s1, zero_point=zp1)
    t2 = b.add_tensor("c", [65536], "int8", scale=s2, zero_point=zp2)
    y = b.add_tensor("y", [65536], "int8", scale=s_out, zero_point=zp_out)
    b.add_operator("ADD", [t1, t2], [y])
    tfl, micro = run_oracles(b.finish([t1, t2], [y]), [a, c])
    p = fp.add_params(s1, zp1, s2, zp2, s_out, zp_out)
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0], c=clib.add_s8(p, a, c),
                     numpy=ref.add_s8(p, a, c))


@pytest.mark.parametrize(
    "s_in,s_out,zp_in,zp_out,x,tflite_y,tflm_y",
    [
        (0.2847675681114197, 0.34044837951660156, -62, -9, 45, 81, 80),
        (0.04971286654472351, 0.008449778892099857, -88, -112, -58, 64, 65),
    ],
)
def test_relu_multiplier_conventions(clib: Int8Lib, s_in: float, s_out: float, zp_in: int,
                                     zp_out: int, x: int, tflite_y: int, tflm_y: int) -> None:
    """Trap: standalone int8 RELU: tflite-runtime divides the scales in float32, TFLM in
    double; the multipliers differ in most cases and the outputs in a few."""
    b = TFLiteBuilder()
    tx = b.add_tensor("x", [256], "int8", scale=s_in, zero_point=zp_in)
    ty = b.add_tensor("y", [256], "int8", scale=s_out, zero_point=zp_out)
    b.add_operator("RELU", [tx], [ty])
    m = b.finish([tx], [ty])
    tfl = run_tflite_ref(m, [ALL_INT8])[0]
    micro = run_tflm(m, [ALL_INT8])[0][0]
    assert (int(tfl[x + 128]), int(micro[x + 128])) == (tflite_y, tflm_y)
    assert np.count_nonzero(tfl != micro) == 1
    for oracle, conv in ((tfl, "tflite"), (micro, "tflm")):
        p = fp.relu_params("RELU", s_in, zp_in, s_out, zp_out, convention=conv)
        assert_bit_exact(oracle=oracle, c=clib.relu_s8(p, ALL_INT8),
                         numpy=ref.relu_s8(p, ALL_INT8))


def test_activation_bounds_divide_in_float32() -> None:
    """RELU6 bound zp + round(6 / s): 6 / s is 30.499999394 in double but exactly 30.5
    in float32, so both runtimes clamp at zp + 31 (double would give zp + 30)."""
    s = 0.19672131538391113
    assert fp.activation_range("RELU6", s, -128) == (-128, -97)
    b = TFLiteBuilder()
    t1 = b.add_tensor("a", [256], "int8", scale=s, zero_point=-128)
    t2 = b.add_tensor("b", [256], "int8", scale=s, zero_point=-128)
    y = b.add_tensor("y", [256], "int8", scale=s, zero_point=-128)
    b.add_operator("ADD", [t1, t2], [y], fused_activation="RELU6")
    zeros = np.full(256, -128, np.int8)
    tfl, micro = run_oracles(b.finish([t1, t2], [y]), [ALL_INT8, zeros])
    assert int(tfl[0].max()) == int(micro[0].max()) == -97


@pytest.mark.parametrize("j", [1, 2, 3])
def test_requantisation_exact_ties(clib: Int8Lib, j: int) -> None:
    """Multiplier exactly 2^-j (power-of-two scales): every tie of both rounding steps
    occurs. Step 1 rounds ties upward, step 2 away from zero, so with M = 1/2,
    acc -1 -> 0 and +1 -> 1 (not symmetric), while with M = 1/4, acc -2 -> -1."""
    s_in, s_w = 2.0**-4, 2.0**-6
    s_out = s_in * s_w * 2.0**j
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 16, 16, 1], "int8", scale=s_in, zero_point=0)
    w = b.add_tensor("w", [1, 1, 1, 1], "int8", data=np.ones((1, 1, 1, 1), np.int8),
                     scale=[s_w], zero_point=0)
    bt = b.add_tensor("b", [1], "int32", data=np.zeros(1, np.int32),
                      scale=[s_in * s_w], zero_point=0)
    y = b.add_tensor("y", [1, 16, 16, 1], "int8", scale=s_out, zero_point=0)
    b.add_operator("CONV_2D", [x, w, bt], [y])
    xq = ALL_INT8.reshape(1, 16, 16, 1)
    tfl, micro = run_oracles(b.finish([x], [y]), [xq])
    p = fp.conv_params(s_in, 0, s_w, s_out, 0, 1)
    assert (int(p.output_multiplier[0]), int(p.output_shift[0])) == (1 << 30, 1 - j)
    wq = np.ones((1, 1, 1, 1), np.int8)
    assert_bit_exact(tflite_ref=tfl[0], tflm=micro[0],
                     c=clib.conv2d_s8(p, xq, wq, np.zeros(1, np.int32), (16, 16)),
                     numpy=ref.conv2d_s8(p, xq, wq, None, (16, 16)))
    out = dict(zip(ALL_INT8.tolist(), tfl[0].reshape(-1).tolist(), strict=True))
    if j == 1:
        assert (out[-1], out[1], out[-3], out[3]) == (0, 1, -1, 2)
    if j == 2:
        assert (out[-2], out[2], out[-1]) == (-1, 1, 0)


# --------------------------------------------------------------------------- misc


def test_conv_bias_is_required_by_tflite_runtime_only() -> None:
    """tflite-runtime 2.14's CONV_2D rejects a missing bias; TFLM accepts it."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 3, 3, 2], "int8", scale=0.1, zero_point=0)
    w = b.add_tensor("w", [2, 1, 1, 2], "int8", data=np.ones((2, 1, 1, 2), np.int8),
                     scale=[0.1, 0.2], zero_point=0)
    y = b.add_tensor("y", [1, 3, 3, 2], "int8", scale=0.1, zero_point=0)
    b.add_operator("CONV_2D", [x, w, -1], [y])
    m = b.finish([x], [y])
    xq = np.ones((1, 3, 3, 2), np.int8)
    with pytest.raises(OracleError, match="optional"):
        run_tflite_ref(m, [xq])
    out, _ = run_tflm(m, [xq])
    assert out[0].shape == (1, 3, 3, 2)


def test_kernels_reject_inconsistent_arguments(clib: Int8Lib) -> None:
    xq = np.zeros((1, 4, 4, 4), np.int8)
    wq = np.zeros((4, 3, 3, 3), np.int8)  # filter depth 3 does not divide C_in 4
    p = fp.conv_params(0.1, 0, 0.1, 0.1, 0, 4, groups=1)
    with pytest.raises(KernelError):
        clib.conv2d_s8(p, xq, wq, None, (2, 2))
    bad = fp.AddParams(0, 0, 0, 20, 1 << 30, 1, 1 << 30, 0, 1 << 30, 0, -128, 127)
    with pytest.raises(KernelError):  # input shift must be <= 0
        clib.add_s8(bad, xq, xq)


def test_builder_rejects_bad_options() -> None:
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 2, 2, 1], "int8", scale=0.1, zero_point=0)
    with pytest.raises(TypeError, match="no option"):
        b.add_operator("ADD", [x, x], [x], padding="SAME")
    with pytest.raises(ValueError, match="padding"):
        b.add_operator("MAX_POOL_2D", [x], [x], padding="EXPLICIT")
    with pytest.raises(ValueError, match="unsupported operator"):
        b.add_operator("SOFTMAX_3D", [x], [x])
    with pytest.raises(ValueError, match="scales"):
        b.add_tensor("w", [3, 1], "int8", scale=[0.1, 0.2], quantized_dimension=0)


def test_builder_quantize_reshape_dequantize() -> None:
    """The builder's other ops: float -> QUANTIZE -> RESHAPE -> DEQUANTIZE in both runtimes."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 2, 3, 4], "float32")
    q = b.add_tensor("q", [1, 2, 3, 4], "int8", scale=0.05, zero_point=3)
    r = b.add_tensor("r", [1, 24], "int8", scale=0.05, zero_point=3)
    y = b.add_tensor("y", [1, 24], "float32")
    b.add_operator("QUANTIZE", [x], [q])
    b.add_operator("RESHAPE", [q], [r], new_shape=[1, 24])
    b.add_operator("DEQUANTIZE", [r], [y])
    m = b.finish([x], [y, r])
    xf = np.linspace(-3.0, 3.0, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    tfl, micro = run_oracles(m, [xf])
    expect_q = fp.quantize(xf, 0.05, 3).reshape(1, 24)
    assert_bit_exact(tflite_ref=tfl[1], tflm=micro[1], numpy=expect_q)
    np.testing.assert_array_equal(tfl[0], fp.dequantize(expect_q, 0.05, 3))
    np.testing.assert_array_equal(micro[0], tfl[0])


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed")
def test_arm_cross_compile_is_warning_free(tmp_path: Path) -> None:
    try:
        objs = compile_objects("arm-none-eabi-gcc", ARM_CFLAGS, tmp_path)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"arm-none-eabi-gcc failed:\n{e.stderr}")
    assert len(objs) >= 8 and all(o.stat().st_size > 0 for o in objs)
