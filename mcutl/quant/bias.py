"""A trained float bias back into an int8 kernel's int32 bias: the host twin of the C
kernel mcutl_quantize_bias_f32_s32 (bit for bit)."""

from __future__ import annotations

import numpy as np


def quantize_bias(b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``round_half_away(float32(b / scale))`` saturated to int32; NaN or a scale that is
    not > 0 gives 0."""
    bf = np.asarray(b, np.float32)
    sf = np.asarray(scale, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (bf / sf).astype(np.float32).astype(np.float64)
    r = np.sign(q) * np.floor(np.abs(q) + 0.5)
    r = np.where(q >= 2147483520.0, 2**31 - 1, r)  # as the C kernel: from the largest
    r = np.where(q <= -2147483520.0, -(2**31), r)  # float below 2^31 on, saturated
    r = np.where(np.isnan(q) | ~(sf > 0), 0.0, r)
    return r.astype(np.int64).astype(np.int32)
