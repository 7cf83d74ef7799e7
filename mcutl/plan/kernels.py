"""Which layers run the target's fast kernels: those whose scratch does not raise the
arena's peak. A DSP conv or depthwise kernel (runtime_c/src/int8/*_dsp.c) needs scratch
for its widened input columns; where that scratch lands on the arena's peak, the layer
runs the portable kernel instead (bit-exact too, slower): speed is never bought with SRAM.
"""

from __future__ import annotations

from collections.abc import Callable

from mcutl.ir.graph import Graph
from mcutl.ops import get_op


def portable_where_scratch_raises_peak(graph: Graph, kernels: str,
                                       peak: Callable[[frozenset[str]], int]
                                       ) -> frozenset[str]:
    """The nodes to run with the portable kernel: ``peak(portable_nodes)`` is the arena of
    a plan; the largest scratches are given up first until the peak is the all-portable
    one (the fewest layers lose their fast kernel, the biggest scratch first)."""
    scratch = {n.name: get_op(n.op, n).scratch_bytes(n, graph, kernels) for n in graph.nodes}
    scratch = {k: v for k, v in scratch.items() if v > 0}
    if kernels == "portable" or not scratch:
        return frozenset()
    floor = peak(frozenset(scratch))
    portable: set[str] = set()
    for name in sorted(scratch, key=lambda k: (-scratch[k], k)):
        if peak(frozenset(portable)) <= floor:
            break
        portable.add(name)
    return frozenset(portable)
