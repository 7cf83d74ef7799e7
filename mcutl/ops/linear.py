"""linear: ``y = x @ W.T + b`` on ``(1, in)`` features, weight ``(out, in)``, bias ``(out,)``.

Bias is always present (zeros when the source had none); attr ``act``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops._const import private_const
from mcutl.ops.base import OpDef, Shape, apply_act, register
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


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

    def int8_kernel(self, node: Node, graph: Graph) -> fp.FullyConnectedParams:
        """The kernel params (shared by ``lower_c`` and ``reference_int8``)."""
        from mcutl.ops._ste import qparams, weight_scales

        x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
        y = graph.tensors[node.outputs[0]]
        s_in, zp_in = qparams(x)
        s_out, zp_out = qparams(y)
        return fp.fully_connected_params(s_in, zp_in, weight_scales(w), s_out, zp_out,
                                         w.shape[0],
                                         activation=node.attrs.get("act", "none").upper())

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        w, b = graph.tensors[node.inputs[1]].data, graph.tensors[node.inputs[2]].data
        assert w is not None and b is not None
        y = int8_ref.fully_connected_s8(self.int8_kernel(node, graph), x, w.astype(np.int8),
                                        b.astype(np.int32))
        return [y.reshape(graph.tensors[node.outputs[0]].shape)]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        from mcutl.ops._ste import const_tensor

        x = inputs[0]
        assert x is not None
        w = const_tensor(graph, node.inputs[1], x)
        b = const_tensor(graph, node.inputs[2], x)
        return x @ w.T + b

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, struct_fields

        w, b = (graph.tensors[n] for n in node.inputs[1:])
        assert w.data is not None and b.data is not None
        out_f, in_f = w.shape
        base = ctx.unique(node.name)
        p = self.int8_kernel(node, graph)
        params = ctx.params(f"{base}_params", "mcutl_fc_params_t", struct_fields(p, ctx, base))
        weights = ctx.const_array(f"{base}_weights", w.data.astype(np.int8),
                                  f"{node.name}: linear {in_f} -> {out_f} weights")
        bias = ctx.const_array(f"{base}_bias", b.data.astype(np.int32))
        ctx.call("mcutl_fully_connected_s8",
                 [params, "1", str(in_f), ctx.act(node.inputs[0]), str(out_f), weights, bias,
                  ctx.act(node.outputs[0])],
                 describe(node, graph), macs=in_f * out_f, node=node.name)

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        from mcutl.ops._lowering import weight_scales

        x_name, w_name, _ = node.inputs
        target = grads.write(x_name)
        g_out = self._masked_grad(node, graph, ctx, grads)
        if target is None or g_out is None:
            return
        w = graph.tensors[w_name]
        assert w.data is not None
        out_f, in_f = w.shape
        base = ctx.unique(node.name)
        weights = ctx.const_array(f"{base}_weights", w.data.astype(np.int8))
        scales = ctx.const_array(f"{base}_wscale", weight_scales(w))
        ctx.call("mcutl_linear_grad_input_s8w_f32",
                 ["1", str(in_f), str(out_f), weights, scales, g_out, *target],
                 f"{node.name}: input gradient through the frozen int8 weights",
                 macs=in_f * out_f)
