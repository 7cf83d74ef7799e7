"""concat: join activations along ``axis`` (3 = channels of NHWC, 1 for ``(1, F)``).

In int8 all inputs and the output share one scale and zero point (TFLite's int8
CONCATENATION does not rescale), so PTQ ties their ranges together.
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
class Concat(OpDef):
    name = "concat"
    family = "concat"
    num_inputs = (1, -1)
    input_roles = ("act",)
    quant_rule = QuantRule.SHARED

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        shapes = [graph.tensors[i].shape for i in node.inputs]
        axis = int(node.attrs.get("axis", -1))
        rank = len(shapes[0])
        if not 0 < axis < rank:
            raise self.unsupported(node, f"axis {axis} must be in 1..{rank - 1}")
        for s in shapes:
            if len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][
                    axis + 1:]:
                raise self.unsupported(node, f"input shapes {shapes} differ off axis {axis}")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        axis = int(node.attrs["axis"])
        first = in_shapes[0]
        assert first is not None
        total = sum(s[axis] for s in in_shapes if s is not None)
        return [first[:axis] + (total,) + first[axis + 1:]]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        arrays = [x for x in inputs if x is not None]
        return [np.concatenate(arrays, axis=int(node.attrs["axis"]))]

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        arrays = [x for x in inputs if x is not None]
        return [int8_ref.concatenation_s8(arrays, axis=int(node.attrs["axis"]))]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        import torch

        return torch.cat([x for x in inputs if x is not None], dim=int(node.attrs["axis"]))

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        ctx.op("CONCATENATION", [ctx.tensor(i) for i in node.inputs],
               [ctx.tensor(node.outputs[0])], axis=int(node.attrs["axis"]),
               fused_activation="NONE")

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe

        axis = int(node.attrs["axis"])
        y = graph.tensors[node.outputs[0]]
        outer = int(np.prod(y.shape[:axis]))
        sizes = [int(np.prod(graph.tensors[i].shape[axis:])) for i in node.inputs]
        base = ctx.unique(node.name)
        ptrs = ctx.ptr_array(f"{base}_inputs", [ctx.act(i) for i in node.inputs])
        copy = ctx.const_array(f"{base}_copy_sizes", np.asarray(sizes, dtype=np.int32))
        ctx.call("mcutl_concatenation_s8",
                 [ptrs, copy, str(len(sizes)), str(outer), ctx.act(node.outputs[0])],
                 describe(node, graph), node=node.name)
