"""TFLite int8 quantisation arithmetic: activation params, per-channel weights, int32 bias.

Rounding follows TFLite's converter (``TfLiteRound`` = round half away from zero)
and its float32 arithmetic: weights are ``round(w * (127 / max|w|))`` per output
channel, clamped to [-127, 127]; biases ``round(b * (1 / (s_in * s_w[c])))``.
"""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import QuantParams

INT8_MIN, INT8_MAX = -128, 127
INT32_MAX = 2**31 - 1


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (C's ``round``), keeping the dtype."""
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def activation_params(lo: float, hi: float) -> QuantParams:
    """Per-tensor asymmetric int8 params for the real range [lo, hi] (widened to hold 0).

    ``scale = (max - min) / 255``; ``zero_point = round(-128 - min / scale)`` clamped
    to [-128, 127]. An empty range (all zeros) gets scale 1, zero point 0.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0.0:
        return QuantParams(np.ones(1, np.float32), np.zeros(1, np.int32))
    scale = (hi - lo) / (INT8_MAX - INT8_MIN)
    zp = round_half_away(np.array([INT8_MIN - lo / scale]))
    zp = np.clip(zp, INT8_MIN, INT8_MAX).astype(np.int32)
    return QuantParams(np.array([scale], np.float32), zp)


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, QuantParams]:
    """Symmetric per-output-channel (axis 0) int8 weights: scale = max|w| / 127, zp 0.

    An all-zero channel gets scale 1 (its weights stay 0).
    """
    w = np.asarray(w, np.float32)
    half_range = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float32)
    zero = half_range == 0
    scale = np.where(zero, np.float32(1.0), half_range / np.float32(INT8_MAX))
    inv = np.where(zero, np.float32(0.0),
                   np.float32(INT8_MAX) / np.where(zero, np.float32(1.0), half_range))
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = round_half_away(w * inv.astype(np.float32).reshape(shape))
    q = np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, QuantParams(scale.astype(np.float32), np.zeros(w.shape[0], np.int32), axis=0)


def quantize_bias(b: np.ndarray, input_scale: float, weight_scale: np.ndarray
                  ) -> tuple[np.ndarray, QuantParams]:
    """int32 bias with scale ``input_scale * weight_scale[c]``, zero point 0, axis 0."""
    scale = (np.float32(input_scale) * np.asarray(weight_scale, np.float32)).astype(np.float32)
    inv = np.where(scale == 0, 0.0, 1.0 / scale.astype(np.float64)).astype(np.float32)
    q = round_half_away(np.asarray(b, np.float32) * inv).astype(np.float64)
    q = np.clip(q, -INT32_MAX, INT32_MAX).astype(np.int32)
    return q, QuantParams(scale, np.zeros(scale.shape[0], np.int32), axis=0)
