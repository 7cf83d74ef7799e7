"""Row-streamed execution of a run of layers (MCUNetV2's patch-based inference, by rows).

Layer by layer, a model's peak is often one early, high-resolution stage: MobileNetV2-
w0.35 at 128x128 expands a 64x64x8 map to 64x64x48 (196,608 B int8) before a stride-2
depthwise shrinks it. A *streamed segment* computes a run of layers band by band: a
band of R rows of the segment's output needs a few more rows of each map before it
(the receptive field: a 3x3 stride-2 conv reads 2R + 1 input rows for R output rows),
and only those rows are ever in memory, in a small *band buffer* per intermediate map.
The segment's inputs and its output stay whole; every band writes its rows of the
output in place. Rows where neighbouring bands' windows overlap are recomputed (the
halo: extra MACs, reported), never cached, so every band runs the same sequence of
calls on the same buffers.

Because an NHWC map's rows are contiguous, a band of rows is just a pointer and a
height: the kernels run unchanged, with the band's dims and the band's padding (the
map's own top or bottom padding where the band meets an edge, none inside). Every
output value is computed by the same integer arithmetic from the same inputs as layer
by layer: bit-exact.

What can stream is declared by each op (``OpDef.band_rows``: conv2d of every kind and
the residual add). ``choose_streams`` tries the segments around the plan's peak and
the band heights, and keeps what lowers the peak most (then the fewest extra MACs);
it repeats while the peak moves to another stage that streaming lowers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import get_op

Rows = tuple[int, int]


@dataclass(frozen=True)
class Band:
    """One band of a segment: the rows of every map it touches, each node's attrs."""

    out_rows: Rows  # rows of the segment's output this band writes
    rows: dict[str, Rows]  # activation -> rows computed (inside) or read (outside)
    reads: dict[tuple[str, str], Rows]  # (node, input) -> the rows that node reads
    attrs: dict[str, dict[str, Any]]  # node -> its attrs for this band


@dataclass(frozen=True)
class Stream:
    """A streamed segment: nodes ``first..last`` (graph indices, inclusive)."""

    first: int
    last: int
    output: str  # the whole map the segment writes band by band
    band_rows: int  # rows of ``output`` per band (the last band may have fewer)
    bands: tuple[Band, ...]
    inner: dict[str, int]  # map computed inside -> its band buffer's bytes
    macs: int  # MACs of the segment streamed (halo recomputation included)
    macs_layer_by_layer: int

    @property
    def extra_macs(self) -> int:
        return self.macs - self.macs_layer_by_layer

    @property
    def valid(self) -> bool:
        """Every band reads at least one row of every map: a band whose windows lie wholly
        in a layer's padding (a pad wider than the kernel) has no input to call it on."""
        return all(r[1] > r[0] for b in self.bands for r in b.reads.values())

    def contains(self, index: int) -> bool:
        return self.first <= index <= self.last

    def describe(self, graph: Graph) -> dict[str, Any]:
        """What plan.json says about the segment."""
        return {
            "nodes": [graph.nodes[i].name for i in range(self.first, self.last + 1)],
            "output": self.output,
            "band_rows": self.band_rows,
            "bands": len(self.bands),
            "band_buffers": dict(self.inner),
            "macs": self.macs,
            "extra_macs": self.extra_macs,
        }


def _row_bytes(graph: Graph, tensor: str) -> int:
    _, _, w, c = graph.tensors[tensor].shape
    return int(w) * int(c)


def _node_macs(graph: Graph, node: Node, out_shape: tuple[int, ...]) -> int:
    """MACs of a conv computing ``out_shape`` (0 for anything else)."""
    if node.op != "conv2d":
        return 0
    _, kh, kw, cg = graph.tensors[node.inputs[1]].shape
    n = 1
    for v in out_shape:
        n *= int(v)
    return n * int(kh) * int(kw) * int(cg)


def segment_ok(graph: Graph, first: int, last: int) -> bool:
    """Whether nodes ``first..last`` can stream: every node a 4-D op with one output
    that declares ``band_rows``, and every map made inside read only inside except the
    last node's output (the segment's output)."""
    nodes = graph.nodes[first:last + 1]
    made = {o for n in nodes for o in n.outputs}
    output = nodes[-1].outputs[0]
    if output in graph.inputs:
        return False
    for n in nodes:
        if len(n.outputs) != 1 or len(graph.tensors[n.outputs[0]].shape) != 4:
            return False
        if get_op(n.op, n).band_rows(n, graph, (0, 1)) is None:
            return False
    inside = set(range(first, last + 1))
    for t in made - {output}:
        if t in graph.outputs:
            return False
        if any(i not in inside for i, n in enumerate(graph.nodes) if t in n.inputs):
            return False
    return graph.tensors[output].shape[1] >= 2


def make_stream(graph: Graph, first: int, last: int, band_rows: int) -> Stream:
    """The bands of segment ``first..last`` with ``band_rows`` output rows each."""
    nodes = graph.nodes[first:last + 1]
    output = nodes[-1].outputs[0]
    made = {n.outputs[0] for n in nodes}
    height = int(graph.tensors[output].shape[1])
    bands: list[Band] = []
    inner: dict[str, int] = {}
    macs = 0
    for o0 in range(0, height, band_rows):
        need: dict[str, Rows] = {output: (o0, min(height, o0 + band_rows))}
        reads: dict[tuple[str, str], Rows] = {}
        attrs: dict[str, dict[str, Any]] = {}
        for n in reversed(nodes):
            out = need[n.outputs[0]]
            got = get_op(n.op, n).band_rows(n, graph, out)
            assert got is not None
            in_rows, attrs[n.name] = got
            for t, r in zip(n.inputs, in_rows, strict=True):
                if r is None or not t or graph.tensors[t].is_const:
                    continue
                reads[(n.name, t)] = r
                have = need.get(t)
                need[t] = r if have is None else (min(have[0], r[0]), max(have[1], r[1]))
            _, _, w, c = graph.tensors[n.outputs[0]].shape
            macs += _node_macs(graph, n, (1, out[1] - out[0], w, c))
        for t in made - {output}:
            rows = need[t][1] - need[t][0]
            inner[t] = max(inner.get(t, 0), rows * _row_bytes(graph, t))
        bands.append(Band(need[output], need, reads, attrs))
    whole = sum(_node_macs(graph, n, graph.tensors[n.outputs[0]].shape) for n in nodes)
    return Stream(first, last, output, band_rows, tuple(bands), inner, macs, whole)


def band_heights(height: int) -> list[int]:
    """The band heights tried for an output of ``height`` rows: 1, 2, 4, ... below it."""
    out, r = [], 1
    while r < height:
        out.append(r)
        r *= 2
    return out


def conv_macs(graph: Graph) -> int:
    """The MACs of the model's convolutions, layer by layer (what streaming recomputes)."""
    return sum(_node_macs(graph, n, graph.tensors[n.outputs[0]].shape) for n in graph.nodes)


def recompute_limits(streaming: str, fits: bool, macs: int,
                     share: float = 0.10) -> list[int | None]:
    """The MACs a choice of segments may recompute, tried in order until one fits:
    "max": no limit; "auto": ``share`` of ``macs`` when layer by layer already fits,
    else 1, 2, 4, 8 x that and then no limit (the least recomputation that fits)."""
    if streaming == "max":
        return [None]
    if fits:
        return [int(share * macs)]
    return [int(f * share * macs) for f in (1, 2, 4, 8)] + [None]


def _extra(streams: tuple[Stream, ...] | list[Stream]) -> int:
    return sum(s.extra_macs for s in streams)


def choose_streams(graph: Graph, peak: Callable[[tuple[Stream, ...]], tuple[int, int]],
                   max_extra_macs: int | None = None, reach: int = 12,
                   allowed: Callable[[int, int], bool] | None = None,
                   profile: Callable[[tuple[Stream, ...]], tuple[int, ...]] | None = None
                   ) -> tuple[Stream, ...]:
    """Streamed segments that lower the arena: ``peak(streams)`` gives (the arena's lower
    bound, the step where it peaks) for a set of segments. Around the peak step, every
    valid segment of up to ``reach`` nodes before and after it and every band height is
    tried; the lowest profile wins (ties: the fewest extra MACs), among the choices that
    recompute at most ``max_extra_macs`` in all (None: no limit). Repeated while the peak
    moves to a node no segment covers and streaming it lowers the bound again; then a
    segment is cut in two where that lowers the bound, and each is made as cheap as the
    bound allows (shorter, taller bands). ``allowed(first, last)``: a further condition
    on segments (a training step streams only its frozen part). ``profile(streams)``: the
    highest live byte counts, highest first, to lower stages tied at the peak one by one
    (default: the bound alone)."""
    prof = profile or (lambda ss: (peak(ss)[0],))
    limit = max_extra_macs

    def ok(first: int, last: int) -> bool:
        return segment_ok(graph, first, last) and (allowed is None or allowed(first, last))

    def affordable(streams: tuple[Stream, ...] | list[Stream]) -> bool:
        return limit is None or _extra(streams) <= limit

    chosen: tuple[Stream, ...] = ()
    best, at = peak(chosen)
    while True:
        node = at - 1  # step i runs node i - 1
        if node < 0 or node >= len(graph.nodes) or any(s.contains(node) for s in chosen):
            chosen, best = _split(graph, chosen, peak, best, affordable, ok)
            chosen, best = _tighten(graph, chosen, prof, affordable)
            return _relax(graph, chosen, peak, best, ok)
        current = prof(chosen)
        found: tuple[tuple[int, ...], int, tuple[Stream, ...]] | None = None
        for first in range(max(0, node - reach), node + 1):
            if any(s.contains(first) for s in chosen):
                continue
            for last in range(node, min(len(graph.nodes), node + reach + 1)):
                if any(s.first <= last and first <= s.last for s in chosen):
                    break
                if not ok(first, last):
                    continue
                height = int(graph.tensors[graph.nodes[last].outputs[0]].shape[1])
                for r in band_heights(height):
                    s = make_stream(graph, first, last, r)
                    if not s.valid:
                        continue
                    trial = tuple(sorted((*chosen, s), key=lambda x: x.first))
                    if not affordable(trial):
                        continue
                    p = prof(trial)
                    if p < current and (found is None or (p, s.extra_macs) < found[:2]):
                        found = (p, s.extra_macs, trial)
        if found is None:
            chosen, best = _split(graph, chosen, peak, best, affordable, ok)
            chosen, best = _tighten(graph, chosen, prof, affordable)
            return _relax(graph, chosen, peak, best, ok)
        chosen = found[2]
        best, at = peak(chosen)


def _split(graph: Graph, chosen: tuple[Stream, ...],
           peak: Callable[[tuple[Stream, ...]], tuple[int, int]], bound: int,
           affordable: Callable[[list[Stream]], bool], ok: Callable[[int, int], bool]
           ) -> tuple[tuple[Stream, ...], int]:
    """Each segment cut in two where that lowers the bound (the greedy choice of one
    long segment can carry a deep halo: a later block's receptive field multiplies the
    rows an early map needs per band)."""
    out = list(chosen)
    for k, seg in enumerate(chosen):
        best: tuple[int, int, list[Stream]] | None = None
        for cut in range(seg.first, seg.last):
            if not (ok(seg.first, cut) and ok(cut + 1, seg.last)):
                continue
            h1 = int(graph.tensors[graph.nodes[cut].outputs[0]].shape[1])
            h2 = int(graph.tensors[seg.output].shape[1])
            for r1 in band_heights(h1):
                left = make_stream(graph, seg.first, cut, r1)
                if not left.valid:
                    continue
                for r2 in band_heights(h2):
                    right = make_stream(graph, cut + 1, seg.last, r2)
                    if not right.valid:
                        continue
                    trial = out[:k] + [left, right] + out[k + 1:]
                    if not affordable(trial):
                        continue
                    b, _ = peak(tuple(trial))
                    key = (b, left.extra_macs + right.extra_macs)
                    if b < bound and (best is None or key < best[:2]):
                        best = (*key, [left, right])
        if best is not None:
            bound = best[0]
            out[k:k + 1] = best[2]
    return tuple(out), bound


def _tighten(graph: Graph, chosen: tuple[Stream, ...],
             profile: Callable[[tuple[Stream, ...]], tuple[int, ...]],
             affordable: Callable[[list[Stream]], bool]) -> tuple[tuple[Stream, ...], int]:
    """Each segment's band height chosen again with the others fixed, until none changes
    (a segment picked while another part of the model set the peak kept the cheapest
    height then; once that part is streamed, a lower one may lower the bound). Heights
    compare by the live-bytes profile, so two stages tied at the peak go down in turn."""
    out = list(chosen)
    best = profile(tuple(out))
    changed = True
    while changed:
        changed = False
        for k, seg in enumerate(out):
            height = int(graph.tensors[seg.output].shape[1])
            for r in band_heights(height):
                if r == seg.band_rows:
                    continue
                s = make_stream(graph, seg.first, seg.last, r)
                if not s.valid:
                    continue
                trial = out[:k] + [s] + out[k + 1:]
                if not affordable(trial):
                    continue
                p = profile(tuple(trial))
                if p < best:
                    out, best, seg, changed = trial, p, s, True
    return tuple(out), best[0]


def _relax(graph: Graph, chosen: tuple[Stream, ...],
           peak: Callable[[tuple[Stream, ...]], tuple[int, int]], bound: int,
           ok: Callable[[int, int], bool]) -> tuple[Stream, ...]:
    """Each segment made as cheap as the final bound allows: the shortest part of it and
    the tallest bands that keep the arena's bound at ``bound`` (the fewest MACs
    recomputed: a segment need not go below what the rest of the model needs)."""
    out = list(chosen)
    for k, seg in enumerate(out):
        best = seg
        for first in range(seg.first, seg.last + 1):
            for last in range(seg.last, first - 1, -1):
                if not ok(first, last):
                    continue
                height = int(graph.tensors[graph.nodes[last].outputs[0]].shape[1])
                for r in band_heights(height):
                    s = make_stream(graph, first, last, r)
                    if not s.valid or s.extra_macs >= best.extra_macs:
                        continue
                    if peak(tuple(out[:k] + [s] + out[k + 1:]))[0] <= bound:
                        best = s
        out[k] = best
    return tuple(out)
