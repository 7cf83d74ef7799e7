"""Structural checks of an IR graph; shapes are checked against the op registry (so this
lives with the ops: mcutl.ir imports nothing from mcutl.ops)."""

from __future__ import annotations

from mcutl.ir.graph import DTYPES, SOURCE_LAYOUTS, Graph, GraphError, Node, Tensor
from mcutl.ops.base import get_op


def validate_graph(graph: Graph) -> None:
    """Raise GraphError (or UnsupportedOpError) on the first broken invariant.

    Checks: every name resolves; each activation has exactly one writer, written
    before it is read (topological order); dtypes are known; quantised tensors
    carry params of matching shape; every op is registered, accepts its attrs,
    and its shape rule reproduces the stored output shapes.
    """
    if graph.source_layout not in SOURCE_LAYOUTS:
        raise GraphError(f"source_layout {graph.source_layout!r} not in {SOURCE_LAYOUTS}")
    for name, t in graph.tensors.items():
        if name != t.name:
            raise GraphError(f"tensor key {name!r} holds tensor named {t.name!r}")
        if t.dtype not in DTYPES:
            raise GraphError(f"tensor {name!r}: dtype {t.dtype!r} not in {DTYPES}")
        if t.data is not None and tuple(t.data.shape) != tuple(t.shape):
            raise GraphError(f"tensor {name!r}: data shape {t.data.shape} != {t.shape}")
        if t.quant is not None and t.quant.axis is None and t.quant.scale.size != 1:
            raise GraphError(f"tensor {name!r}: per-tensor params need exactly one scale")
        q = t.quant
        if q is not None and q.axis is not None and q.scale.size != t.shape[q.axis]:
            raise GraphError(f"tensor {name!r}: {q.scale.size} scales for axis {q.axis} of "
                             f"shape {t.shape}")
    written: set[str] = set(graph.inputs)
    for name in graph.inputs:
        _need(graph, name, "graph input")
        if graph.tensors[name].is_const:
            raise GraphError(f"graph input {name!r} is a constant")
    node_names: set[str] = set()
    for node in graph.nodes:
        if node.name in node_names:
            raise GraphError(f"duplicate node name {node.name!r}")
        node_names.add(node.name)
        op = get_op(node.op, node)
        for i in node.inputs:
            if i == "":
                continue
            t = _need(graph, i, f"input of node {node.name!r}")
            if not t.is_const and i not in written:
                raise GraphError(f"node {node.name!r} reads {i!r} before it is written")
        for o in node.outputs:
            _need(graph, o, f"output of node {node.name!r}")
            if o in written:
                raise GraphError(f"tensor {o!r} is written twice (node {node.name!r})")
            written.add(o)
        op.check(node, graph)
        shapes = op.infer_shape(node, input_shapes(graph, node))
        for o, s in zip(node.outputs, shapes, strict=True):
            if tuple(graph.tensors[o].shape) != tuple(s):
                raise GraphError(f"node {node.name!r}: output {o!r} has shape "
                                 f"{graph.tensors[o].shape}, the op infers {tuple(s)}")
    for name in graph.outputs:
        _need(graph, name, "graph output")
        if name not in written:
            raise GraphError(f"graph output {name!r} is never written")


def input_shapes(graph: Graph, node: Node) -> list[tuple[int, ...] | None]:
    """Shapes of a node's inputs (None for an omitted optional input)."""
    return [tuple(graph.tensors[i].shape) if i else None for i in node.inputs]


def _need(graph: Graph, name: str, what: str) -> Tensor:
    if name not in graph.tensors:
        raise GraphError(f"{what}: unknown tensor {name!r}")
    return graph.tensors[name]
