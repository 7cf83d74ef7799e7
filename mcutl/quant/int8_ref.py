"""Numpy reference implementations of mcutl's int8 kernels.

These define the operators' reference semantics: each function takes the same
parameters as the C function of the same name in ``runtime_c/include/mcutl/int8.h``
(as the dataclasses of :mod:`mcutl.quant.fixedpoint`) and int8 NHWC arrays, and is
bit-exact with TFLite's reference kernels and with the C kernels (checked by
tests/test_int8_kernels.py). They are vectorised over the output (loops only over
kernel taps) and meant for verification, not speed.

int32 accumulators wrap around like the C/C++ int32 arithmetic they model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from mcutl.quant.fixedpoint import (
    INT8_MAX,
    INT8_MIN,
    AddParams,
    ConvParams,
    DepthwiseConvParams,
    FullyConnectedParams,
    PoolParams,
    ReluParams,
    multiply_by_quantized_multiplier,
    wrap_int32,
)

Int8Array = npt.NDArray[np.int8]
Int64Array = npt.NDArray[np.int64]

__all__ = [
    "add_s8",
    "avg_pool_s8",
    "concatenation_s8",
    "conv2d_s8",
    "depthwise_conv2d_s8",
    "fully_connected_s8",
    "global_avg_pool_s8",
    "max_pool_s8",
    "pad_s8",
    "relu_s8",
]


def _check_int8(name: str, a: npt.ArrayLike, ndim: int | None = None) -> Int8Array:
    arr = np.asarray(a)
    if arr.dtype != np.int8:
        raise TypeError(f"{name} must be int8, got {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


def _requant_clamp(
    acc: Int64Array, multiplier: npt.ArrayLike, shift: npt.ArrayLike, zp: int, lo: int, hi: int
) -> Int8Array:
    v = multiply_by_quantized_multiplier(wrap_int32(acc), multiplier, shift) + int(zp)
    return np.clip(v, lo, hi).astype(np.int8)


def _windows(
    x: Int64Array, out_hw: tuple[int, int], k_hw: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int], pad: tuple[int, int], fill: int,
) -> tuple[Int64Array, int, int]:
    """Pad ``x`` [N, H, W, C] with ``fill`` so that every tap of every window is
    inside; return the padded array and the (top, left) offset of input (0, 0)."""
    n, h, w, c = x.shape
    ho, wo = out_hw
    kh, kw = k_hw
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pad
    need_h = (ho - 1) * sh + (kh - 1) * dh + 1  # rows spanned, from -pt
    need_w = (wo - 1) * sw + (kw - 1) * dw + 1
    pb = max(0, need_h - pt - h)
    pr = max(0, need_w - pl - w)
    # Windows may also start below -pt only if pt < 0, which the API forbids.
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    return xp, pt, pl


def _tap(
    xp: Int64Array, ky: int, kx: int, out_hw: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Int64Array:
    ho, wo = out_hw
    sh, sw = stride
    dh, dw = dilation
    y0 = ky * dh
    x0 = kx * dw
    return xp[:, y0 : y0 + (ho - 1) * sh + 1 : sh, x0 : x0 + (wo - 1) * sw + 1 : sw, :]


def conv2d_s8(
    params: ConvParams,
    input: npt.ArrayLike,
    filter: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    output_hw: tuple[int, int],
) -> Int8Array:
    """``mcutl_conv2d_s8``: input [N, H, W, C_in], filter [C_out, KH, KW, C_in/groups],
    bias int32 [C_out] or None -> output [N, H_out, W_out, C_out]."""
    x = _check_int8("input", input, 4)
    f = _check_int8("filter", filter, 4)
    g = int(params.groups)
    n, _, _, c_in = x.shape
    c_out, kh, kw, cg = f.shape
    if g < 1 or cg * g != c_in or c_out % g:
        raise ValueError(f"groups={g} incompatible with input C={c_in}, filter {f.shape}")
    stride = (params.stride_h, params.stride_w)
    dil = (params.dilation_h, params.dilation_w)
    xs = x.astype(np.int64) - int(params.input_zero_point)
    xp, _, _ = _windows(xs, output_hw, (kh, kw), stride, dil,
                        (params.pad_top, params.pad_left), 0)
    ho, wo = output_hw
    fg = f.astype(np.int64).reshape(g, c_out // g, kh, kw, cg)
    acc = np.zeros((n, ho, wo, g, c_out // g), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            t = _tap(xp, ky, kx, output_hw, stride, dil).reshape(n, ho, wo, g, cg)
            acc += np.einsum("nhwgc,gkc->nhwgk", t, fg[:, :, ky, kx, :])
    acc = acc.reshape(n, ho, wo, c_out)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64).reshape(c_out)
    return _requant_clamp(acc, params.output_multiplier, params.output_shift,
                          params.output_zero_point, params.act_min, params.act_max)


def depthwise_conv2d_s8(
    params: DepthwiseConvParams,
    input: npt.ArrayLike,
    filter: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    output_hw: tuple[int, int],
) -> Int8Array:
    """``mcutl_depthwise_conv2d_s8``: input [N, H, W, C_in], filter [1, KH, KW,
    C_in * depth_multiplier], bias int32 [C_out] or None -> [N, H_out, W_out, C_out]."""
    x = _check_int8("input", input, 4)
    f = _check_int8("filter", filter, 4)
    dm = int(params.depth_multiplier)
    n, _, _, c_in = x.shape
    _, kh, kw, c_out = f.shape
    if f.shape[0] != 1 or c_out != c_in * dm:
        raise ValueError(f"filter {f.shape} incompatible with C_in={c_in}, multiplier {dm}")
    stride = (params.stride_h, params.stride_w)
    dil = (params.dilation_h, params.dilation_w)
    xs = x.astype(np.int64) - int(params.input_zero_point)
    xs = np.repeat(xs, dm, axis=3)  # output channel oc reads input channel oc // dm
    xp, _, _ = _windows(xs, output_hw, (kh, kw), stride, dil,
                        (params.pad_top, params.pad_left), 0)
    ho, wo = output_hw
    f64 = f.astype(np.int64)
    acc = np.zeros((n, ho, wo, c_out), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            acc += _tap(xp, ky, kx, output_hw, stride, dil) * f64[0, ky, kx, :]
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64).reshape(c_out)
    return _requant_clamp(acc, params.output_multiplier, params.output_shift,
                          params.output_zero_point, params.act_min, params.act_max)


def fully_connected_s8(
    params: FullyConnectedParams,
    input: npt.ArrayLike,
    filter: npt.ArrayLike,
    bias: npt.ArrayLike | None,
) -> Int8Array:
    """``mcutl_fully_connected_s8``: input [batches, in_features] (any shape whose
    size is a multiple of ``in_features`` is flattened into rows, as TFLite does),
    filter [out_features, in_features] -> [batches, out_features]."""
    x = _check_int8("input", input)
    f = _check_int8("filter", filter, 2)
    out_f, in_f = f.shape
    if x.size % in_f:
        raise ValueError(f"input size {x.size} not a multiple of in_features {in_f}")
    xs = x.reshape(-1, in_f).astype(np.int64) - int(params.input_zero_point)
    acc = xs @ f.astype(np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64).reshape(out_f)
    mult = np.broadcast_to(np.asarray(params.output_multiplier), (out_f,))
    shift = np.broadcast_to(np.asarray(params.output_shift), (out_f,))
    return _requant_clamp(acc, mult, shift, params.output_zero_point,
                          params.act_min, params.act_max)


def add_s8(params: AddParams, input1: npt.ArrayLike, input2: npt.ArrayLike) -> Int8Array:
    """``mcutl_add_s8``: element-wise, both inputs of the same shape."""
    a = _check_int8("input1", input1)
    b = _check_int8("input2", input2)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape} (no broadcasting)")
    ls = int(params.left_shift)
    sa = wrap_int32((a.astype(np.int64) - params.input1_zero_point) << ls)
    sb = wrap_int32((b.astype(np.int64) - params.input2_zero_point) << ls)
    ra = multiply_by_quantized_multiplier(sa, params.input1_multiplier, params.input1_shift)
    rb = multiply_by_quantized_multiplier(sb, params.input2_multiplier, params.input2_shift)
    v = multiply_by_quantized_multiplier(
        wrap_int32(ra + rb), params.output_multiplier, params.output_shift
    ) + params.output_zero_point
    return np.clip(v, params.act_min, params.act_max).astype(np.int8)


def _check_pool(params: PoolParams, x: Int8Array, output_hw: tuple[int, int]) -> None:
    h, w = x.shape[1:3]
    ho, wo = output_hw
    if not (0 <= params.pad_top < params.filter_h and 0 <= params.pad_left < params.filter_w):
        raise ValueError("padding must be smaller than the filter (else empty windows)")
    if (ho - 1) * params.stride_h - params.pad_top >= h or (
        wo - 1
    ) * params.stride_w - params.pad_left >= w:
        raise ValueError("last window starts past the input")


def avg_pool_s8(params: PoolParams, input: npt.ArrayLike,
                output_hw: tuple[int, int]) -> Int8Array:
    """``mcutl_avg_pool_s8``: mean of the valid (non-padding) window elements,
    rounded half away from zero; input/output share quantisation."""
    x = _check_int8("input", input, 4)
    _check_pool(params, x, output_hw)
    k = (params.filter_h, params.filter_w)
    stride = (params.stride_h, params.stride_w)
    pad = (params.pad_top, params.pad_left)
    xp, _, _ = _windows(x.astype(np.int64), output_hw, k, stride, (1, 1), pad, 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    mp, _, _ = _windows(ones, output_hw, k, stride, (1, 1), pad, 0)
    n, c = x.shape[0], x.shape[3]
    acc = np.zeros((n,) + tuple(output_hw) + (c,), dtype=np.int64)
    cnt = np.zeros((1,) + tuple(output_hw) + (1,), dtype=np.int64)
    for ky in range(k[0]):
        for kx in range(k[1]):
            acc += _tap(xp, ky, kx, output_hw, stride, (1, 1))
            cnt += _tap(mp, ky, kx, output_hw, stride, (1, 1))
    half = cnt // 2
    avg = np.where(acc > 0, (acc + half) // cnt, -((-acc + half) // cnt))
    return np.clip(avg, params.act_min, params.act_max).astype(np.int8)


def global_avg_pool_s8(input: npt.ArrayLike, act_min: int = INT8_MIN,
                       act_max: int = INT8_MAX) -> Int8Array:
    """``mcutl_global_avg_pool_s8``: [N, H, W, C] -> [N, C]."""
    x = _check_int8("input", input, 4)
    p = PoolParams(x.shape[1], x.shape[2], 1, 1, 0, 0, int(act_min), int(act_max))
    return avg_pool_s8(p, x, (1, 1)).reshape(x.shape[0], x.shape[3])


def max_pool_s8(params: PoolParams, input: npt.ArrayLike,
                output_hw: tuple[int, int]) -> Int8Array:
    """``mcutl_max_pool_s8``: maximum of the valid window elements."""
    x = _check_int8("input", input, 4)
    _check_pool(params, x, output_hw)
    k = (params.filter_h, params.filter_w)
    stride = (params.stride_h, params.stride_w)
    pad = (params.pad_top, params.pad_left)
    xp, _, _ = _windows(x.astype(np.int64), output_hw, k, stride, (1, 1), pad, INT8_MIN)
    out = np.full((x.shape[0],) + tuple(output_hw) + (x.shape[3],), INT8_MIN, dtype=np.int64)
    for ky in range(k[0]):
        for kx in range(k[1]):
            out = np.maximum(out, _tap(xp, ky, kx, output_hw, stride, (1, 1)))
    return np.clip(out, params.act_min, params.act_max).astype(np.int8)


def relu_s8(params: ReluParams, input: npt.ArrayLike) -> Int8Array:
    """``mcutl_relu_s8``: requantise then clamp (standalone RELU/RELU6/RELU_N1_TO_1)."""
    x = _check_int8("input", input)
    v = multiply_by_quantized_multiplier(
        x.astype(np.int64) - params.input_zero_point, params.output_multiplier,
        params.output_shift,
    ) + params.output_zero_point
    return np.clip(v, params.act_min, params.act_max).astype(np.int8)


def concatenation_s8(inputs: Sequence[npt.ArrayLike], axis: int = -1) -> Int8Array:
    """``mcutl_concatenation_s8``: plain concatenation (inputs share the output's
    quantisation in TFLite's int8 kernel)."""
    arrs = [_check_int8(f"inputs[{i}]", a) for i, a in enumerate(inputs)]
    return np.concatenate(arrs, axis=axis)


def pad_s8(input: npt.ArrayLike, pad_top: int, pad_bottom: int, pad_left: int,
           pad_right: int, pad_value: int) -> Int8Array:
    """``mcutl_pad_s8``: constant padding of H and W of an NHWC tensor."""
    x = _check_int8("input", input, 4)
    return np.pad(x, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0)),
                  constant_values=np.int8(pad_value))
