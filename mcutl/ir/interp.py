"""Float execution of an IR graph with the ops' numpy references (calibration, tests)."""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ir.layout import from_ir_layout, to_ir_layout
from mcutl.ops import get_op


def run_f32(graph: Graph, inputs: dict[str, np.ndarray] | np.ndarray, *,
            source_layout: bool = True, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run ``graph`` in float32 on a batch; return the graph outputs (or every tensor).

    ``inputs``: one array for a single-input graph, or a dict by input name, each
    batched ``(N, ...)``; in the user's layout when ``source_layout`` (the
    default) else channel-last. Outputs come back in the same convention.
    Quantised constants are dequantised; activations are always float.
    """
    feeds = inputs if isinstance(inputs, dict) else {graph.inputs[0]: inputs}
    values: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        x = np.asarray(feeds[name], dtype=np.float32)
        values[name] = to_ir_layout(x, graph.source_layout) if source_layout else x
    for node in graph.nodes:
        args = [None if not i else values[i] if i in values else const_f32(graph, i)
                for i in node.inputs]
        outs = get_op(node.op, node).reference_f32(node, args)
        values.update(zip(node.outputs, outs, strict=True))
    names = list(values) if keep_all else graph.outputs
    if not source_layout:
        return {k: values[k] for k in names}
    return {k: from_ir_layout(values[k], graph.source_layout) for k in names}


def const_f32(graph: Graph, name: str) -> np.ndarray:
    """A constant as float32, dequantised if it holds integers with QuantParams."""
    t = graph.tensors[name]
    if t.data is None:
        raise KeyError(f"tensor {name!r} is neither a constant nor computed yet")
    if t.quant is None or t.dtype == "float32":
        return t.data.astype(np.float32)
    q = t.quant
    shape = [1] * t.data.ndim
    if q.axis is not None:
        shape[q.axis] = -1
    scale = q.scale.astype(np.float64).reshape(shape)
    zp = q.zero_point.astype(np.float64).reshape(shape)
    return ((t.data.astype(np.float64) - zp) * scale).astype(np.float32)
