"""relu and relu6 as standalone nodes.

``simplify`` fuses them into the producing node's ``act`` attr when that op
accepts one and nobody else reads the producer's output; what remains is a
standalone int8 op whose output keeps its input's params (a clamp in the int8
domain): tflite-runtime requantises RELU/RELU6 in float32, TFLite Micro in double
(and its RELU6 not at all), so only equal params make both oracles agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import OpDef, QuantRule, Shape, apply_act, get_op, register
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


class _Activation(OpDef):
    family = "activation"
    tflite_op = ""
    quant_rule = QuantRule.SAME_AS_INPUT

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

    def int8_kernel(self, node: Node, graph: Graph) -> fp.ReluParams:
        """The kernel params (shared by ``lower_c``, ``reference_int8`` and ``ste_mask``)."""
        from mcutl.ops._ste import qparams

        x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
        return fp.relu_params(self.tflite_op, *qparams(x), *qparams(y))

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        return [int8_ref.relu_s8(self.int8_kernel(node, graph), x)]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Identity: the requantisation is straight-through, the clamp is ``ste_mask``."""
        x = inputs[0]
        assert x is not None
        return x

    def ste_mask(self, node: Node, graph: Graph, out_q: np.ndarray) -> np.ndarray | None:
        from mcutl.ops._ste import clamp_mask

        p = self.int8_kernel(node, graph)
        return clamp_mask(out_q, self.name, p.act_min, p.act_max)

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, struct_fields

        y = graph.tensors[node.outputs[0]]
        p = self.int8_kernel(node, graph)
        base = ctx.unique(node.name)
        params = ctx.params(f"{base}_params", "mcutl_relu_params_t", struct_fields(p, ctx, base))
        ctx.call("mcutl_relu_s8", [params, ctx.act(node.inputs[0]), ctx.act(node.outputs[0]),
                                   str(y.size)],
                 describe(node, graph), node=node.name)

    def activation_of(self, node: Node) -> str:
        return self.name

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        target = grads.write(node.inputs[0])
        g_out = grads.out(node.outputs[0])
        mask = grads.masks.get(node.name)
        if target is None or g_out is None or mask is None:
            return
        n = graph.tensors[node.outputs[0]].size
        ctx.call("mcutl_act_grad_input_f32", [g_out, mask, str(n), *target],
                 f"{node.name}: {self.name} backward")



@register
class Relu(_Activation):
    name = "relu"
    tflite_op = "RELU"


@register
class Relu6(_Activation):
    name = "relu6"
    tflite_op = "RELU6"
