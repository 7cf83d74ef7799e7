"""add: element-wise sum of two activations of the same shape, with a fused ``act``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import OpDef, Shape, apply_act, register
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


@register
class Add(OpDef):
    name = "add"
    family = "add"
    num_inputs = (2, 2)
    input_roles = ("act", "act")
    accepts_act = True

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        a, b = (graph.tensors[i].shape for i in node.inputs)
        if a != b:
            raise self.unsupported(node, f"operand shapes differ ({a} vs {b}); "
                                         "broadcasting is not supported")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        assert in_shapes[0] is not None
        return [in_shapes[0]]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        a, b = inputs
        assert a is not None and b is not None
        return [apply_act(a + b, node.attrs.get("act", "none"))]

    def band_rows(self, node: Node, graph: Graph, rows: tuple[int, int]
                  ) -> tuple[list[tuple[int, int] | None], dict[str, Any]] | None:
        """Elementwise: output rows [a, b) read the same rows of both operands."""
        if len(graph.tensors[node.outputs[0]].shape) != 4:
            return None
        return [rows, rows], dict(node.attrs)

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        ctx.op("ADD", [ctx.tensor(i) for i in node.inputs], [ctx.tensor(node.outputs[0])],
               fused_activation=node.attrs.get("act", "none").upper())

    def int8_kernel(self, node: Node, graph: Graph) -> fp.AddParams:
        """The kernel params (shared by ``lower_c`` and ``reference_int8``)."""
        from mcutl.ops._ste import qparams

        a, b = (graph.tensors[n] for n in node.inputs)
        y = graph.tensors[node.outputs[0]]
        return fp.add_params(*qparams(a), *qparams(b), *qparams(y),
                             activation=node.attrs.get("act", "none").upper())

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        a, b = inputs
        assert a is not None and b is not None
        return [int8_ref.add_s8(self.int8_kernel(node, graph), a, b)]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        a, b = inputs
        assert a is not None and b is not None
        return a + b

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, struct_fields

        y = graph.tensors[node.outputs[0]]
        p = self.int8_kernel(node, graph)
        base = ctx.unique(node.name)
        params = ctx.params(f"{base}_params", "mcutl_add_params_t", struct_fields(p, ctx, base))
        # the DSP kernel set's variant takes the same arguments
        ctx.call("mcutl_add_s8_dsp" if ctx.kernels == "dsp" else "mcutl_add_s8",
                 [params, ctx.act(node.inputs[0]), ctx.act(node.inputs[1]),
                  ctx.act(node.outputs[0]), str(y.size)],
                 describe(node, graph), node=node.name)

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        g_out = self._masked_grad(node, graph, ctx, grads)
        if g_out is None:
            return
        n = graph.tensors[node.outputs[0]].size
        for name in node.inputs:
            target = grads.write(name)
            if target is None:
                continue
            buf, acc = target
            func = "mcutl_axpy_f32" if acc == "1" else "mcutl_copy_f32"
            args = [str(n), "1.0f", g_out, buf] if acc == "1" else [g_out, str(n), buf]
            ctx.call(func, args, f"{node.name}: residual add passes the gradient to {name}")
