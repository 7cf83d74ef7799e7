"""reshape: same elements, new shape (flatten etc.); attr ``shape`` is the full output shape.

It never moves data: the channel-last element order is kept, and frontends
permute the next linear's weight columns when a source flatten ordered C,H,W.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import OpDef, QuantRule, Shape, register

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


@register
class Reshape(OpDef):
    name = "reshape"
    family = "reshape"
    quant_rule = QuantRule.SAME_AS_INPUT
    c_alias = True

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        shape = tuple(int(d) for d in node.attrs.get("shape", ()))
        x = graph.tensors[node.inputs[0]]
        if not shape or min(shape) < 1 or int(np.prod(shape)) != x.size:
            raise self.unsupported(node, f"shape {shape} does not hold the {x.size} elements "
                                         f"of {x.shape}")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        return [tuple(int(d) for d in node.attrs["shape"])]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [x.reshape((x.shape[0],) + tuple(node.attrs["shape"])[1:])]

    def simplify(self, graph: Graph, node: Node) -> bool:
        """Skip a reshape feeding this one; drop this one if it changes nothing."""
        x, out = node.inputs[0], node.outputs[0]
        prod = graph.producer(x)
        if prod is not None and prod.op == self.name:
            node.inputs[0] = prod.inputs[0]
            graph.prune()
            return True
        if graph.tensors[x].shape == graph.tensors[out].shape and x not in graph.inputs:
            graph.remove_node(node)
            graph.replace_uses(out, x)
            graph.prune()
            return True
        return False

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [x.reshape(graph.tensors[node.outputs[0]].shape)]  # a view, as in C

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        x = inputs[0]
        assert x is not None
        return x.reshape(graph.tensors[node.outputs[0]].shape)

    def output_bytes(self, node: Node, graph: Graph) -> int:
        return 0  # a view of its input: the planner may alias the buffers

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        ctx.op("RESHAPE", [ctx.tensor(node.inputs[0])], [ctx.tensor(node.outputs[0])],
               new_shape=[int(d) for d in node.attrs["shape"]])

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        """A view: the planner gives the output its input's buffer (c_alias); no kernel."""

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        """A view: the input's gradient is the output's buffer."""
        grads.alias(node.outputs[0], node.inputs[0])
