"""Post-training int8 quantisation of a float IR graph, following TFLite's int8 spec.

1. ``legalize``: batchnorm folded, relu/relu6 fused into the producer's ``act``.
2. Calibrate every activation's [min, max] on the calibration batch (float run).
3. Tie tensors that must share params (each op's ``quant_rule``): a pool/reshape
   output keeps its input's params, concat's inputs and output share one set;
   a tied group gets the union of its members' ranges.
4. Activations -> per-tensor asymmetric int8; constant inputs by their op's
   ``input_roles``: 'weight' -> per-channel symmetric int8 (axis 0), 'bias' ->
   int32 with scale ``input_scale * weight_scale[c]``.
"""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ir.passes import legalize
from mcutl.ops import QuantRule, UnsupportedOpError, get_op
from mcutl.ops._const import private_const
from mcutl.ops.validate import validate_graph
from mcutl.quant.calibrate import calibrate
from mcutl.quant.qparams import activation_params, quantize_bias, quantize_weight


def quantize(graph: Graph, calib: np.ndarray) -> Graph:
    """A quantised copy of the float ``graph`` (``calib``: inputs in the source layout)."""
    if any(t.dtype != "float32" for t in graph.tensors.values()):
        raise ValueError("the graph is already (partly) quantised; quantize() takes a float "
                         "graph")
    g = legalize(graph.copy())
    validate_graph(g)
    ranges = calibrate(g, calib)
    groups = tie_groups(g)
    span: dict[str, tuple[float, float]] = {}
    for name, root in groups.items():
        lo, hi = span.get(root, (0.0, 0.0))
        rlo, rhi = ranges[name]
        span[root] = (min(lo, rlo), max(hi, rhi))
    for name, root in groups.items():
        t = g.tensors[name]
        t.dtype, t.quant = "int8", activation_params(*span[root])
    for node in g.nodes:
        _quantize_constants(g, node)
    validate_graph(g)
    return g


def tie_groups(graph: Graph) -> dict[str, str]:
    """Map every activation to the representative of the group whose params it shares."""
    parent = {name: name for name in graph.activations()}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for node in graph.nodes:
        op = get_op(node.op, node)
        acts = [i for k, i in enumerate(node.inputs) if i and op.role(k) == "act"]
        if op.quant_rule is QuantRule.SAME_AS_INPUT:
            union(acts[0], node.outputs[0])
        elif op.quant_rule is QuantRule.SHARED:
            for name in acts + node.outputs[1:]:
                union(node.outputs[0], name)
    return {name: find(name) for name in parent}


def _quantize_constants(g: Graph, node: Node) -> None:
    op = get_op(node.op, node)
    weight_scale = None
    for k, name in enumerate(node.inputs):
        role = op.role(k)
        if not name or role == "act":
            continue
        t = private_const(g, node, k)  # a constant shared by two nodes is quantised twice
        if t.dtype != "float32":
            raise UnsupportedOpError(node.op, node.name, f"constant {name!r} is already "
                                                         "quantised")
        assert t.data is not None
        if role == "weight":
            t.data, t.quant = quantize_weight(t.data)
            t.dtype, weight_scale = "int8", t.quant.scale
        elif role == "bias":
            if weight_scale is None:
                raise UnsupportedOpError(node.op, node.name, "bias before its weight")
            x = g.tensors[node.inputs[0]].quant
            assert x is not None
            t.data, t.quant = quantize_bias(t.data, float(x.scale[0]), weight_scale)
            t.dtype = "int32"
        else:
            raise UnsupportedOpError(node.op, node.name, f"{role} input {name!r} has no int8 "
                                                         "form; it should have been folded")
