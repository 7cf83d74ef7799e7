"""The float32 training kernels (runtime_c/src/f32) against PyTorch autograd.

Every forward output and every gradient is compared with a float64 PyTorch
reference computed from the same float32 inputs, norm-wise:
||c - ref|| / max(||ref||, tiny) <= 1e-5. Hypothesis draws the geometries (odd maps,
stride 2 on odd sizes, channel counts that are not multiples of 4, groups incl.
depthwise, asymmetric padding, dilation); the values come from a seeded numpy RNG.
Weight/bias gradients are checked as "+=" into a non-zero buffer and input
gradients with both accumulate flags. The scalar math (exp/log/log1p/sqrt) is
checked in ulps, the optimizers over several steps against torch.optim, the
quantiser against a numpy model of TFLite's QUANTIZE. The last tests compile the
folder for Cortex-M4 and check that no object needs libm.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests._f32build import (
    ARM_CFLAGS,
    F32_SRC,
    HOST_CFLAGS,
    INCLUDE,
    MASK_RELU,
    MASK_RELU6,
    MCUTL_F32_ARG_ERROR,
    ConvGeom,
    F32Array,
    F32Lib,
    KernelError,
    _pf32,
    compile_objects,
    f32,
    f32_sources,
    load_f32_lib,
)

pytestmark = pytest.mark.host

HAVE_GCC = shutil.which("gcc") is not None
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None

TOL = 1e-5
PROPS = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)
D64 = torch.float64
#: symbols a kernel object may import: the compiler's own memset/memcpy for zeroing
#: and copying loops (libc, present on every target) and the f32 folder's own math.
ALLOWED_UNDEFINED = {"memset", "memcpy", "memmove", "mcutl_expf", "mcutl_logf",
                     "mcutl_log1pf", "mcutl_sqrtf"}


@pytest.fixture(scope="session")
def lib(tmp_path_factory: pytest.TempPathFactory) -> F32Lib:
    if not HAVE_GCC:
        pytest.skip("gcc not installed")
    return load_f32_lib(tmp_path_factory.mktemp("f32lib"))


# --------------------------------------------------------------------------- helpers


def rel_err(got: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """||got - ref|| / max(||ref||, tiny), in float64."""
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    assert g.shape == r.shape, (g.shape, r.shape)
    return float(np.linalg.norm(g - r) / max(float(np.linalg.norm(r)), 1e-30))


def check(got: npt.ArrayLike, ref: npt.ArrayLike | torch.Tensor, what: str,
          absref: npt.ArrayLike | None = None) -> None:
    """||got - ref|| <= TOL * ||ref||. For sums that may cancel (a conv output, a bias
    gradient over few pixels) ``absref`` is the same computation on absolute values
    (sum |terms|, the scale of float32's rounding error) and the bound becomes
    TOL * max(||ref||, ||absref||): equal to the plain bound when nothing cancels."""
    r = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    err = rel_err(got, r)
    if absref is not None:
        err *= max(norm(r), 1e-30) / max(norm(r), norm(absref), 1e-30)
    assert err <= TOL, f"{what}: relative error {err:.3g} > {TOL}"


def plus(ref: np.ndarray, absref: np.ndarray,
         init: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(ref, absref) of an input gradient added to ``init`` (accumulate) or not."""
    if init is None:
        return ref, absref
    return ref + init, absref + np.abs(init)


def check_within(got: npt.ArrayLike, ref: npt.ArrayLike, scale: float, what: str) -> None:
    """||got - ref|| <= TOL * scale, for quantities that can cancel (a displacement, a
    running sum of signed gradients): ``scale`` is the size of what was summed."""
    err = float(np.linalg.norm(np.asarray(got, np.float64) - np.asarray(ref, np.float64)))
    assert err <= TOL * scale, f"{what}: error {err:.3g} > {TOL} * {scale:.3g}"


def norm(a: npt.ArrayLike) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64)))


def t64(a: npt.ArrayLike, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=D64, requires_grad=grad)


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> F32Array:
    return f32(rng.standard_normal(shape) * scale)


def assert_adds(with_init: np.ndarray, init: np.ndarray, fresh: np.ndarray) -> None:
    """A "+=" parameter gradient: the kernel forms the batch sum, then adds it once,
    so the result from ``init`` is exactly float32(init + result from zeros)."""
    assert np.array_equal(with_init, (init + fresh).astype(np.float32))


def ulp_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in units of the float32 ulp at ref (subnormal ulp = 2^-149)."""
    _, ex = np.frexp(np.abs(ref))
    ulp = np.maximum(np.ldexp(1.0, ex - 24), 2.0**-149)
    return np.abs(got.astype(np.float64) - ref) / ulp


def float_bits_sample(rng: np.random.Generator, n: int, lo: float, hi: float) -> F32Array:
    """Floats in [lo, hi] (lo >= 0) spread evenly over their bit patterns (every binade)."""
    a = np.array([lo], np.float32).view(np.uint32)[0]
    b = np.array([hi], np.float32).view(np.uint32)[0]
    return rng.integers(a, b, n, dtype=np.uint32, endpoint=True).view(np.float32)


# --------------------------------------------------------------------------- math


def test_expf_ulp(lib: F32Lib, record_property: Callable[[str, object], None]) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([
        f32(rng.uniform(-103.9, 88.72, 300_000)),
        f32(rng.uniform(-20.0, 0.0, 200_000)),  # softmax's range
        -float_bits_sample(rng, 50_000, 1e-30, 103.9),
        float_bits_sample(rng, 50_000, 1e-30, 88.72),
        f32([0.0, -0.0, 88.72283172607421875, -87.33654, -103.97, 1e-45, -1e-45]),
    ])
    got = lib.map_math("expf", x)
    err = ulp_error(got, np.exp(x.astype(np.float64)))
    record_property("expf_max_ulp", float(err.max()))
    print(f"mcutl_expf: max error {err.max():.3f} ulp over {x.size} samples")
    assert err.max() < 2.0  # exhaustive over all floats: 0.976 ulp
    assert lib.lib.mcutl_expf(0.0) == 1.0
    assert lib.lib.mcutl_expf(88.7229) == np.inf
    assert lib.lib.mcutl_expf(-np.inf) == 0.0
    assert np.isnan(lib.lib.mcutl_expf(np.nan))


def test_logf_log1pf_ulp(lib: F32Lib, record_property: Callable[[str, object], None]) -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([
        float_bits_sample(rng, 300_000, 1e-45, 3.4e38),  # every binade, subnormals too
        f32(rng.uniform(0.5, 2.0, 200_000)),
        f32(1.0 + rng.uniform(-1e-4, 1e-4, 10_000)),
        f32([1.0, 2.0, 0.5, 1.4142135, 1.4142137, 3.4028235e38, 1.4e-45]),
    ])
    got = lib.map_math("logf", x)
    err = ulp_error(got, np.log(x.astype(np.float64)))
    assert lib.lib.mcutl_logf(1.0) == 0.0
    xp = np.concatenate([
        float_bits_sample(rng, 100_000, 1e-40, 1e30), -float_bits_sample(rng, 100_000, 1e-40,
                                                                         0.999),
        f32(rng.uniform(-0.3, 0.42, 100_000)),
    ])
    err1 = ulp_error(lib.map_math("log1pf", xp), np.log1p(xp.astype(np.float64)))
    record_property("logf_max_ulp", float(err.max()))
    record_property("log1pf_max_ulp", float(err1.max()))
    print(f"mcutl_logf: max error {err.max():.3f} ulp over {x.size} samples; "
          f"mcutl_log1pf: {err1.max():.3f} ulp over {xp.size}")
    assert err.max() < 2.0  # exhaustive over all positive floats: 0.840 ulp
    assert err1.max() < 2.0
    assert lib.lib.mcutl_logf(0.0) == -np.inf
    assert lib.lib.mcutl_logf(np.inf) == np.inf
    assert np.isnan(lib.lib.mcutl_logf(-1.0))
    assert lib.lib.mcutl_log1pf(-1.0) == -np.inf


def _check_sqrt(lib: F32Lib) -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([
        float_bits_sample(rng, 400_000, 0.0, 3.4028235e38),
        f32(np.arange(1, 1000) ** 2), f32([0.0, -0.0, np.inf, 1.4e-45, 2.0, 3.0]),
    ])
    got = lib.map_math("sqrtf", x)
    ref = np.sqrt(x)  # numpy's float32 sqrt: IEEE correctly rounded
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    neg = lib.map_math("sqrtf", f32([-1.0, -1e-30, -np.inf]))
    assert np.isnan(neg).all()


def test_sqrtf_is_correctly_rounded(lib: F32Lib) -> None:
    _check_sqrt(lib)


def test_portable_sqrtf_is_correctly_rounded(tmp_path: Path) -> None:
    """The fallback for targets without a hardware square root gives the same bits."""
    if not HAVE_GCC:
        pytest.skip("gcc not installed")
    _check_sqrt(load_f32_lib(tmp_path, extra_flags=["-DMCUTL_F32_PORTABLE_SQRT"]))


# --------------------------------------------------------------------------- conv2d


@dataclass(frozen=True)
class ConvCase:
    n: int
    h: int
    w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    pad: tuple[int, int, int, int]  # top, bottom, left, right
    geom: ConvGeom
    bias: bool
    seed: int

    def out_hw(self) -> tuple[int, int]:
        g = self.geom
        pt, pb, pl, pr = self.pad
        ekh = g.dilation_h * (self.kh - 1) + 1
        ekw = g.dilation_w * (self.kw - 1) + 1
        return ((self.h + pt + pb - ekh) // g.stride_h + 1,
                (self.w + pl + pr - ekw) // g.stride_w + 1)


@st.composite
def conv_cases(draw: st.DrawFn, depthwise_only: bool = False) -> ConvCase:
    kind = "dw" if depthwise_only else draw(st.sampled_from(["std", "grouped", "dw"]))
    if kind == "dw":
        c_in = draw(st.integers(1, 7))
        groups, c_out = c_in, c_in * draw(st.integers(1, 2))
    else:
        groups = 1 if kind == "std" else draw(st.integers(2, 3))
        c_in = groups * draw(st.integers(1, 5))
        c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2]))
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    pt, pb = draw(st.integers(0, ekh - 1)), draw(st.integers(0, ekh - 1))
    pl, pr = draw(st.integers(0, ekw - 1)), draw(st.integers(0, ekw - 1))
    h = draw(st.integers(max(1, ekh - pt - pb), 11))
    w = draw(st.integers(max(1, ekw - pl - pr), 11))
    return ConvCase(draw(st.integers(1, 2)), h, w, c_in, c_out, kh, kw, (pt, pb, pl, pr),
                    ConvGeom(sh, sw, dh, dw, pt, pl, groups), draw(st.booleans()),
                    draw(SEEDS))


def torch_conv(case: ConvCase, x: torch.Tensor, w_oihw: torch.Tensor,
               b: torch.Tensor | None) -> torch.Tensor:
    pt, pb, pl, pr = case.pad
    g = case.geom
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w_oihw, b, stride=(g.stride_h, g.stride_w),
                    dilation=(g.dilation_h, g.dilation_w), groups=g.groups)


def conv_refs(case: ConvCase, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
              go: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch float64 autograd: output "y", gradients "x", "w", "b" in NHWC / OHWI."""
    xt, wt = t64(nchw(x), grad=True), t64(w.transpose(0, 3, 1, 2), grad=True)
    bt = t64(b, grad=True) if b is not None else None
    yt = torch_conv(case, xt, wt, bt)
    yt.backward(t64(nchw(go)))
    assert xt.grad is not None and wt.grad is not None
    out = {"y": nhwc(yt), "x": nhwc(xt.grad), "w": wt.grad.numpy().transpose(0, 2, 3, 1)}
    if bt is not None:
        assert bt.grad is not None
        out["b"] = bt.grad.numpy()
    return out


DW_STRIDE2_ODD = ConvCase(1, 7, 9, 5, 5, 3, 3, (1, 1, 1, 1), ConvGeom(2, 2, 1, 1, 1, 1, 5),
                          True, 7)
GROUPED_SAME = ConvCase(2, 6, 5, 6, 4, 5, 3, (2, 2, 1, 1), ConvGeom(2, 1, 1, 1, 2, 1, 2),
                        False, 8)


@PROPS
@given(case=conv_cases(), acc_in=st.booleans())
@example(case=DW_STRIDE2_ODD, acc_in=False)
@example(case=GROUPED_SAME, acc_in=True)
def test_conv2d_forward_and_gradients(lib: F32Lib, case: ConvCase, acc_in: bool) -> None:
    rng = np.random.default_rng(case.seed)
    g = case.geom
    x = randn(rng, case.n, case.h, case.w, case.c_in)
    w = randn(rng, case.c_out, case.kh, case.kw, case.c_in // g.groups, scale=0.5)
    b = randn(rng, case.c_out) if case.bias else None
    oh, ow = case.out_hw()
    go = randn(rng, case.n, oh, ow, case.c_out)
    ref = conv_refs(case, x, w, b, go)
    ab = conv_refs(case, np.abs(x), np.abs(w), None if b is None else np.abs(b), np.abs(go))

    check(lib.conv2d(g, x, w, b, (oh, ow)), ref["y"], "conv2d forward", ab["y"])
    gi_init = randn(rng, *x.shape) if acc_in else None
    gi = lib.conv2d_grad_input(g, go, w, x.shape, init=gi_init)
    if gi_init is None:
        check(gi, ref["x"], "grad_input", ab["x"])
    else:
        check(gi, ref["x"] + gi_init, "grad_input (accumulate)", ab["x"] + np.abs(gi_init))
    gw = lib.conv2d_grad_weight(g, x, go, w.shape)
    check(gw, ref["w"], "grad_weight", ab["w"])
    gw_init = randn(rng, *w.shape)
    assert_adds(lib.conv2d_grad_weight(g, x, go, w.shape, init=gw_init), gw_init, gw)
    if b is not None:
        gb = lib.conv2d_grad_bias(go)
        check(gb, ref["b"], "grad_bias", ab["b"])
        gb_init = randn(rng, case.c_out)
        assert_adds(lib.conv2d_grad_bias(go, init=gb_init), gb_init, gb)
    if case.n == 2:  # a mini-batch by accumulation equals the batch gradient
        gw_acc = lib.conv2d_grad_weight(g, x[:1], go[:1], w.shape)
        gw_acc = lib.conv2d_grad_weight(g, x[1:], go[1:], w.shape, init=gw_acc)
        check(gw_acc, ref["w"], "grad_weight accumulated per sample", ab["w"])


def conv_transpose_ref(case: ConvCase, go: np.ndarray, w_oihw: np.ndarray) -> np.ndarray:
    """Input gradient by F.conv_transpose2d on the padded input, cropped (NHWC)."""
    g = case.geom
    pt, pb, pl, pr = case.pad
    hp, wp = case.h + pt + pb, case.w + pl + pr
    oh, ow = case.out_hw()
    ekh = g.dilation_h * (case.kh - 1) + 1
    ekw = g.dilation_w * (case.kw - 1) + 1
    out_pad = (hp - ((oh - 1) * g.stride_h + ekh), wp - ((ow - 1) * g.stride_w + ekw))
    full = F.conv_transpose2d(t64(nchw(go)), t64(w_oihw), stride=(g.stride_h, g.stride_w),
                              dilation=(g.dilation_h, g.dilation_w), groups=g.groups,
                              output_padding=out_pad)
    assert full.shape[2:] == (hp, wp)
    return nhwc(full[:, :, pt:pt + case.h, pl:pl + case.w])


@PROPS
@given(case=conv_cases(), acc_in=st.booleans())
@example(case=DW_STRIDE2_ODD, acc_in=False)
def test_conv2d_grad_input_frozen_int8(lib: F32Lib, case: ConvCase, acc_in: bool) -> None:
    rng = np.random.default_rng(case.seed)
    g = case.geom
    wq = rng.integers(-127, 128, (case.c_out, case.kh, case.kw, case.c_in // g.groups),
                      dtype=np.int8)
    scale = f32(rng.uniform(1e-3, 5e-2, case.c_out))
    w_deq = scale[:, None, None, None] * wq.astype(np.float32)  # float32 dequantisation
    oh, ow = case.out_hw()
    go = randn(rng, case.n, oh, ow, case.c_out)
    w_oihw = w_deq.transpose(0, 3, 1, 2)
    init = randn(rng, case.n, case.h, case.w, case.c_in) if acc_in else None
    ref, ab = plus(conv_transpose_ref(case, go, w_oihw),
                   conv_transpose_ref(case, np.abs(go), np.abs(w_oihw)), init)
    got = lib.conv2d_grad_input_s8w(g, go, wq, scale, (case.n, case.h, case.w, case.c_in),
                                    init=init)
    check(got, ref, "s8w conv grad_input", ab)
    # the same gradient as the float kernel on the dequantised weights
    check(got, lib.conv2d_grad_input(g, go, w_deq, got.shape, init=init), "s8w vs f32", ab)


@PROPS
@given(case=conv_cases(depthwise_only=True), acc_in=st.booleans())
@example(case=DW_STRIDE2_ODD, acc_in=True)
def test_depthwise_grad_input_frozen_int8_1hwc(lib: F32Lib, case: ConvCase,
                                               acc_in: bool) -> None:
    rng = np.random.default_rng(case.seed)
    wq = rng.integers(-127, 128, (1, case.kh, case.kw, case.c_out), dtype=np.int8)
    scale = f32(rng.uniform(1e-3, 5e-2, case.c_out))
    w_deq = scale * wq[0].astype(np.float32)  # [KH, KW, C_out]
    w_oihw = np.ascontiguousarray(w_deq.transpose(2, 0, 1)[:, None])
    oh, ow = case.out_hw()
    go = randn(rng, case.n, oh, ow, case.c_out)
    init = randn(rng, case.n, case.h, case.w, case.c_in) if acc_in else None
    got = lib.depthwise_conv2d_grad_input_s8w(case.geom, go, wq, scale,
                                              (case.n, case.h, case.w, case.c_in), init=init)
    ref, ab = plus(conv_transpose_ref(case, go, w_oihw),
                   conv_transpose_ref(case, np.abs(go), np.abs(w_oihw)), init)
    check(got, ref, "depthwise s8w grad_input", ab)


# --------------------------------------------------------------------------- linear


@PROPS
@given(b=st.integers(1, 4), fin=st.integers(1, 40), fout=st.integers(1, 21),
       bias=st.booleans(), acc_in=st.booleans(), seed=SEEDS)
def test_linear_forward_and_gradients(lib: F32Lib, b: int, fin: int, fout: int, bias: bool,
                                      acc_in: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w = randn(rng, b, fin), randn(rng, fout, fin, scale=0.3)
    bb = randn(rng, fout) if bias else None
    go = randn(rng, b, fout)

    def refs(x: np.ndarray, w: np.ndarray, bb: np.ndarray | None,
             go: np.ndarray) -> dict[str, np.ndarray]:
        xt, wt = t64(x, grad=True), t64(w, grad=True)
        bt = t64(bb, grad=True) if bb is not None else None
        yt = F.linear(xt, wt, bt)
        yt.backward(t64(go))
        assert xt.grad is not None and wt.grad is not None
        return {"y": yt.detach().numpy(), "x": xt.grad.numpy(), "w": wt.grad.numpy(),
                "b": bt.grad.numpy() if bt is not None and bt.grad is not None else None}

    ref = refs(x, w, bb, go)
    ab = refs(np.abs(x), np.abs(w), None if bb is None else np.abs(bb), np.abs(go))
    check(lib.linear(x, w, bb), ref["y"], "linear forward", ab["y"])
    init = randn(rng, b, fin) if acc_in else None
    rx, ax = plus(ref["x"], ab["x"], init)
    check(lib.linear_grad_input(w, go, init=init), rx, "linear grad_input", ax)
    gw = lib.linear_grad_weight(x, go)
    check(gw, ref["w"], "linear grad_weight", ab["w"])
    gw0 = randn(rng, fout, fin)
    assert_adds(lib.linear_grad_weight(x, go, init=gw0), gw0, gw)
    if bb is not None:
        gb = lib.linear_grad_bias(go)
        check(gb, ref["b"], "linear grad_bias", ab["b"])
        gb0 = randn(rng, fout)
        assert_adds(lib.linear_grad_bias(go, init=gb0), gb0, gb)
    wq = rng.integers(-127, 128, (fout, fin), dtype=np.int8)
    scale = f32(rng.uniform(1e-3, 5e-2, fout))
    w_deq = scale[:, None] * wq.astype(np.float32)
    rq, aq = plus(refs(x, w_deq, None, go)["x"],
                  refs(np.abs(x), np.abs(w_deq), None, np.abs(go))["x"], init)
    check(lib.linear_grad_input_s8w(wq, scale, go, init=init), rq, "linear s8w grad_input", aq)


# --------------------------------------------------------------------------- masks


def unpack_mask(mask: np.ndarray, size: int) -> np.ndarray:
    return np.unpackbits(mask, bitorder="little")[:size].astype(bool)


@PROPS
@given(size=st.integers(0, 75), relu6=st.booleans(), inplace=st.booleans(),
       acc=st.booleans(), seed=SEEDS)
@example(size=17, relu6=True, inplace=False, acc=False, seed=0)
def test_relu_relu6_masks(lib: F32Lib, size: int, relu6: bool, inplace: bool, acc: bool,
                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = randn(rng, size, scale=5.0)
    x[rng.random(size) < 0.15] = 0.0  # exact ties: gradient 0 at 0 and 6 in PyTorch
    x[rng.random(size) < 0.15] = 6.0
    xt = t64(x, grad=True)
    yt = F.relu6(xt) if relu6 else F.relu(xt)
    go = randn(rng, size)
    yt.backward(t64(go))
    assert xt.grad is not None
    out, mask = lib.act("relu6" if relu6 else "relu", x.copy(), inplace=inplace)
    assert np.array_equal(out, yt.detach().numpy().astype(np.float32))
    bits = (x > 0) & (x < 6) if relu6 else x > 0
    assert np.array_equal(mask, np.packbits(bits, bitorder="little"))  # tail bits 0
    init = randn(rng, size) if acc else None
    gi = lib.act_grad_input(go, mask, init=init)
    assert np.array_equal(gi, (xt.grad.numpy() + (init if init is not None else 0.0))
                          .astype(np.float32))
    go2 = go.copy()
    assert np.array_equal(lib.act_grad_input(go2, mask, inplace=True),
                          xt.grad.numpy().astype(np.float32))


@PROPS
@given(size=st.integers(0, 60), zp=st.integers(-128, 127), scale=st.floats(1e-4, 10.0),
       inplace=st.booleans(), seed=SEEDS)
def test_clamp_to_the_int8_range(lib: F32Lib, size: int, zp: int, scale: float, inplace: bool,
                                 seed: int) -> None:
    """A connector's float sum clamped to what its int8 tensor holds (torch.clamp with the
    float32 real values of -128 and 127; NaN kept), in place or not."""
    rng = np.random.default_rng(seed)
    s = np.float32(scale)
    lo, hi = s * np.float32(-128 - zp), s * np.float32(127 - zp)
    x = randn(rng, size, scale=200.0 * float(s))
    x[rng.random(size) < 0.1] = lo  # the bounds themselves
    x[rng.random(size) < 0.1] = np.nan
    out = x if inplace else np.empty_like(x)
    want = torch.clamp(torch.from_numpy(x.copy()), float(lo), float(hi)).numpy()
    lib.call("mcutl_clamp_f32", _pf32(x), x.size, lo, hi, _pf32(out))
    assert np.array_equal(out, want, equal_nan=True)
    assert lib.status("mcutl_clamp_f32", _pf32(x), x.size, hi, lo, _pf32(out)) \
        == MCUTL_F32_ARG_ERROR  # bounds the wrong way round


@PROPS
@given(size=st.integers(0, 70), lo=st.integers(-128, 127), span=st.integers(0, 255),
       relu6=st.booleans(), seed=SEEDS)
def test_act_mask_from_int8_output(lib: F32Lib, size: int, lo: int, span: int, relu6: bool,
                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    hi = min(127, lo + span)
    q = rng.integers(lo, hi + 1, size, dtype=np.int8)  # a clamped layer output
    mask = lib.act_mask_from_s8(q, lo, hi, MASK_RELU6 if relu6 else MASK_RELU)
    qi = q.astype(np.int32)
    bits = (qi > lo) & (qi < hi) if relu6 else qi > lo
    assert np.array_equal(unpack_mask(mask, size), bits)
    assert np.array_equal(mask, np.packbits(bits, bitorder="little"))


# --------------------------------------------------------------------------- norms


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6), groups=st.integers(1, 4),
       cg=st.integers(1, 5), affine=st.booleans(), acc_in=st.booleans(),
       inplace=st.sampled_from(["", "out", "xhat"]), seed=SEEDS)
def test_group_norm(lib: F32Lib, n: int, h: int, w: int, groups: int, cg: int, affine: bool,
                    acc_in: bool, inplace: str, seed: int) -> None:
    # with 2 elements per group the exact input gradient is O(eps) (the gradient is
    # orthogonal to 1 and xhat) and any float32 result is rounding noise
    assume(h * w * cg >= 4)
    rng = np.random.default_rng(seed)
    c = groups * cg
    eps = 1e-5
    x = randn(rng, n, h, w, c, scale=2.0) + f32(rng.standard_normal(c))
    gamma = randn(rng, c) if affine else None
    beta = randn(rng, c) if affine else None
    go = randn(rng, n, h, w, c)
    xt = t64(nchw(x), grad=True)
    gt = t64(gamma, grad=True) if gamma is not None else None
    bt = t64(beta, grad=True) if beta is not None else None
    yt = F.group_norm(xt, groups, gt, bt, eps)
    yt.backward(t64(nchw(go)))
    assert xt.grad is not None
    xg = xt.detach().reshape(n, groups, -1)
    mean_ref = xg.mean(-1).numpy()
    rstd_ref = (1.0 / torch.sqrt(xg.var(-1, unbiased=False) + eps)).numpy()

    out, xhat, mean, rstd = lib.group_norm(x.copy(), groups, eps, gamma, beta, inplace)
    xh64 = nhwc(F.group_norm(xt.detach(), groups, None, None, eps))
    out_abs = np.abs(xh64) * (np.abs(gamma) if gamma is not None else 1.0) + (
        np.abs(beta) if beta is not None else 0.0)
    check(out, nhwc(yt), "group_norm forward", out_abs)
    # the mean of values around 0 cancels: its error is relative to the data
    check_within(mean, mean_ref, norm(x) / np.sqrt(x.size / (n * groups)), "mean")
    check(rstd, rstd_ref, "rstd")
    xhat_ref = (x.astype(np.float64).reshape(n, h * w, groups, cg)
                - mean_ref[:, None, :, None]) * rstd_ref[:, None, :, None]
    check(xhat, xhat_ref.reshape(x.shape), "xhat")

    init = randn(rng, *x.shape) if acc_in else None
    gi, gg, gb = lib.group_norm_grad(xhat, rstd, gamma, go, groups, init=init)
    rx, ax = plus(nhwc(xt.grad), np.abs(nhwc(xt.grad)), init)
    check(gi, rx, "group_norm grad_input", ax)
    if gt is not None and bt is not None:
        assert gt.grad is not None and bt.grad is not None
        check(gg, gt.grad, "grad_gamma", (np.abs(go) * np.abs(xh64)).sum(axis=(0, 1, 2)))
        check(gb, bt.grad, "grad_beta", np.abs(go).sum(axis=(0, 1, 2)))
        gg0, gb0 = randn(rng, c), randn(rng, c)
        _, gg1, gb1 = lib.group_norm_grad(xhat, rstd, gamma, go, groups, grad_gamma=gg0,
                                          grad_beta=gb0)
        assert_adds(gg1, gg0, gg)
        assert_adds(gb1, gb0, gb)
    gi2, _, _ = lib.group_norm_grad(xhat, rstd, gamma, go.copy(), groups, inplace=True)
    check(gi2, nhwc(xt.grad), "group_norm grad_input in place")


def test_group_norm_zero_gamma_blocks_input_gradient(lib: F32Lib) -> None:
    """Rep-Net's last norm starts with gamma = 0: output = beta, no input gradient, but
    gamma still gets a gradient."""
    rng = np.random.default_rng(5)
    x, go = randn(rng, 1, 3, 5, 8), randn(rng, 1, 3, 5, 8)
    gamma, beta = np.zeros(8, np.float32), randn(rng, 8)
    out, xhat, _, rstd = lib.group_norm(x, 2, 1e-5, gamma, beta)
    assert np.array_equal(out, np.broadcast_to(beta, x.shape))
    gi, gg, _ = lib.group_norm_grad(xhat, rstd, gamma, go, 2)
    assert not gi.any()
    check(gg, (go.astype(np.float64) * xhat).sum(axis=(0, 1, 2)), "grad_gamma at gamma=0")


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 9),
       shift=st.booleans(), acc_in=st.booleans(), seed=SEEDS)
def test_scale_shift(lib: F32Lib, n: int, h: int, w: int, c: int, shift: bool, acc_in: bool,
                     seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, go = randn(rng, n, h, w, c), randn(rng, n, h, w, c)
    s = randn(rng, c)
    b = randn(rng, c) if shift else None
    xt, st_ = t64(x, grad=True), t64(s, grad=True)
    bt = t64(b, grad=True) if b is not None else None
    yt = xt * st_ + (bt if bt is not None else 0.0)
    yt.backward(t64(go))
    assert xt.grad is not None and st_.grad is not None
    y_abs = np.abs(x) * np.abs(s) + (np.abs(b) if b is not None else 0.0)
    check(lib.scale_shift(x, s, b), yt, "scale_shift forward", y_abs)
    check(lib.scale_shift(x.copy(), s, b, inplace=True), yt, "scale_shift in place", y_abs)
    init = randn(rng, *x.shape) if acc_in else None
    gi, gs, gb = lib.scale_shift_grad(x, s, go, init=init)
    rx, ax = plus(xt.grad.numpy(), np.abs(xt.grad.numpy()), init)
    check(gi, rx, "scale_shift grad_input", ax)
    check(gs, st_.grad, "grad_scale", (np.abs(go) * np.abs(x)).sum(axis=(0, 1, 2)))
    check(gb, go.astype(np.float64).sum(axis=(0, 1, 2)), "grad_shift",
          np.abs(go).sum(axis=(0, 1, 2)))
    gs0, gb0 = randn(rng, c), randn(rng, c)
    _, gs1, gb1 = lib.scale_shift_grad(x, s, go, grad_scale=gs0, grad_shift=gb0)
    assert_adds(gs1, gs0, gs)
    assert_adds(gb1, gb0, gb)


# --------------------------------------------------------------------------- pooling


@PROPS
@given(n=st.integers(1, 2), ph=st.integers(1, 4), pw=st.integers(1, 4), eh=st.integers(0, 7),
       ew=st.integers(0, 7), c=st.integers(1, 7), acc_in=st.booleans(), seed=SEEDS)
def test_avg_pool(lib: F32Lib, n: int, ph: int, pw: int, eh: int, ew: int, c: int,
                  acc_in: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = ph + eh, pw + ew  # odd sizes: trailing rows/columns dropped (floor)
    x = randn(rng, n, h, w, c)
    xt = t64(nchw(x), grad=True)
    yt = F.avg_pool2d(xt, (ph, pw))
    go = randn(rng, *nhwc(yt).shape)
    yt.backward(t64(nchw(go)))
    assert xt.grad is not None
    check(lib.avg_pool(x, ph, pw), nhwc(yt), "avg_pool forward",
          nhwc(F.avg_pool2d(t64(nchw(np.abs(x))), (ph, pw))))
    init = randn(rng, *x.shape) if acc_in else None
    rx, ax = plus(nhwc(xt.grad), np.abs(nhwc(xt.grad)), init)
    check(lib.avg_pool_grad_input(x.shape, ph, pw, go, init=init), rx, "avg_pool grad_input",
          ax)


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 9),
       acc_in=st.booleans(), seed=SEEDS)
def test_global_avg_pool(lib: F32Lib, n: int, h: int, w: int, c: int, acc_in: bool,
                         seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, go = randn(rng, n, h, w, c), randn(rng, n, c)
    xt = t64(nchw(x), grad=True)
    yt = xt.mean(dim=(2, 3))
    yt.backward(t64(go))
    assert xt.grad is not None
    check(lib.global_avg_pool(x), yt, "global_avg_pool forward",
          np.abs(x).astype(np.float64).mean(axis=(1, 2)))
    init = randn(rng, *x.shape) if acc_in else None
    rx, ax = plus(nhwc(xt.grad), np.abs(nhwc(xt.grad)), init)
    check(lib.global_avg_pool_grad_input(x.shape, go, init=init), rx,
          "global_avg_pool grad_input", ax)


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 6),
       fh=st.integers(1, 4), fw=st.integers(1, 4), acc_in=st.booleans(), seed=SEEDS)
def test_upsample_nearest(lib: F32Lib, n: int, h: int, w: int, c: int, fh: int, fw: int,
                          acc_in: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = randn(rng, n, h, w, c)
    xt = t64(nchw(x), grad=True)
    yt = F.interpolate(xt, size=(h * fh, w * fw), mode="nearest")
    go = randn(rng, n, h * fh, w * fw, c)
    yt.backward(t64(nchw(go)))
    assert xt.grad is not None
    up = lib.upsample(x, fh, fw)
    assert np.array_equal(up, np.repeat(np.repeat(x, fh, axis=1), fw, axis=2))
    check(up, nhwc(yt), "upsample forward")
    init = randn(rng, *x.shape) if acc_in else None
    go_abs = np.abs(go).astype(np.float64).reshape(n, h, fh, w, fw, c).sum(axis=(2, 4))
    rx, ax = plus(nhwc(xt.grad), go_abs, init)
    check(lib.upsample_grad_input(x.shape, fh, fw, go, init=init), rx, "upsample grad_input",
          ax)


# --------------------------------------------------------------------------- element-wise


def test_add_and_axpy(lib: F32Lib) -> None:
    rng = np.random.default_rng(9)
    a, b = randn(rng, 37), randn(rng, 37)
    assert np.array_equal(lib.add(a, b), a + b)
    a2 = a.copy()
    lib.add(a2, b, out=a2)  # in place
    assert np.array_equal(a2, a + b)
    y = b.copy()
    lib.axpy(1.0, a, y)
    assert np.array_equal(y, a + b)  # alpha = 1 adds exactly
    y = b.copy()
    lib.axpy(-0.5, a, y)
    assert np.array_equal(y, b + f32(-0.5) * a)


# --------------------------------------------------------------------------- loss


def xent_reference(logits: np.ndarray, labels: np.ndarray,
                   smoothing: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(mean loss, softmax, grad of the mean) in 50-digit arithmetic: float64 PyTorch
    loses the relative accuracy of a loss or gradient below ~1e-9 (log(1 + 1e-12))."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    mp.dps = 50
    b, k = logits.shape
    total = mp.mpf(0)
    probs, grad = np.empty((b, k)), np.empty((b, k))
    for i in range(b):
        z = [mp.mpf(float(v)) for v in logits[i]]
        zmax = max(z)
        e = [mp.exp(v - zmax) for v in z]
        s = mp.fsum(e)
        t = [mp.mpf(smoothing) / k + (1 - mp.mpf(smoothing)) * (j == labels[i])
             for j in range(k)]
        total += -mp.fsum(t[j] * ((z[j] - zmax) - mp.log(s)) for j in range(k))
        probs[i] = [float(v / s) for v in e]
        grad[i] = [float((e[j] / s - t[j]) / b) for j in range(k)]
    return float(total / b), probs, grad


@PROPS
@given(b=st.integers(1, 4), k=st.integers(1, 20), scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
       smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.25]), confident=st.booleans(), seed=SEEDS)
@example(b=1, k=10, scale=1.0, smoothing=0.0, confident=True, seed=3)
def test_softmax_cross_entropy(lib: F32Lib, b: int, k: int, scale: float, smoothing: float,
                               confident: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = randn(rng, b, k, scale=scale)
    labels = rng.integers(0, k, b)
    if confident:  # loss and gradients down to 1e-12: checks the log1p / arg-max path
        logits[np.arange(b), labels] += 25.0
    loss, probs, grad = lib.softmax_xent(logits, labels, smoothing, 1.0 / b)
    ref_loss, ref_probs, ref_grad = xent_reference(logits, labels, smoothing)
    assert abs(loss - ref_loss) <= TOL * max(abs(ref_loss), 1e-30), (loss, ref_loss)
    check(probs, ref_probs, "softmax")
    check(grad, ref_grad, "grad_logits")
    lt = t64(logits, grad=True)
    loss_t = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=smoothing)
    loss_t.backward()
    assert lt.grad is not None
    if float(loss_t.detach()) > 1e-6:  # where float64 PyTorch keeps 1e-10 relative
        assert abs(loss - float(loss_t.detach())) <= TOL * float(loss_t.detach())
        check(grad, lt.grad, "grad_logits vs PyTorch")
    # in place: the gradient over the logits
    lg = logits.copy()
    lab32 = np.ascontiguousarray(labels, np.int32)
    ptr = lg.ctypes.data_as(lib.lib.mcutl_softmax_xent_f32.argtypes[0])
    loss2 = lib.lib.mcutl_softmax_xent_f32(ptr, lab32.ctypes.data_as(
        lib.lib.mcutl_softmax_xent_f32.argtypes[1]), b, k, smoothing, 1.0 / b, None, ptr)
    assert loss2 == np.float32(loss)
    assert np.array_equal(lg, grad)


# --------------------------------------------------------------------------- optimizers


@FEW
@given(momentum=st.sampled_from([0.0, 0.9]), wd=st.sampled_from([0.0, 1e-2]),
       size=st.integers(1, 50), seed=SEEDS)
def test_sgd_matches_torch(lib: F32Lib, momentum: float, wd: float, size: int,
                           seed: int) -> None:
    """Weights are compared relative to the path length (sum of the step sizes) and
    the momentum buffer relative to the sum of what entered it, so that cancelling
    steps do not turn rounding into a large relative error."""
    rng = np.random.default_rng(seed)
    lr = 0.1
    w0 = randn(rng, size, scale=0.1)
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=wd)
    w, buf = w0.copy(), np.zeros(size, np.float32)
    w_acc, buf_acc = w0.copy(), np.zeros(size, np.float32)
    path = buf_scale = 0.0
    for _ in range(6):
        gr = randn(rng, size)
        w_prev = p.detach().numpy().copy()
        buf_scale = momentum * buf_scale + norm(gr) + wd * norm(w_prev)
        p.grad = torch.tensor(gr)
        opt.step()
        w_ref = p.detach().numpy()
        path += norm(w_ref.astype(np.float64) - w_prev)
        g = gr.copy()
        lib.sgd_step(lr, momentum, wd, w, g, buf if momentum else None, zero_grad=True)
        assert not g.any()
        check_within(w, w_ref, path, "sgd weights")
        if momentum:
            check_within(buf, opt.state[p]["momentum_buffer"].numpy(), buf_scale,
                         "momentum buffer")
            # the momentum buffer as gradient accumulator (two half-gradients)
            lib.sgd_accum_begin(momentum, buf_acc)
            half = f32(gr * 0.5)
            lib.axpy(1.0, half, buf_acc)
            lib.axpy(1.0, f32(gr - half), buf_acc)
            lib.sgd_accum_step(lr, momentum, wd, w_acc, buf_acc)
            check_within(w_acc, w_ref, path, "sgd accum weights")


@FEW
@given(wd=st.sampled_from([0.0, 1e-2]), lr=st.sampled_from([1e-2, 1e-3]),
       size=st.integers(1, 50), seed=SEEDS)
def test_adam_matches_torch(lib: F32Lib, wd: float, lr: float, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))  # the C betas are float32
    eps = float(np.float32(1e-8))
    w0 = randn(rng, size, scale=lr * 10)
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    w, m, v = w0.copy(), np.zeros(size, np.float32), np.zeros(size, np.float32)
    path = m_scale = 0.0
    for step in range(1, 8):
        gr = randn(rng, size, scale=10.0 ** rng.uniform(-3, 1))
        w_prev = p.detach().numpy().copy()
        m_scale = b1 * m_scale + (1 - b1) * (norm(gr) + wd * norm(w_prev))
        p.grad = torch.tensor(gr)
        opt.step()
        w_ref = p.detach().numpy()
        path += norm(w_ref.astype(np.float64) - w_prev)
        g = gr.copy()
        lib.adam_step(lr, b1, b2, eps, wd, step, w, g, m, v, zero_grad=(step % 2 == 0))
        assert (not g.any()) if step % 2 == 0 else np.array_equal(g, gr)
        check_within(w, w_ref, path, f"adam weights at step {step}")
        check_within(m, opt.state[p]["exp_avg"].numpy(), m_scale, "exp_avg")
        check(v, opt.state[p]["exp_avg_sq"].numpy(), "exp_avg_sq")  # no cancellation


def test_adam_bias_correction_late_steps(lib: F32Lib) -> None:
    """1 - beta^t stays accurate at large t (binary powering of the complement)."""
    b1, b2 = float(np.float32(0.9)), float(np.float32(0.999))
    for step in (1, 2, 3, 10, 1000, 12345, 2**31 - 1):
        w, g = f32([0.0]), f32([1.0])
        m, v = np.zeros(1, np.float32), np.zeros(1, np.float32)
        lib.adam_step(1.0, b1, b2, 1e-30, 0.0, step, w, g, m, v, zero_grad=False)
        # m = (1-b1) g, v = (1-b2) g^2: w = -(m / bc1) / (sqrt(v) / sqrt(bc2))
        bc1, bc2 = -np.expm1(step * np.log(b1)), -np.expm1(step * np.log(b2))
        ref = -(float(m[0]) / bc1) / (np.sqrt(float(v[0])) / np.sqrt(bc2))
        assert abs(w[0] - ref) <= 1e-6 * abs(ref), (step, w[0], ref)


# --------------------------------------------------------------------------- quantisation


def tflite_quantize_model(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """TFLite QUANTIZE: clamp(std::round(x / (float)scale) + zp) with float32 division
    and ties away from zero; NaN -> zp (undefined in TFLite)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        q = (x.astype(np.float32) / np.float32(scale)).astype(np.float64)
        r = np.sign(q) * np.floor(np.abs(q) + 0.5)  # exact in float64 for float32 q
        r = np.where(np.isnan(r), 0.0, r)
        return np.clip(r + zp, -128, 127).astype(np.int8)


@PROPS
@given(scale_exp=st.floats(-9.0, 2.0), pow2=st.booleans(), zp=st.integers(-128, 127),
       seed=SEEDS)
def test_quantize_matches_tflite_rounding(lib: F32Lib, scale_exp: float, pow2: bool, zp: int,
                                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    scale = float(np.float32(2.0 ** round(scale_exp) if pow2 else 2.0**scale_exp))
    s32 = np.float32(scale)
    k = np.arange(-300, 300, dtype=np.float64)
    ties = f32((k + 0.5) * s32)  # exact x / scale == k + 0.5 when scale is a power of 2
    x = np.concatenate([
        ties, f32(k * s32), f32(rng.uniform(-300, 300, 2000) * s32),
        np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)),
        f32([0.0, -0.0, np.inf, -np.inf, 3e38, -3e38, 1e-40]),
    ]).astype(np.float32)
    got = lib.quantize(x, scale, zp)
    assert np.array_equal(got, tflite_quantize_model(x, scale, zp))
    if pow2:  # the ties really are ties, and go away from zero
        q = ties.astype(np.float64) / scale
        assert np.array_equal(q, k + 0.5)
        tie_ok = np.clip(np.sign(q) * np.ceil(np.abs(q)) + zp, -128, 127)
        assert np.array_equal(got[: ties.size], tie_ok.astype(np.int8))
    assert lib.quantize(f32([np.nan]), scale, zp)[0] == zp


@FEW
@given(scale_exp=st.floats(-12.0, 3.0), zp=st.integers(-128, 127))
def test_dequantize_is_bit_exact(lib: F32Lib, scale_exp: float, zp: int) -> None:
    scale = float(np.float32(2.0**scale_exp))
    q = np.arange(-128, 128, dtype=np.int8)
    ref = (np.float64(scale) * (q.astype(np.float64) - zp)).astype(np.float32)  # TFLite
    assert np.array_equal(lib.dequantize(q, scale, zp).view(np.uint32), ref.view(np.uint32))


@FEW
@given(ph=st.integers(1, 4), pw=st.integers(1, 4), eh=st.integers(0, 5), ew=st.integers(0, 5),
       c=st.integers(1, 4), scale_exp=st.floats(-10.0, 2.0), zp=st.integers(-128, 127),
       seed=SEEDS)
def test_dequantize_avg_pool_is_dequantize_then_avg_pool_bit_for_bit(
        lib: F32Lib, ph: int, pw: int, eh: int, ew: int, c: int, scale_exp: float, zp: int,
        seed: int) -> None:
    scale = float(np.float32(2.0**scale_exp * 1.37))
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, (1, ph * 2 + eh, pw * 3 + ew, c)).astype(np.int8)
    two_steps = lib.avg_pool(lib.dequantize(q, scale, zp).reshape(q.shape), ph, pw)
    fused = lib.dequantize_avg_pool(q, ph, pw, scale, zp)
    assert np.array_equal(fused.view(np.uint32), two_steps.view(np.uint32))


def test_quantize_bias_rounds_half_away_and_saturates(lib: F32Lib) -> None:
    from mcutl.quant.bias import quantize_bias

    rng = np.random.default_rng(4)
    scale = (rng.uniform(0.5, 2.0, 64) * 1e-4).astype(np.float32)
    q = rng.integers(-3_000_000, 3_000_000, 64)
    b = (scale * q.astype(np.float32)).astype(np.float32)  # a dequantised int32 bias
    assert np.array_equal(lib.quantize_bias(b, scale), q)  # round trip
    b2 = (b + scale * np.float32(0.5)).astype(np.float32)
    assert np.array_equal(lib.quantize_bias(b2, scale), quantize_bias(b2, scale))
    edge = np.array([1e30, -1e30, np.nan, 2.5, -2.5], np.float32)
    ones = np.ones(5, np.float32)
    assert lib.quantize_bias(edge, ones).tolist() == [2**31 - 1, -2**31, 0, 3, -3]
    assert np.array_equal(quantize_bias(edge, ones), lib.quantize_bias(edge, ones))


# --------------------------------------------------------------------------- argument checks


def test_invalid_arguments_are_rejected_without_writing(lib: F32Lib) -> None:
    x = np.ones((1, 4, 4, 3), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    out = np.full((1, 2, 2, 2), 7.0, np.float32)
    bad_groups = ConvGeom(groups=2)  # C_in = 3 is not 2 * weight C
    with pytest.raises(KernelError):
        lib.conv2d(bad_groups, x, w, None, (2, 2))
    L = lib.lib
    from tests._f32build import Dims, _pf32  # noqa: PLC0415 (test-only internals)

    st_ = L.mcutl_conv2d_f32(bad_groups.c(), Dims(1, 4, 4, 3), _pf32(x), Dims(2, 3, 3, 3),
                             _pf32(w), None, Dims(1, 2, 2, 2), _pf32(out))
    assert st_ == MCUTL_F32_ARG_ERROR and (out == 7.0).all()
    assert L.mcutl_group_norm_f32(Dims(1, 2, 2, 6), _pf32(x), 4, 1e-5, None, None,
                                  _pf32(out), None, None, None) == MCUTL_F32_ARG_ERROR
    assert L.mcutl_avg_pool_f32(Dims(1, 1, 4, 3), _pf32(x), 2, 2, _pf32(out)) == \
        MCUTL_F32_ARG_ERROR
    assert L.mcutl_act_mask_from_s8(None, 8, 0, 10, 1, None) == MCUTL_F32_ARG_ERROR
    assert L.mcutl_act_mask_from_s8(None, 0, 0, 10, 7, None) == MCUTL_F32_ARG_ERROR
    assert L.mcutl_adam_step_f32(None, 1, 0, None, None, None, None, 0) == MCUTL_F32_ARG_ERROR
    labels = np.array([3], np.int32)
    assert L.mcutl_softmax_xent_f32(_pf32(x), labels.ctypes.data_as(
        L.mcutl_softmax_xent_f32.argtypes[1]), 1, 3, 0.0, 1.0, None, None) == -1.0
    assert (out == 7.0).all()


# --------------------------------------------------------------------------- a Rep-Net step


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repnet_step_matches_autograd(lib: F32Lib, seed: int) -> None:
    """The kernels composed into one Rep-Net training step (two samples accumulated):

    frozen int8 conv + ReLU6 -> x1 ----------------(+)-> frozen conv s2 + ReLU ->
      input -> avgpool 2 -> conv 3x3 -> GN -> ReLU -> conv 1x1 -> GN -> upsample 2 -^
    -> frozen depthwise (1HWC) + ReLU6 -> GAP -> linear head -> cross-entropy (eps 0.1)

    All trainable gradients (accumulated over the two samples with grad_scale 1/2)
    match PyTorch autograd on the dequantised model.
    """
    rng = np.random.default_rng(seed)
    hw, cin, c1, cm, c2, ncls = 8, 3, 4, 8, 6, 5
    samples = [randn(rng, 1, hw, hw, cin) for _ in range(2)]
    labels = [int(rng.integers(0, ncls)) for _ in range(2)]

    def frozen(shape: tuple[int, ...]) -> tuple[np.ndarray, F32Array]:
        q = rng.integers(-127, 128, shape, dtype=np.int8)
        s = f32(rng.uniform(0.005, 0.03, shape[-1] if shape[0] == 1 else shape[0]))
        return q, s

    wq1, s1 = frozen((c1, 3, 3, cin))
    wq2, s2 = frozen((c2, 3, 3, c1))
    wqd, sd = frozen((1, 3, 3, c2))
    w1d = s1[:, None, None, None] * wq1.astype(np.float32)
    w2d = s2[:, None, None, None] * wq2.astype(np.float32)
    wdd = sd * wqd[0].astype(np.float32)  # [3, 3, c2]
    wdd_ohwi = np.ascontiguousarray(wdd.transpose(2, 0, 1)[:, :, :, None])
    # trainable
    wa = randn(rng, cm, 3, 3, cin, scale=0.3)
    ga, ba = f32(1.0 + 0.1 * rng.standard_normal(cm)), randn(rng, cm, scale=0.1)
    wb = randn(rng, c1, 1, 1, cm, scale=0.3)
    gb_, bb_ = randn(rng, c1, scale=0.5), randn(rng, c1, scale=0.1)
    wh, bh = randn(rng, ncls, c2, scale=0.5), randn(rng, ncls, scale=0.1)
    eps_gn, smooth = 1e-5, 0.1
    pad1 = ConvGeom(1, 1, 1, 1, 1, 1, 1)

    grads = {k: np.zeros_like(v) for k, v in
             dict(wa=wa, ga=ga, ba=ba, wb=wb, gb=gb_, bb=bb_, wh=wh, bh=bh).items()}
    total_loss = 0.0
    for x, y in zip(samples, labels, strict=True):
        # ---- forward (saving what backward needs)
        x1, m1 = lib.act("relu6", lib.conv2d(pad1, x, w1d, None, (hw, hw)))
        xp = lib.avg_pool(x, 2, 2)
        a = lib.conv2d(pad1, xp, wa, None, (4, 4))
        a, ahat, _, arstd = lib.group_norm(a, 2, eps_gn, ga, ba, inplace="xhat")
        a, am = lib.act("relu", a, inplace=True)
        bconv = lib.conv2d(ConvGeom(), a, wb, None, (4, 4))
        bnorm, bhat, _, brstd = lib.group_norm(bconv, 1, eps_gn, gb_, bb_)
        p = lib.upsample(bnorm, 2, 2)
        msum = lib.add(x1, p)
        g2 = ConvGeom(2, 2, 1, 1, 1, 1, 1)
        z2, m2 = lib.act("relu", lib.conv2d(g2, msum, w2d, None, (4, 4)))
        z3, m3 = lib.act("relu6", lib.conv2d(ConvGeom(1, 1, 1, 1, 1, 1, c2), z2, wdd_ohwi,
                                             None, (4, 4)))
        feat = lib.global_avg_pool(z3)
        logits = lib.linear(feat, wh, bh)
        loss, _, dlogits = lib.softmax_xent(logits, [y], smooth, 0.5)
        total_loss += 0.5 * loss
        # ---- backward
        grads["wh"] = lib.linear_grad_weight(feat, dlogits, init=grads["wh"])
        grads["bh"] = lib.linear_grad_bias(dlogits, init=grads["bh"])
        dfeat = lib.linear_grad_input(wh, dlogits)
        dz3 = lib.global_avg_pool_grad_input(z3.shape, dfeat)
        dz3 = lib.act_grad_input(dz3, m3, inplace=True)
        dz2 = lib.depthwise_conv2d_grad_input_s8w(ConvGeom(1, 1, 1, 1, 1, 1, c2), dz3, wqd, sd,
                                                  z2.shape)
        dz2 = lib.act_grad_input(dz2, m2, inplace=True)
        dm = lib.conv2d_grad_input_s8w(g2, dz2, wq2, s2, msum.shape)
        dbn = lib.upsample_grad_input(bnorm.shape, 2, 2, dm)  # dp = dm (add)
        dbc, grads["gb"], grads["bb"] = lib.group_norm_grad(
            bhat, brstd, gb_, dbn, 1, grad_gamma=grads["gb"], grad_beta=grads["bb"])
        grads["wb"] = lib.conv2d_grad_weight(ConvGeom(), a, dbc, wb.shape, init=grads["wb"])
        da = lib.conv2d_grad_input(ConvGeom(), dbc, wb, a.shape)
        da = lib.act_grad_input(da, am, inplace=True)
        da, grads["ga"], grads["ba"] = lib.group_norm_grad(
            ahat, arstd, ga, da, 2, grad_gamma=grads["ga"], grad_beta=grads["ba"], inplace=True)
        grads["wa"] = lib.conv2d_grad_weight(pad1, xp, da, wa.shape, init=grads["wa"])

    # ---- PyTorch reference (NCHW, float64, dequantised frozen weights)
    params = {k: t64(v, grad=True) for k, v in
              dict(wa=wa.transpose(0, 3, 1, 2), ga=ga, ba=ba, wb=wb.transpose(0, 3, 1, 2),
                   gb=gb_, bb=bb_, wh=wh, bh=bh).items()}
    xt = t64(np.concatenate([nchw(s) for s in samples]))
    P = params
    x1t = F.relu6(F.conv2d(xt, t64(w1d.transpose(0, 3, 1, 2)), padding=1))
    at = F.conv2d(F.avg_pool2d(xt, 2), P["wa"], padding=1)
    at = F.relu(F.group_norm(at, 2, P["ga"], P["ba"], eps_gn))
    bt = F.group_norm(F.conv2d(at, P["wb"]), 1, P["gb"], P["bb"], eps_gn)
    mt = x1t + F.interpolate(bt, scale_factor=2, mode="nearest")
    z2t = F.relu(F.conv2d(mt, t64(w2d.transpose(0, 3, 1, 2)), stride=2, padding=1))
    z3t = F.relu6(F.conv2d(z2t, t64(wdd_ohwi.transpose(0, 3, 1, 2)), padding=1, groups=c2))
    lt = F.linear(z3t.mean(dim=(2, 3)), P["wh"], P["bh"])
    loss_t = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=smooth)
    loss_t.backward()
    assert abs(total_loss - float(loss_t.detach())) <= 1e-5 * float(loss_t.detach())
    for k, t in params.items():
        assert t.grad is not None
        ref = t.grad.numpy()
        if ref.ndim == 4:
            ref = ref.transpose(0, 2, 3, 1)
        check(grads[k], ref, f"Rep-Net gradient of {k}")


# --------------------------------------------------------------------------- builds


def _undefined(nm: str, obj: Path) -> set[str]:
    out = subprocess.run([nm, "-u", str(obj)], check=True, capture_output=True, text=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


def test_host_objects_need_no_libm(tmp_path: Path) -> None:
    if not HAVE_GCC or shutil.which("nm") is None or shutil.which("objdump") is None:
        pytest.skip("gcc/binutils not installed")
    objs = compile_objects("gcc", HOST_CFLAGS, tmp_path / "strict", f32_sources())
    for obj in objs:
        extra = _undefined("nm", obj) - ALLOWED_UNDEFINED
        assert not extra, f"{obj.name} needs {sorted(extra)}"
    dis = subprocess.run(["objdump", "-d", str(tmp_path / "strict" / "mathf.o")], check=True,
                         capture_output=True, text=True).stdout
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sqrtss" in dis  # the IEEE square root instruction, no libm call
    # without -fno-math-errno the portable square root is used: still no libm
    lax = [f for f in HOST_CFLAGS if f != "-fno-math-errno"]
    for obj in compile_objects("gcc", lax, tmp_path / "lax", [F32_SRC / "mathf.c"]):
        assert not (_undefined("nm", obj) - ALLOWED_UNDEFINED)


def test_headers_can_be_included_together(tmp_path: Path) -> None:
    if not HAVE_GCC:
        pytest.skip("gcc not installed")
    src = tmp_path / "both.c"
    src.write_text('#include "mcutl/int8.h"\n#include "mcutl/f32.h"\n'
                   "int both(const mcutl_dims_t *a, const mcutl_f32_dims_t *b);\n"
                   "int both(const mcutl_dims_t *a, const mcutl_f32_dims_t *b)\n"
                   "{ return a->n == b->n ? MCUTL_F32_OK : MCUTL_F32_ARG_ERROR; }\n")
    subprocess.run(["gcc", *HOST_CFLAGS, f"-I{INCLUDE}", "-c", str(src), "-o",
                    str(tmp_path / "both.o")], check=True, capture_output=True, text=True)


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (make setup)")
def test_cross_compiles_for_cortex_m4_without_libm(tmp_path: Path) -> None:
    objs = compile_objects("arm-none-eabi-gcc", ARM_CFLAGS, tmp_path, f32_sources())
    nm = "arm-none-eabi-nm"
    for obj in objs:
        extra = _undefined(nm, obj) - ALLOWED_UNDEFINED
        assert not extra, f"{obj.name} needs {sorted(extra)} on Cortex-M4"
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / "mathf.o")],
                         check=True, capture_output=True, text=True).stdout
    assert "vsqrt.f32" in dis  # the IEEE square root instruction, no libm call


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_step_finite_guard_agrees_with_the_step(lib: F32Lib, opt: str) -> None:
    """The guard predicts exactly whether the step would leave a non-finite value, and
    writes nothing; the same arithmetic as the step (bit for bit where it is finite)."""
    rng = np.random.default_rng(5)
    cases = [(1e-2, randn(rng, 40)), (1e-2, np.full(40, np.nan, np.float32)),
             (1e30, randn(rng, 40, scale=1e10)), (1e38, randn(rng, 40, scale=10.0))]
    cases[1][1][:39] = 1.0  # one NaN gradient among finite ones
    seen = set()
    for lr, grad in cases:
        w = randn(rng, 40, scale=1e30)
        state = [randn(rng, 40), np.abs(randn(rng, 40))]
        before = [w.copy(), grad.copy(), *(a.copy() for a in state)]
        if opt == "sgd":
            st_ = lib.sgd_step_finite(lr, 0.9, 0.0, w, grad, state[0])
        else:
            st_ = lib.adam_step_finite(lr, 0.9, 0.999, 1e-8, 0.0, 3, w, grad, *state)
        after = [w, grad, *state]
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after,
                                                                          strict=True))
        if opt == "sgd":
            lib.sgd_step(lr, 0.9, 0.0, w, grad, state[0], zero_grad=False)
            values = [w, state[0]]
        else:
            lib.adam_step(lr, 0.9, 0.999, 1e-8, 0.0, 3, w, grad, *state, zero_grad=False)
            values = [w, *state]
        finite = all(np.isfinite(a).all() for a in values)
        assert st_ == (0 if finite else 1), (opt, lr)
        seen.add(st_)
    assert seen == {0, 1}  # both outcomes were exercised


def test_cosf_pi_is_accurate_over_its_range(lib: F32Lib) -> None:
    """The cosine schedule's cos: within 2e-7 of cos over [-pi, pi], -1 past pi."""
    xs = np.linspace(-np.pi, np.pi, 20001, dtype=np.float32)
    got = np.array([lib.lib.mcutl_cosf_pi(float(x)) for x in xs], np.float64)
    assert np.abs(got - np.cos(xs.astype(np.float64))).max() < 2e-7
    assert lib.lib.mcutl_cosf_pi(0.0) == 1.0 and lib.lib.mcutl_cosf_pi(4.0) == -1.0
    assert np.isnan(lib.lib.mcutl_cosf_pi(float("nan")))
