"""Shared arithmetic of windowed ops (conv, pools): output size, padding, windows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def out_size(size: int, k: int, stride: int, before: int, after: int) -> int:
    """Output length of a window ``k`` sliding with ``stride`` over a padded axis."""
    return (size + before + after - k) // stride + 1


def trim_after(size: int, k: int, stride: int, before: int, after: int) -> int:
    """The part of ``after`` padding that some window actually reads."""
    n = out_size(size, k, stride, before, after)
    return max(0, min(after, (n - 1) * stride + k - size - before))


def pad_nhwc(x: np.ndarray, pad: tuple[int, int, int, int], value: float) -> np.ndarray:
    t, left, b, r = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=value)


def window_views(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                 ho: int, wo: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(i, j, view)``: the ``(N, ho, wo, C)`` input seen by kernel tap (i, j)."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
