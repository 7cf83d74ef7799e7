"""Int8 rounding flips at requantisation points: counted and bounded, never drifted on.

Where the step turns a float sum into int8 (a Rep-Net connector), two correct machines
can round one value differently: their float sums differ in the last bits (another
summation order, another CPU's torch kernels) and the value sits on a rounding tie.
`verify` takes the device's int8 values there as given and checks here that every
difference from the reference's own rounding is such a tie:

- the two values are adjacent (differ by one), and
- the reference's ``m / s + zp`` lies within ``margin`` quantisation steps of the
  rounding boundary between them;

and that the flips that are not exact ties (the reference's value more than
``EXACT`` steps from the boundary: float32 rounding of m/s alone cannot move it that far)
are not more than ``max_fraction`` of the tensor: a float sum that is slightly off
everywhere flips many of those. Exact ties (they happen: a value that lands on k + 0.5
rounds either way on two correct machines) are counted, never bounded. Anything else is
a wrong int8 value (a kernel error), named with its index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: a tie: the reference's m/s + zp within this many quantisation steps of the boundary.
#: Float differences between correct machines move it by ~1e-4 steps at most.
DEFAULT_MARGIN = 0.01
#: at most this fraction of a tensor's values may flip in one step
DEFAULT_MAX_FRACTION = 0.01
#: closer than this to the boundary (in steps) a value is an exact tie up to float32
#: rounding of m/s (ulp(128) is 1.5e-5 steps)
EXACT = 1e-4


@dataclass(frozen=True)
class FlipCheck:
    point: str
    size: int
    flips: int
    max_distance: float  # of a flipped value from its rounding boundary, in steps
    problem: str | None  # None: every flip is a tie and their number is within bounds


def check_flips(point: str, device: np.ndarray, own: np.ndarray, steps: np.ndarray, *,
                margin: float = DEFAULT_MARGIN,
                max_fraction: float = DEFAULT_MAX_FRACTION) -> FlipCheck:
    """Compare the device's int8 values at one requantisation point with the reference's
    own rounding (``own``) of ``steps`` = its float ``m / s + zp``."""
    dev = np.asarray(device, np.int32).reshape(-1)
    ref = np.asarray(own, np.int32).reshape(-1)
    v = np.asarray(steps, np.float64).reshape(-1)
    n = int(dev.size)
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        return FlipCheck(point, n, 0, 0.0,
                         f"{point}: the reference's float sum before requantisation is not "
                         f"finite at {bad.size} of {n} values (first: index {int(bad[0])}): "
                         "training diverged; lower the learning rate")
    diff = np.flatnonzero(dev != ref)
    if diff.size == 0:
        return FlipCheck(point, n, 0, 0.0, None)
    boundary = (dev[diff] + ref[diff]) / 2.0
    distance = np.abs(v[diff] - boundary)
    far = np.abs(dev[diff] - ref[diff]) != 1
    far |= distance > margin
    problem = None
    if far.any():
        j = int(np.argmax(far))
        i = int(diff[j])
        problem = (f"{point}[{i}] is {dev[i]} on the device where the reference computes "
                   f"m/s + zp = {v[i]:.4f} and rounds it to {ref[i]}: "
                   + (f"{distance[j]:.3f} steps from the rounding boundary (a tie is within "
                      f"{margin}), so this is a wrong int8 value, not a rounding flip"
                      if abs(dev[i] - ref[i]) == 1 else
                      "more than one step apart, so this is a wrong int8 value"))
    elif int((distance > EXACT).sum()) > max_fraction * n:
        near = int((distance > EXACT).sum())
        problem = (f"{point}: {near} of {n} int8 values are rounded the other way from "
                   f"the reference's near (not at) a tie, more than {max_fraction:.0%} of "
                   "them: the device's float sum before requantisation is off")
    return FlipCheck(point, n, int(diff.size), float(distance.max()), problem)
