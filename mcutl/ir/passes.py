"""Graph-wide rewrites. They ask each node's OpDef and never test op names.

- ``simplify``: local rewrites valid in float, to a fixed point (batchnorm folded
  into the producing conv/linear, relu/relu6 fused into the producer's ``act``).
- ``legalize``: rewrite ops that have no int8 kernel into ops that do (a batchnorm
  left standalone becomes a 1x1 depthwise conv2d or a diagonal linear).
"""

from __future__ import annotations

from mcutl.ir.graph import Graph
from mcutl.ops import get_op


def _fixed_point(graph: Graph, hook: str) -> Graph:
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if not any(n is node for n in graph.nodes):
                continue
            if getattr(get_op(node.op, node), hook)(graph, node):
                changed = True
                break
    return graph


def simplify(graph: Graph) -> Graph:
    """Fold and fuse in place (see module doc); returns ``graph``."""
    return _fixed_point(graph, "simplify")


def legalize(graph: Graph) -> Graph:
    """Simplify, then replace ops without int8 kernels, then simplify again; in place."""
    simplify(graph)
    _fixed_point(graph, "legalize")
    return simplify(graph)
