"""Pooling: avgpool2d, maxpool2d and global_avgpool.

avgpool2d / maxpool2d attrs: ``kernel (kh, kw)``, ``stride (sh, sw)``,
``pad (top, left, bottom, right)``. Padded cells are ignored (TFLite semantics):
an average divides by the number of real cells under the window.
global_avgpool: mean over H and W, output ``(1, 1, 1, C)``.
In int8 all three keep the input's scale and zero point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops._window import out_size, pad_nhwc, window_views
from mcutl.ops.base import OpDef, QuantRule, Shape, attr_pad, attr_pair, register
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


class _Pool2d(OpDef):
    family = "pool"
    quant_rule = QuantRule.SAME_AS_INPUT
    tflite_op = ""
    c_func = ""

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        if len(graph.tensors[node.inputs[0]].shape) != 4:
            raise self.unsupported(node, "needs a 4-D NHWC input")
        kh, kw = attr_pair(node, "kernel")
        attr_pair(node, "stride")
        t, left, b, r = attr_pad(node)
        if max(t, b) >= kh or max(left, r) >= kw:
            raise self.unsupported(node, "padding must be smaller than the kernel")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        x = in_shapes[0]
        assert x is not None
        kh, kw = attr_pair(node, "kernel")
        sh, sw = attr_pair(node, "stride")
        t, left, b, r = attr_pad(node)
        return [(x[0], out_size(x[1], kh, sh, t, b), out_size(x[2], kw, sw, left, r), x[3])]

    def _windows(self, node: Node, x: np.ndarray, fill: float
                 ) -> Iterator[tuple[int, int, np.ndarray]]:
        kh, kw = attr_pair(node, "kernel")
        sh, sw = attr_pair(node, "stride")
        pad = attr_pad(node)
        _, ho, wo, _ = self.infer_shape(node, [x.shape])[0]
        xp = pad_nhwc(x, pad, fill)
        return window_views(xp, kh, kw, sh, sw, ho, wo)

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        kh, kw = attr_pair(node, "kernel")
        sh, sw = attr_pair(node, "stride")
        # Padding that is neither SAME nor VALID cannot become a zero-filled PAD op:
        # zeros would win a max / be counted in an average.
        x, padding = ctx.window_input(node, node.inputs[0], kh, kw, sh, sw, attr_pad(node),
                                      pad_value=None)
        ctx.op(self.tflite_op, [x], [ctx.tensor(node.outputs[0])], stride_h=sh, stride_w=sw,
               filter_h=kh, filter_w=kw, padding=padding, fused_activation="NONE")

    def int8_kernel(self, node: Node, graph: Graph) -> fp.PoolParams:
        """The kernel params (shared by ``lower_c`` and ``reference_int8``)."""
        kh, kw = attr_pair(node, "kernel")
        sh, sw = attr_pair(node, "stride")
        top, left, _, _ = attr_pad(node)
        return fp.pool_params((kh, kw), stride=(sh, sw), pad=(top, left))

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        hw = graph.tensors[node.outputs[0]].shape[1:3]
        fn = int8_ref.max_pool_s8 if self.name == "maxpool2d" else int8_ref.avg_pool_s8
        return [fn(self.int8_kernel(node, graph), x, (int(hw[0]), int(hw[1])))]

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, struct_fields

        x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
        kh, kw = attr_pair(node, "kernel")
        sh, _ = attr_pair(node, "stride")
        p = self.int8_kernel(node, graph)
        base = ctx.unique(node.name)
        params = ctx.params(f"{base}_params", "mcutl_pool_params_t", struct_fields(p, ctx, base))
        ctx.call(self.c_func, [params, ctx.dims(x.shape), ctx.act(node.inputs[0]),
                               ctx.dims(y.shape), ctx.act(node.outputs[0])],
                 describe(node, graph, f"{kh}x{kw}/{sh}"), node=node.name)

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:

        kh, kw = attr_pair(node, "kernel")
        if self.name != "avgpool2d" or attr_pair(node, "stride") != (kh, kw) or any(
                attr_pad(node)):
            super().lower_c_backward(node, graph, ctx, grads)
            return
        target = grads.write(node.inputs[0])
        g_out = grads.out(node.outputs[0])
        if target is None or g_out is None:
            return
        x = graph.tensors[node.inputs[0]]
        ctx.call("mcutl_avg_pool_grad_input_f32",
                 [ctx.f32_dims(x.shape), str(kh), str(kw), g_out, *target],
                 f"{node.name}: average pool backward")



@register
class MaxPool2d(_Pool2d):
    name = "maxpool2d"
    tflite_op = "MAX_POOL_2D"
    c_func = "mcutl_max_pool_s8"

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        y = None
        for _, _, v in self._windows(node, x, -np.inf):
            y = v.copy() if y is None else np.maximum(y, v)
        assert y is not None
        return [y.astype(np.float32)]


@register
class AvgPool2d(_Pool2d):
    name = "avgpool2d"
    tflite_op = "AVERAGE_POOL_2D"
    c_func = "mcutl_avg_pool_s8"

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        total = sum(v for _, _, v in self._windows(node, x, 0.0))
        ones = np.ones((1,) + x.shape[1:3] + (1,), np.float32)
        count = sum(v for _, _, v in self._windows(node, ones, 0.0))
        return [(total / count).astype(np.float32)]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        from mcutl.ops._ste import pool_sum_count

        x = inputs[0]
        assert x is not None
        sums, count = pool_sum_count(x, attr_pair(node, "kernel"), attr_pair(node, "stride"),
                                     attr_pad(node))
        return sums / count


@register
class GlobalAvgPool(OpDef):
    name = "global_avgpool"
    family = "pool"
    quant_rule = QuantRule.SAME_AS_INPUT

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        if len(graph.tensors[node.inputs[0]].shape) != 4:
            raise self.unsupported(node, "needs a 4-D NHWC input")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        x = in_shapes[0]
        assert x is not None
        return [(x[0], 1, 1, x[3])]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)]

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        y = int8_ref.global_avg_pool_s8(x, -128, 127)  # the bounds lower_c passes
        return [y.reshape(graph.tensors[node.outputs[0]].shape)]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        x = inputs[0]
        assert x is not None
        return x.mean(dim=(1, 2), keepdim=True)

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        _, h, w, _ = ctx.graph.tensors[node.inputs[0]].shape
        ctx.op("AVERAGE_POOL_2D", [ctx.tensor(node.inputs[0])], [ctx.tensor(node.outputs[0])],
               stride_h=1, stride_w=1, filter_h=h, filter_w=w, padding="VALID",
               fused_activation="NONE")

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe

        x = graph.tensors[node.inputs[0]]
        ctx.call("mcutl_global_avg_pool_s8",
                 [ctx.dims(x.shape), ctx.act(node.inputs[0]), "-128", "127",
                  ctx.act(node.outputs[0])],
                 describe(node, graph), node=node.name)

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:

        target = grads.write(node.inputs[0])
        g_out = grads.out(node.outputs[0])
        if target is None or g_out is None:
            return
        x = graph.tensors[node.inputs[0]]
        ctx.call("mcutl_global_avg_pool_grad_input_f32",
                 [ctx.f32_dims(x.shape), g_out, *target],
                 f"{node.name}: global average pool backward")
