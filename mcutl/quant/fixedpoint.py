"""Numpy model of TFLite's int8 fixed-point requantisation ("double rounding").

This module is the specification the C kernels in ``runtime_c/src/int8`` are tested
against, and the place where the code generator computes the integer parameters
(multipliers, shifts, activation bounds) it writes into the C params structs
(``ConvParams`` ... mirror ``mcutl_conv_params_t`` ... field for field).

Conventions (identical to TFLite's ``QuantizeMultiplier``):

* A real multiplier ``M`` is represented as ``(multiplier, shift)`` with
  ``M ~= multiplier * 2**(shift - 31)``, ``multiplier`` in ``[2**30, 2**31 - 1]``
  (or 0 for ``M == 0``) and ``shift`` a signed exponent: ``shift > 0`` is a left
  shift applied *before* the fixed-point multiplication, ``shift <= 0`` a rounding
  right shift applied *after* it.
* ``multiply_by_quantized_multiplier`` is TFLite's ``MultiplyByQuantizedMultiplier``:
  ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m), right)``;
  both round to nearest; exact ties go *upward* (toward +inf) in the first step
  (gemmlowp's nudge ``1 - 2**30`` for negative products makes -0.5 round to 0) and
  away from zero in the second.

The float arithmetic that derives the real multipliers is reproduced with the exact
float32/float64 operations each runtime uses, since one ulp of difference in the
real multiplier changes the 31-bit integer multiplier, and that changes an output
now and then. Measured with scales chosen to separate the candidate rules
(tests/test_int8_kernels.py, "conventions" section):

* CONV_2D, DEPTHWISE_CONV_2D (per-tensor or per-channel), per-channel
  FULLY_CONNECTED: ``double(s_in) * double(s_w[c]) / double(s_out)`` in both runtimes;
* FULLY_CONNECTED with per-tensor weights: tflite-runtime multiplies the scales in
  float32, ``double(float(s_in * s_w)) / double(s_out)``; TFLM in double;
* standalone RELU/RELU6: tflite-runtime divides in float32, ``float(s_in / s_out)``;
  TFLM's RELU in double, and TFLM's RELU6 does not requantise at all (it clamps in
  the input's domain);
* ADD: double in both (``add_params``);
* activation bounds: ``zp + round(float32(f / s))`` in both.

Functions where the runtimes differ take ``convention="tflite"`` (default) or
``"tflm"``; the C kernels take the resulting integers and are correct for both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT8_MIN = -128
INT8_MAX = 127

#: TFLite's ADD/SUB int8 kernels pre-shift both inputs left by this many bits.
ADD_LEFT_SHIFT_INT8 = 20

Activation = Literal["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]
Convention = Literal["tflite", "tflm"]

IntArray = npt.NDArray[np.int64]
ArrayLikeInt = npt.ArrayLike


def _round_half_away(x: float) -> int:
    """``std::round`` on a double: nearest integer, ties away from zero (exact)."""
    if x >= 0.0:
        fl = math.floor(x)
        return int(fl) + (1 if x - fl >= 0.5 else 0)
    return -_round_half_away(-x)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier(double, int32_t*, int*)`` (double-rounding build).

    Returns ``(multiplier, shift)`` with ``real ~= multiplier * 2**(shift - 31)``.
    ``frexp`` gives ``real = q * 2**shift`` with ``|q|`` in [0.5, 1); ``q`` is rounded
    to Q31 with ties away from zero; if that rounds up to ``2**31`` the multiplier is
    halved and ``shift`` incremented; if ``shift < -31`` the multiplier underflows to
    ``(0, 0)``. ``real == 0`` gives ``(0, 0)``.
    """
    real = float(real)
    if not math.isfinite(real):
        raise ValueError(f"multiplier must be finite, got {real!r}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * float(1 << 31))
    if abs(q_fixed) > (1 << 31):
        raise AssertionError("unreachable: |q| < 1")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if q_fixed > INT32_MAX:  # pragma: no cover - guarded above
        raise AssertionError("multiplier overflow")
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def quantize_multiplier_smaller_than_one_exp(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplierSmallerThanOneExp``: requires ``0 < real < 1``;
    returns ``(multiplier, shift)`` with ``shift <= 0``."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier must be in (0, 1), got {real!r}")
    m, shift = quantize_multiplier(real)
    if shift > 0:  # pragma: no cover - impossible for real < 1
        raise AssertionError("shift must be <= 0")
    return m, shift


def dequantize_multiplier(multiplier: int, shift: int) -> float:
    """The real number ``multiplier * 2**(shift - 31)`` a pair represents."""
    return math.ldexp(float(multiplier), shift - 31)


# --------------------------------------------------------------------------- integer ops


def _as_i64(x: ArrayLikeInt) -> IntArray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x: ArrayLikeInt) -> IntArray:
    """Two's-complement wrap of int64 values into the int32 range (what an int32
    overflow does on every target we support)."""
    v = _as_i64(x)
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: ArrayLikeInt, b: ArrayLikeInt) -> IntArray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values (vectorised).

    ``a * b / 2**31`` rounded to nearest with exact ties rounded upward (+0.5 -> 1,
    -0.5 -> 0: the product is nudged by ``2**30`` or ``1 - 2**30`` and the division
    truncates toward zero), saturating the single overflow case ``a == b == INT32_MIN``.
    """
    a64 = _as_i64(a)
    b64 = _as_i64(b)
    ab = a64 * b64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C++ integer division truncates toward zero.
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), q)


def rounding_divide_by_pot(x: ArrayLikeInt, exponent: ArrayLikeInt) -> IntArray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded to nearest, ties
    away from zero, for int32 ``x`` and ``0 <= exponent <= 31``."""
    x64 = _as_i64(x)
    e = _as_i64(exponent)
    if np.any((e < 0) | (e > 31)):
        raise ValueError("exponent must be in [0, 31]")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return (x64 >> e) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(
    x: ArrayLikeInt, multiplier: ArrayLikeInt, shift: ArrayLikeInt
) -> IntArray:
    """TFLite's ``MultiplyByQuantizedMultiplier(int32 x, int32 m, int shift)``, vectorised
    with numpy broadcasting (e.g. ``x`` of shape [..., C] with per-channel ``multiplier``
    and ``shift`` of shape [C]).

    ``x * 2**max(shift, 0)`` is computed with int32 wrap-around (as the C++ and C code
    do), then ``SaturatingRoundingDoublingHighMul``, then ``RoundingDivideByPOT`` by
    ``max(-shift, 0)``. Returns int64 arrays holding int32 values.
    """
    sh = _as_i64(shift)
    left = np.maximum(sh, 0)
    right = np.maximum(-sh, 0)
    shifted = wrap_int32(_as_i64(x) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


# --------------------------------------------------------------------------- parameters


def activation_range(
    activation: Activation | str, output_scale: float, output_zero_point: int
) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized`` for int8 outputs (fused
    activations of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, pools).

    ``quantize(f) = zp + round(f / scale)`` with float32 division and ``std::round``.
    """
    act = str(activation).upper()
    s = _f32(output_scale)
    zp = int(output_zero_point)

    def quantize(f: float) -> int:
        return zp + _round_half_away(float(_f32(f) / s))

    if act == "NONE":
        return INT8_MIN, INT8_MAX
    if act == "RELU":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if act == "RELU6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if act == "RELU_N1_TO_1":
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    raise ValueError(f"unsupported fused activation {activation!r}")


def conv_output_multipliers(
    input_scale: float,
    weight_scales: float | Sequence[float] | npt.ArrayLike,
    output_scale: float,
    num_channels: int | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Per-channel ``(multiplier[C], shift[C])`` for CONV_2D / DEPTHWISE_CONV_2D (per-tensor
    or per-channel) and per-channel FULLY_CONNECTED, as TFLite's
    ``PopulateConvolutionQuantizationParams`` computes them from the float32 scales:
    ``double(in_scale) * double(w_scale[c]) / double(out_scale)``, then
    ``QuantizeMultiplier``. A single weight scale (per-tensor) is broadcast to
    ``num_channels`` entries (default 1).
    """
    ws = np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))
    if ws.ndim != 1:
        raise ValueError("weight_scales must be a scalar or 1-D")
    if num_channels is not None and ws.size == 1:
        ws = np.repeat(ws, num_channels)
    if num_channels is not None and ws.size != num_channels:
        raise ValueError(f"{ws.size} weight scales for {num_channels} channels")
    s_in = float(_f32(input_scale))
    s_out = float(_f32(output_scale))
    mult = np.empty(ws.size, dtype=np.int32)
    shift = np.empty(ws.size, dtype=np.int32)
    for i, w in enumerate(ws):
        real = s_in * float(w) / s_out
        mult[i], shift[i] = quantize_multiplier(real)
    return mult, shift


def bias_scale(input_scale: float, weight_scales: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The (float32) scale of the int32 bias: ``input_scale * weight_scale[c]``."""
    return (_f32(input_scale) * np.asarray(weight_scales, dtype=np.float32)).astype(np.float32)


@dataclass(frozen=True)
class AddParams:
    """Integer parameters of TFLite's int8 ADD (mirrors ``mcutl_add_params_t``)."""

    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_params(
    input1_scale: float, input1_zero_point: int,
    input2_scale: float, input2_zero_point: int,
    output_scale: float, output_zero_point: int,
    activation: Activation | str = "NONE",
) -> AddParams:
    """TFLite's int8 ADD ``Prepare``: with ``twice_max = 2 * max(s1, s2)`` (float32),
    input multipliers ``s_i / twice_max`` (<= 0.5) and output multiplier
    ``twice_max / (2**20 * s_out)``, each through ``QuantizeMultiplierSmallerThanOneExp``.

    Raises ``ValueError`` when the output multiplier is not < 1 (TFLite aborts on such
    a model: the output scale must exceed ``2 * max(s1, s2) / 2**20``).
    """
    s1 = _f32(input1_scale)
    s2 = _f32(input2_scale)
    so = _f32(output_scale)
    twice_max = float(np.float32(2.0) * max(s1, s2))
    real1 = float(s1) / twice_max
    real2 = float(s2) / twice_max
    real_out = twice_max / float(np.float32(float(1 << ADD_LEFT_SHIFT_INT8)) * so)
    if not real_out < 1.0:
        raise ValueError(
            f"ADD output multiplier {real_out} >= 1: output scale {float(so)} too small "
            f"for input scales {float(s1)}, {float(s2)}"
        )
    m1, sh1 = quantize_multiplier_smaller_than_one_exp(real1)
    m2, sh2 = quantize_multiplier_smaller_than_one_exp(real2)
    mo, sho = quantize_multiplier_smaller_than_one_exp(real_out)
    lo, hi = activation_range(activation, float(so), output_zero_point)
    return AddParams(
        input1_zero_point=int(input1_zero_point), input2_zero_point=int(input2_zero_point),
        output_zero_point=int(output_zero_point), left_shift=ADD_LEFT_SHIFT_INT8,
        input1_multiplier=m1, input1_shift=sh1, input2_multiplier=m2, input2_shift=sh2,
        output_multiplier=mo, output_shift=sho, act_min=lo, act_max=hi,
    )


@dataclass(frozen=True)
class ReluParams:
    """Integer parameters of a standalone int8 RELU/RELU6 (mirrors ``mcutl_relu_params_t``)."""

    input_zero_point: int
    output_zero_point: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def relu_params(
    kind: Literal["RELU", "RELU6", "RELU_N1_TO_1"] | str,
    input_scale: float, input_zero_point: int,
    output_scale: float, output_zero_point: int,
    convention: Convention = "tflite",
) -> ReluParams:
    """Parameters of standalone int8 RELU / RELU6 / RELU_N1_TO_1 (they requantise).

    ``convention="tflite"`` (tflite-runtime): multiplier from the float32 quotient
    ``float(s_in) / float(s_out)``; bounds ``zp_out + roundf(lo / s_out)``,
    ``zp_out + roundf(hi / s_out)`` clamped to int8.

    ``convention="tflm"`` (TFLite Micro): RELU's multiplier comes from the *double*
    quotient (can differ from tflite-runtime's in the low bits when the scales differ).
    TFLM's RELU6 does not requantise at all: it clamps in the input's domain to
    ``[zp_in, zp_in + round(6 / s_in)]`` and ignores the output's quantisation, so the
    returned parameters are the identity multiplier and those bounds. (Both coincide
    with the tflite convention when input and output quantisation are equal.)
    TFLM has no RELU_N1_TO_1 kernel.
    """
    k = kind.upper()
    bounds = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    if k not in bounds:
        raise ValueError(f"unsupported relu kind {kind!r}")
    lo_f, hi_f = bounds[k]
    if convention == "tflm" and k == "RELU6":
        s_in = _f32(input_scale)
        zp = int(input_zero_point)
        six = min(INT8_MAX, max(INT8_MIN, zp + _round_half_away(float(_f32(6.0) / s_in))))
        m, sh = quantize_multiplier(1.0)
        return ReluParams(zp, zp, m, sh, zp, six)
    if convention == "tflm":
        real = float(_f32(input_scale)) / float(_f32(output_scale))
    elif convention == "tflite":
        real = float(_f32(input_scale) / _f32(output_scale))
    else:
        raise ValueError(f"unknown convention {convention!r}")
    m, sh = quantize_multiplier(real)
    s_out = _f32(output_scale)
    zp_out = int(output_zero_point)
    act_min = max(INT8_MIN, zp_out + _round_half_away(float(_f32(lo_f) / s_out)))
    act_max = (
        INT8_MAX
        if math.isinf(hi_f)
        else min(INT8_MAX, zp_out + _round_half_away(float(_f32(hi_f) / s_out)))
    )
    return ReluParams(int(input_zero_point), zp_out, m, sh, act_min, act_max)


def quantize(x: npt.ArrayLike, scale: float, zero_point: int) -> npt.NDArray[np.int8]:
    """Float -> int8 affine quantisation (round half away from zero, saturate); a
    convenience for tests and examples (not part of any kernel's semantics)."""
    v = np.asarray(x, dtype=np.float64) / float(_f32(scale))
    r = np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5)) + int(zero_point)
    return np.clip(r, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q: npt.ArrayLike, scale: float, zero_point: int) -> npt.NDArray[np.float32]:
    """int8 -> float: ``scale * (q - zero_point)``."""
    return (np.float32(scale) * (np.asarray(q, dtype=np.int32) - int(zero_point))).astype(
        np.float32
    )


# --------------------------------------------------------------------------- params structs
# Each dataclass mirrors one C params struct of runtime_c/include/mcutl/int8.h
# field for field; the factories compute them from float quantisation parameters.


def _i32_array(x: npt.ArrayLike) -> npt.NDArray[np.int32]:
    return np.ascontiguousarray(np.asarray(x, dtype=np.int32).reshape(-1))


@dataclass(frozen=True, eq=False)
class ConvParams:
    """``mcutl_conv_params_t`` (CONV_2D, standard or grouped)."""

    input_zero_point: int
    output_zero_point: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    groups: int
    act_min: int
    act_max: int
    output_multiplier: npt.NDArray[np.int32]
    output_shift: npt.NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class DepthwiseConvParams:
    """``mcutl_dw_conv_params_t`` (DEPTHWISE_CONV_2D)."""

    input_zero_point: int
    output_zero_point: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    depth_multiplier: int
    act_min: int
    act_max: int
    output_multiplier: npt.NDArray[np.int32]
    output_shift: npt.NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class FullyConnectedParams:
    """``mcutl_fc_params_t`` (FULLY_CONNECTED); arrays have ``out_features`` entries."""

    input_zero_point: int
    output_zero_point: int
    act_min: int
    act_max: int
    output_multiplier: npt.NDArray[np.int32]
    output_shift: npt.NDArray[np.int32]


@dataclass(frozen=True)
class PoolParams:
    """``mcutl_pool_params_t`` (AVERAGE_POOL_2D / MAX_POOL_2D)."""

    filter_h: int
    filter_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    act_min: int
    act_max: int


def conv_params(
    input_scale: float, input_zero_point: int,
    weight_scales: float | Sequence[float] | npt.ArrayLike,
    output_scale: float, output_zero_point: int,
    out_channels: int,
    *,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pad: tuple[int, int] = (0, 0),
    groups: int = 1,
    activation: Activation | str = "NONE",
) -> ConvParams:
    """Parameters of ``mcutl_conv2d_s8`` for a CONV_2D with the given quantisation.
    ``pad`` is ``(pad_top, pad_left)`` (see ``mcutl.tflite.builder.compute_padding``)."""
    m, s = conv_output_multipliers(input_scale, weight_scales, output_scale, out_channels)
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return ConvParams(
        int(input_zero_point), int(output_zero_point), int(stride[0]), int(stride[1]),
        int(dilation[0]), int(dilation[1]), int(pad[0]), int(pad[1]), int(groups), lo, hi,
        _i32_array(m), _i32_array(s),
    )


def depthwise_conv_params(
    input_scale: float, input_zero_point: int,
    weight_scales: float | Sequence[float] | npt.ArrayLike,
    output_scale: float, output_zero_point: int,
    out_channels: int,
    *,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    pad: tuple[int, int] = (0, 0),
    depth_multiplier: int = 1,
    activation: Activation | str = "NONE",
) -> DepthwiseConvParams:
    """Parameters of ``mcutl_depthwise_conv2d_s8`` (``out_channels = C_in * depth_multiplier``)."""
    m, s = conv_output_multipliers(input_scale, weight_scales, output_scale, out_channels)
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return DepthwiseConvParams(
        int(input_zero_point), int(output_zero_point), int(stride[0]), int(stride[1]),
        int(dilation[0]), int(dilation[1]), int(pad[0]), int(pad[1]), int(depth_multiplier),
        lo, hi, _i32_array(m), _i32_array(s),
    )


def fully_connected_params(
    input_scale: float, input_zero_point: int,
    weight_scales: float | Sequence[float] | npt.ArrayLike,
    output_scale: float, output_zero_point: int,
    out_features: int,
    *,
    activation: Activation | str = "NONE",
    convention: Convention = "tflite",
) -> FullyConnectedParams:
    """Parameters of ``mcutl_fully_connected_s8``.

    Per-channel weights (more than one scale) use the per-channel rule of
    ``conv_output_multipliers`` in both runtimes. A single weight scale takes
    TFLite's per-tensor path, where the runtimes differ:
    ``convention="tflite"`` (tflite-runtime 2.14, ``GetQuantizedConvolutionMultipler``)
    multiplies the two scales in *float32*: ``double(float(s_in * s_w)) / double(s_out)``;
    ``convention="tflm"`` multiplies them in double. The result is repeated
    ``out_features`` times.
    """
    ws = np.atleast_1d(np.asarray(weight_scales, dtype=np.float32))
    if ws.size == 1:
        if convention == "tflite":
            real = float(_f32(input_scale) * ws[0]) / float(_f32(output_scale))
        elif convention == "tflm":
            real = float(_f32(input_scale)) * float(ws[0]) / float(_f32(output_scale))
        else:
            raise ValueError(f"unknown convention {convention!r}")
        m0, s0 = quantize_multiplier(real)
        m = np.full(out_features, m0, dtype=np.int32)
        s = np.full(out_features, s0, dtype=np.int32)
    else:
        m, s = conv_output_multipliers(input_scale, ws, output_scale, out_features)
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return FullyConnectedParams(
        int(input_zero_point), int(output_zero_point), lo, hi, _i32_array(m), _i32_array(s)
    )


def pool_params(
    filter_hw: tuple[int, int],
    *,
    stride: tuple[int, int] = (1, 1),
    pad: tuple[int, int] = (0, 0),
    activation: Activation | str = "NONE",
    output_scale: float = 1.0,
    output_zero_point: int = 0,
) -> PoolParams:
    """Parameters of ``mcutl_avg_pool_s8`` / ``mcutl_max_pool_s8``; the output
    quantisation only matters for a fused activation."""
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return PoolParams(
        int(filter_hw[0]), int(filter_hw[1]), int(stride[0]), int(stride[1]),
        int(pad[0]), int(pad[1]), lo, hi,
    )
