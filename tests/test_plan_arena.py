"""The arena planner never lets two live buffers share a byte, and reports a true bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcutl.plan.arena import ArenaPlanner, PlanError


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5000), st.integers(0, 30), st.integers(0, 10)),
        min_size=1,
        max_size=40,
    )
)
def test_no_overlap_and_bound(bufs: list[tuple[int, int, int]]) -> None:
    p = ArenaPlanner(alignment=16)
    for i, (size, first, length) in enumerate(bufs):
        p.add_buffer(f"b{i}", size, first, first + length)
    p.check_no_overlap()
    assert p.arena_size() >= p.lower_bound()
    for b in p.buffers:
        assert b.offset % 16 == 0 and b.offset + b.size <= p.arena_size()


def test_chain_reuses_memory() -> None:
    """A chain of layers needs only two buffers at a time (ping-pong)."""
    p = ArenaPlanner(alignment=4)
    for i in range(10):
        p.add_buffer(f"t{i}", 1000, i, i + 1)
    assert p.lower_bound() == 2000
    assert p.arena_size() == 2000


def test_overlap_is_detected() -> None:
    p = ArenaPlanner()
    a = p.add_buffer("a", 64, 0, 2)
    b = p.add_buffer("b", 64, 1, 3)
    p.plan()
    b.offset = a.offset
    with pytest.raises(AssertionError, match="a .* and b .* both live"):
        p.check_no_overlap()


def test_invalid_buffer() -> None:
    with pytest.raises(PlanError):
        ArenaPlanner().add_buffer("x", 10, 3, 2)
