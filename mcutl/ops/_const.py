"""Helpers for ops that rewrite their constant inputs."""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import Graph, Node, Tensor


def private_const(graph: Graph, node: Node, index: int) -> Tensor:
    """Input ``index`` of ``node`` as a constant only this node reads (copied if shared)."""
    name = node.inputs[index]
    t = graph.tensors[name]
    readers = sum(name in n.inputs for n in graph.nodes)
    if readers == 1 and name not in graph.outputs:
        return t
    new = Tensor(graph.unique_name(f"{node.name}.in{index}"), t.shape, t.dtype,
                 None if t.data is None else np.array(t.data), t.quant)
    graph.add_tensor(new)
    node.inputs[index] = new.name
    return new
