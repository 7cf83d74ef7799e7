"""Conversions between the user's (source) layout and the IR's channel-last layout.

All functions take batched arrays: NCHW ``(N, C, H, W)`` <-> ``(N, H, W, C)``;
NCL ``(N, C, L)`` <-> ``(N, 1, L, C)``; NC and NHWC are unchanged.
"""

from __future__ import annotations

import numpy as np


def to_ir_layout(x: np.ndarray, source_layout: str) -> np.ndarray:
    """A batch in the user's layout as IR (channel-last) arrays."""
    if source_layout == "NCHW" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if source_layout == "NCL" and x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None])
    return np.ascontiguousarray(x)


def from_ir_layout(y: np.ndarray, source_layout: str) -> np.ndarray:
    """An IR batch back in the user's layout (4-D only; feature vectors unchanged)."""
    if y.ndim != 4:
        return y
    if source_layout == "NCHW":
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    if source_layout == "NCL" and y.shape[1] == 1:
        return np.ascontiguousarray(y[:, 0].transpose(0, 2, 1))
    return y
