"""Buffer lifetimes and their arena plan, for both kinds of build.

- inference: every activation of the backbone, node by node (``plan_activations``);
- training: every buffer the step's kernel calls touch, call by call (``plan_buffers``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from mcutl.ir.graph import Graph
from mcutl.ops.base import get_op
from mcutl.plan.arena import ArenaPlanner
from mcutl.plan.streaming import Stream


class UsedBuffer(Protocol):
    nbytes: int
    first: int
    last: int


def plan_activations(graph: Graph, kernels: str = "portable",
                     portable: frozenset[str] = frozenset(), streams: Sequence[Stream] = (),
                     place: bool = True, whole: Sequence[str] = ()
                     ) -> tuple[ArenaPlanner, dict[str, str]]:
    """Lifetimes of every activation in node order; alias ops share their input's buffer;
    the scratch a node's kernel needs (``kernels``: the target's kernel set; the nodes in
    ``portable`` run the portable one) lives while the node runs, under
    ``scratch_key(node)``.

    Step 0 is "before the first node" (the input is written), node i runs at step i+1,
    and the graph outputs stay live one step after the last node (they are read out).

    ``streams``: segments that run band by band (mcutl.plan.streaming). Their steps are
    one band's calls (every band repeats them on the same buffers): a map made and read
    inside gets its band buffer, a whole map read inside stays live to the segment's
    end, and the segment's output from its start (the bands fill it one after another).
    ``place`` False: lifetimes only (``lower_bound()`` is valid, no offsets).
    ``whole``: tensors live from the start to the end (a training step's input).
    """
    from mcutl.codegen.context import scratch_key

    in_stream = {i: s for s in streams for i in range(s.first, s.last + 1)}
    band_bytes = {t: n for s in streams for t, n in s.inner.items()}
    root: dict[str, str] = {t: t for t in graph.inputs}
    first: dict[str, int] = {t: 0 for t in graph.inputs}
    last: dict[str, int] = {t: 0 for t in graph.inputs}
    for i, node in enumerate(graph.nodes, start=1):
        op = get_op(node.op, node)
        seg = in_stream.get(i - 1)
        for t in node.inputs:
            if t and not graph.tensors[t].is_const:
                read = i if seg is None or t in seg.inner else seg.last + 1
                last[root[t]] = max(last[root[t]], read)
        for o in node.outputs:
            if getattr(op, "c_alias", False):
                root[o] = root[node.inputs[0]]
                last[root[o]] = max(last[root[o]], i)
            else:
                root[o] = o
                first[o] = last[o] = seg.first + 1 if seg and o == seg.output else i
    end = len(graph.nodes) + 1
    for t in graph.outputs:
        last[root[t]] = end
    for t in whole:
        first[root[t]], last[root[t]] = 0, end
    planner = ArenaPlanner(alignment=16)
    for t, r in root.items():
        if t == r:
            planner.add_buffer(t, band_bytes.get(t, graph.tensors[t].nbytes), first[t],
                               last[t])
    for i, node in enumerate(graph.nodes, start=1):
        nbytes = get_op(node.op, node).scratch_bytes(
            node, graph, "portable" if node.name in portable else kernels)
        if nbytes:
            planner.add_buffer(scratch_key(node.name), nbytes, i, i)
    if place:
        planner.plan()
        planner.check_no_overlap()
    return planner, root


def streamed_bound(graph: Graph, kernels: str, streams: Sequence[Stream],
                   whole: Sequence[str] = ()) -> tuple[int, int]:
    """(the arena's lower bound, the step where the most bytes are live) with ``streams``:
    what ``choose_streams`` minimises (``whole``: see ``plan_activations``)."""
    planner, _ = plan_activations(graph, kernels, streams=streams, place=False, whole=whole)
    steps = list(planner.steps())
    live = [planner.live_bytes(s) for s in steps]
    at = max(range(len(live)), key=lambda k: (live[k], -k))
    return live[at], steps[at]


def streamed_profile(graph: Graph, kernels: str, streams: Sequence[Stream],
                     whole: Sequence[str] = (), top: int = 4) -> tuple[int, ...]:
    """The ``top`` highest per-step live byte counts with ``streams``, highest first (two
    stages tied at the peak are lowered one after the other: the second-highest counts)."""
    planner, _ = plan_activations(graph, kernels, streams=streams, place=False, whole=whole)
    return tuple(sorted((planner.live_bytes(s) for s in planner.steps()), reverse=True)[:top])


def plan_buffers(buffers: Mapping[str, UsedBuffer], calls: int,
                 whole_step: tuple[str, ...] = (),
                 from_start: tuple[str, ...] = ()) -> ArenaPlanner:
    """Every buffer of a training step in one arena, live from the first to the last call
    that touches it; ``whole_step`` buffers live for all ``calls`` (the input: SAMPLE
    writes it before STEP and INFER read it); ``from_start`` buffers from the first call
    to their last use (an input the step may overwrite once it has read it). Declared but
    unused buffers get no space."""
    planner = ArenaPlanner(alignment=8)
    for key, buf in buffers.items():
        if buf.last < 0:
            continue
        first, last = (0, calls) if key in whole_step else (buf.first, buf.last)
        if key in from_start:  # written before the step (the input): live from its start
            first = 0
        planner.add_buffer(key, buf.nbytes, first, last)
    planner.plan()
    planner.check_no_overlap()
    return planner
