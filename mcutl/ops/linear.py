"""linear: ``y = x @ W.T + b`` on ``(1, in)`` features, weight ``(out, in)``, bias ``(out,)``.

Bias is always present (zeros when the source had none); attr ``act``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops._const import private_const
from mcutl.ops.base import OpDef, Shape, apply_act, register

if TYPE_CHECKING:
    from mcutl.tflite.export import LoweringContext


@register
class Linear(OpDef):
    name = "linear"
    family = "linear"
    num_inputs = (3, 3)
    input_roles = ("act", "weight", "bias")
    accepts_act = True

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        x, w, b = (graph.tensors[i].shape for i in node.inputs)
        if len(x) != 2 or len(w) != 2 or x[1] != w[1] or b != (w[0],):
            raise self.unsupported(node, f"needs x (1, in), weight (out, in), bias (out,); "
                                         f"got {x}, {w}, {b}")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        x, w = in_shapes[0], in_shapes[1]
        assert x is not None and w is not None
        return [(x[0], w[0])]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w, b = inputs
        assert x is not None and w is not None and b is not None
        y = x.astype(np.float32) @ w.astype(np.float32).T + b.astype(np.float32)
        return [apply_act(y, node.attrs.get("act", "none"))]

    def absorb_affine(self, graph: Graph, node: Node, scale: np.ndarray,
                      shift: np.ndarray) -> bool:
        if node.attrs.get("act", "none") != "none":
            return False
        w = private_const(graph, node, 1)
        b = private_const(graph, node, 2)
        assert w.data is not None and b.data is not None
        w.data = (w.data * scale.reshape(-1, 1)).astype(np.float32)
        b.data = (b.data * scale + shift).astype(np.float32)
        return True

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        ctx.op("FULLY_CONNECTED", [ctx.tensor(i) for i in node.inputs],
               [ctx.tensor(node.outputs[0])],
               fused_activation=node.attrs.get("act", "none").upper())
