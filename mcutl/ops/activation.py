"""relu and relu6 as standalone nodes.

``simplify`` fuses them into the producing node's ``act`` attr when that op
accepts one and nobody else reads the producer's output; what remains is a
standalone int8 op with its own (calibrated) output params.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import OpDef, Shape, apply_act, get_op, register

if TYPE_CHECKING:
    from mcutl.tflite.export import LoweringContext


class _Activation(OpDef):
    family = "activation"
    tflite_op = ""

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        assert in_shapes[0] is not None
        return [in_shapes[0]]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        assert inputs[0] is not None
        return [apply_act(inputs[0], self.name)]

    def simplify(self, graph: Graph, node: Node) -> bool:
        x, out = node.inputs[0], node.outputs[0]
        prod = graph.producer(x)
        if prod is None or x in graph.outputs or len(graph.consumers(x)) != 1:
            return False
        if not get_op(prod.op, prod).fuse_activation(graph, prod, self.name):
            return False
        graph.remove_node(node)
        graph.replace_uses(out, x)
        graph.prune()
        return True

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        ctx.op(self.tflite_op, [ctx.tensor(node.inputs[0])], [ctx.tensor(node.outputs[0])])


@register
class Relu(_Activation):
    name = "relu"
    tflite_op = "RELU"


@register
class Relu6(_Activation):
    name = "relu6"
    tflite_op = "RELU6"
