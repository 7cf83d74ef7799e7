"""Static arena planner: offsets for buffers with known lifetimes.

Algorithm (greedy, as TFLite Micro's GreedyMemoryPlanner, under several orders):
buffers are placed one by one, each at the lowest aligned offset where it overlaps
in memory no already-placed buffer whose lifetime overlaps its own. The orders
tried are: largest first, longest-lived first, earliest first, and largest
size x lifetime first, then seeded random orders within a work budget (the
result is deterministic); the plan with the smallest arena is kept. Lifetimes are
inclusive step indices [first, last].

Guarantees: two buffers that are live at the same step never share a byte
(`check_no_overlap()` proves it). Not guaranteed: optimality. The arena can
exceed `lower_bound()` (the most bytes live at any one step, with alignment
padding) when fragmentation forces a gap; the plan report shows both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Buffer:
    name: str
    size: int
    first: int  # first step at which the buffer is live (written)
    last: int  # last step at which it is read
    offset: int = -1

    def live_at(self, step: int) -> bool:
        return self.first <= step <= self.last

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


class PlanError(ValueError):
    """A buffer request that cannot be planned (negative size, empty lifetime)."""


def align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class ArenaPlanner:
    def __init__(self, alignment: int = 16) -> None:
        self.alignment = alignment
        self.buffers: list[Buffer] = []
        self._planned = False

    def add_buffer(self, name: str, size: int, first: int, last: int) -> Buffer:
        if size < 0 or last < first:
            raise PlanError(f"buffer {name}: size {size}, lifetime [{first}, {last}] is invalid")
        buf = Buffer(name, size, first, last)
        self.buffers.append(buf)
        self._planned = False
        return buf

    def _orders(self) -> list[list[int]]:
        idx = range(len(self.buffers))
        b = self.buffers
        return [
            sorted(idx, key=lambda i: (-b[i].size, -(b[i].last - b[i].first), i)),
            sorted(idx, key=lambda i: (-(b[i].last - b[i].first), -b[i].size, i)),
            sorted(idx, key=lambda i: (b[i].first, -b[i].size, i)),
            sorted(idx, key=lambda i: (-b[i].size * (b[i].last - b[i].first + 1), i)),
        ]

    def _place(self, order: list[int]) -> list[int]:
        offsets = [-1] * len(self.buffers)
        placed: list[int] = []
        for i in order:
            buf = self.buffers[i]
            size = align_up(buf.size, self.alignment)
            conflicts = sorted(
                (j for j in placed if self.buffers[j].overlaps_in_time(buf)),
                key=lambda j: offsets[j],
            )
            offset = 0
            for j in conflicts:
                if offset + size <= offsets[j]:
                    break
                offset = max(offset, align_up(offsets[j] + self.buffers[j].size, self.alignment))
            offsets[i] = offset
            placed.append(i)
        return offsets

    def plan(self, budget: int = 3_000_000) -> None:
        """Greedy placement under the heuristic orders, then seeded random orders while
        the work budget (pairs of buffers compared) lasts; the smallest arena wins.
        Stops early when the arena reaches the lower bound."""
        bound = self.lower_bound()
        best: list[int] | None = None
        best_end = -1
        n = len(self.buffers)
        rng = random.Random(0)
        orders = iter(self._orders())
        spent = 0
        while True:
            order = next(orders, None)
            if order is None:
                if spent >= budget or n < 2:
                    break
                order = list(range(n))
                rng.shuffle(order)
            offsets = self._place(order)
            spent += n * n
            end = max((o + b.size for o, b in zip(offsets, self.buffers, strict=True)), default=0)
            if best is None or end < best_end:
                best, best_end = offsets, end
            if align_up(best_end, self.alignment) <= bound:
                break
        for buf, off in zip(self.buffers, best or [], strict=True):
            buf.offset = off
        self._planned = True

    def offset(self, name: str) -> int:
        return self._get(name).offset

    def _get(self, name: str) -> Buffer:
        if not self._planned:
            self.plan()
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def arena_size(self) -> int:
        if not self._planned:
            self.plan()
        end = max((b.offset + b.size for b in self.buffers), default=0)
        return align_up(end, self.alignment)

    def steps(self) -> range:
        if not self.buffers:
            return range(0)
        return range(min(b.first for b in self.buffers), max(b.last for b in self.buffers) + 1)

    def live_bytes(self, step: int) -> int:
        return sum(align_up(b.size, self.alignment) for b in self.buffers if b.live_at(step))

    def lower_bound(self) -> int:
        """The most (aligned) bytes live at one step: no plan can be smaller."""
        return max((self.live_bytes(s) for s in self.steps()), default=0)

    def check_no_overlap(self) -> None:
        """Raise AssertionError if two simultaneously live buffers share memory."""
        if not self._planned:
            self.plan()
        bufs = self.buffers
        for i, a in enumerate(bufs):
            for b in bufs[i + 1 :]:
                if a.size and b.size and a.overlaps_in_time(b):
                    disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
                    if not disjoint:
                        raise AssertionError(
                            f"arena plan overlap: {a.name} [{a.offset}, {a.offset + a.size}) "
                            f"and {b.name} [{b.offset}, {b.offset + b.size}) are both live "
                            f"in steps {max(a.first, b.first)}..{min(a.last, b.last)}"
                        )

    def to_dict(self) -> dict[str, object]:
        return {
            "arena_bytes": self.arena_size(),
            "lower_bound_bytes": self.lower_bound(),
            "alignment": self.alignment,
            "buffers": [
                {"name": b.name, "offset": b.offset, "size": b.size, "first": b.first,
                 "last": b.last}
                for b in self.buffers
            ],
        }
