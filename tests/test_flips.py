"""verify's int8 flip check (mcutl/verify/flips.py): a rounding tie is a flip, anything
else is a wrong value; too many ties, or a non-finite sum, are named."""

from __future__ import annotations

import numpy as np

from mcutl.verify.flips import check_flips


def test_a_tie_rounded_the_other_way_is_a_flip() -> None:
    steps = np.array([2.0, 3.5004, -1.2, 7.49995])  # m/s + zp as the reference sees it
    own = np.array([2, 4, -1, 7], np.int8)
    dev = np.array([2, 3, -1, 8], np.int8)  # two ties the other way
    c = check_flips("t", dev, own, steps, max_fraction=0.5)
    assert c.problem is None and c.flips == 2 and c.max_distance < 1e-3


def test_a_value_off_by_one_away_from_a_tie_is_wrong() -> None:
    steps = np.array([2.0, 3.3])
    c = check_flips("t", np.array([2, 4], np.int8), np.array([2, 3], np.int8), steps)
    assert c.problem is not None and c.problem.startswith("t[1] is 4 on the device")
    assert "not a rounding flip" in c.problem
    c = check_flips("t", np.array([5, 3], np.int8), np.array([2, 3], np.int8), steps)
    assert c.problem is not None and "more than one step apart" in c.problem


def test_too_many_near_ties_and_non_finite_sums_are_named() -> None:
    n = 1000
    steps = np.full(n, 0.5)  # exact ties: either rounding is right, any number of them
    own = np.ones(n, np.int8)
    dev = own.copy()
    dev[:200] = 0
    assert check_flips("t", dev, own, steps, max_fraction=0.01).problem is None
    steps[:] = 0.503  # near a tie, 0.003 steps off: a sum slightly off everywhere
    c = check_flips("t", dev, own, steps, max_fraction=0.01)
    assert c.problem is not None and "200 of 1000" in c.problem
    dev[9:200] = 1  # 9 of them: within the bound
    assert check_flips("t", dev, own, steps, max_fraction=0.01).problem is None
    steps[3] = np.nan
    c = check_flips("t", own, own, steps)
    assert c.problem is not None and "not finite" in c.problem and "index 3" in c.problem
