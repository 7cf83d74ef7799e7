"""batchnorm: inference-mode batch normalisation over the last (channel) axis.

Inputs: x, gamma, beta, running mean, running var (float constants ``(C,)``);
attr ``eps``. It exists only before quantisation: ``simplify`` folds it into the
producing conv2d/linear; else ``legalize`` rewrites it as a 1x1 depthwise conv2d
(4-D input) or a diagonal linear (2-D input), so PTQ and export never see it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.ops.base import OpDef, Shape, get_op, register


def affine_of(node: Node, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with ``bn(x) = x * scale + shift`` per channel, float32."""
    gamma, beta, mean, var = (graph.tensors[i].data for i in node.inputs[1:5])
    assert gamma is not None and beta is not None and mean is not None and var is not None
    eps = float(node.attrs.get("eps", 1e-5))
    scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return scale.astype(np.float32), shift.astype(np.float32)


@register
class BatchNorm(OpDef):
    name = "batchnorm"
    family = "batchnorm"
    num_inputs = (5, 5)
    input_roles = ("act", "param", "param", "param", "param")

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        c = graph.tensors[node.inputs[0]].shape[-1]
        for i in node.inputs[1:]:
            if graph.tensors[i].shape != (c,):
                raise self.unsupported(node, f"parameter {i!r} must have shape ({c},)")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        assert in_shapes[0] is not None
        return [in_shapes[0]]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, gamma, beta, mean, var = inputs
        assert x is not None and gamma is not None and beta is not None
        assert mean is not None and var is not None
        eps = np.float32(node.attrs.get("eps", 1e-5))
        y = (x - mean) / np.sqrt(var + eps) * gamma + beta
        return [y.astype(np.float32)]

    def simplify(self, graph: Graph, node: Node) -> bool:
        scale, shift = affine_of(node, graph)
        x, out = node.inputs[0], node.outputs[0]
        prod = graph.producer(x)
        sole_reader = len(graph.consumers(x)) == 1 and x not in graph.outputs
        if prod is not None and sole_reader and get_op(prod.op, prod).absorb_affine(
                graph, prod, scale, shift):
            graph.remove_node(node)
            graph.replace_uses(out, x)
            graph.prune()
            return True
        return False

    def legalize(self, graph: Graph, node: Node) -> bool:
        """A batchnorm nothing could absorb becomes a 1x1 depthwise conv2d / diagonal linear."""
        scale, shift = affine_of(node, graph)
        rank = len(graph.tensors[node.inputs[0]].shape)
        c = scale.shape[0]
        if rank == 4:
            w = scale.reshape(c, 1, 1, 1)
            op, attrs = "conv2d", {"stride": (1, 1), "pad": (0, 0, 0, 0), "groups": c,
                                   "dilation": (1, 1), "act": "none"}
        elif rank == 2:
            w = np.diag(scale)
            op, attrs = "linear", {"act": "none"}
        else:
            raise self.unsupported(node, f"cannot fold a batchnorm on a rank-{rank} tensor")
        wt = graph.add_tensor(Tensor(graph.unique_name(f"{node.name}.weight"), w.shape,
                                     "float32", w.astype(np.float32)))
        bt = graph.add_tensor(Tensor(graph.unique_name(f"{node.name}.bias"), shift.shape,
                                     "float32", shift))
        node.op, node.attrs = op, attrs
        node.inputs = [node.inputs[0], wt.name, bt.name]
        graph.prune()
        return True
