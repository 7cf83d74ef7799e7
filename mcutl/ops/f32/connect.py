"""Where the float trainable graph meets the frozen int8 backbone, and the head.

- ``dequantize``: input 0 is a backbone int8 tensor (scale s, zero point z); output
  ``float32(s) * (q - z)``. Its gradient is the backbone tensor's (straight through).
- ``quantize``: its output is a backbone int8 tensor that it overwrites, TFLite
  QUANTIZE (x / s in float32, ties away from zero, + z, saturated); the backbone
  continues on it. Straight-through backward. A PROBE point for `verify`.
- ``add``: ``a + b``, written in place into ``a``'s buffer unless attr ``inplace`` is
  False; both inputs share the output's gradient.
- ``linear``: ``x @ W.T + b`` on a (1, C) vector; params weight (K, C), bias (K,).

Attrs: ``comment`` (dequantize / add / quantize) is the generated C's comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcutl.ir.trainable import TNode
from mcutl.ops.f32.base import FloatOp, GradTarget, Shape, numel, register

if TYPE_CHECKING:
    import torch


@register
class Dequantize(FloatOp):
    name = "dequantize"
    grad_alias = (0,)
    reads_backbone = True

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0]  # the reference hands over the dequantised value itself

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(node.output, numel(out_shape))
        s, zp = ctx.qparams(node.inputs[0])
        ctx.call("mcutl_dequantize_s8_f32",
                 [ins[0], str(numel(out_shape)), f"{s!r}f", str(zp), out],
                 str(node.attrs["comment"]))
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None  # straight through: the backbone tensor's gradient buffer is g_out


@register
class DequantizeAvgPool(FloatOp):
    """``dequantize`` then ``avgpool`` (attr ``k``) in one kernel, bit for bit the same,
    without the float copy of the whole tensor (the step compiler fuses the pair when the
    dequantised value feeds only the pool and needs no gradient)."""

    name = "dequantize_avgpool"
    reads_backbone = True

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        from mcutl.ops.f32.base import pair

        k = pair(node.attrs["k"])
        return F.avg_pool2d(inputs[0].permute(0, 3, 1, 2), k, k).permute(0, 2, 3, 1)

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        from mcutl.ops.f32.base import pair

        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        s, zp = ctx.qparams(node.inputs[0])
        kh, kw = pair(node.attrs["k"])
        ctx.call("mcutl_dequantize_avg_pool_s8_f32",
                 [ctx.f32_dims(in_shapes[0]), ins[0], str(kh), str(kw), f"{s!r}f", str(zp),
                  out], f"{node.name}: avgpool {kh}x{kw} of the dequantised {node.inputs[0]} "
                        "(no float copy of it)")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None  # fused only where the backbone tensor needs no gradient


@register
class Quantize(FloatOp):
    name = "quantize"
    grad_alias = (0,)
    writes_backbone = True

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0]  # the reference rounds (and takes the device's value) itself

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        n = numel(out_shape)
        s, zp = ctx.qparams(node.output)
        ctx.call("mcutl_quantize_f32_s8", [ins[0], str(n), f"{s!r}f", str(zp),
                                           ctx.act(node.output)], str(node.attrs["comment"]))
        ctx.probe(node.output, ctx.act(node.output), n)
        return str(ctx.act(node.output))

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None  # straight through


@register
class Add(FloatOp):
    name = "add"
    grad_alias = (0, 1)

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0] + inputs[1]

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        if tuple(in_shapes[0]) != tuple(in_shapes[1]):
            raise self.fail(node, f"adds {in_shapes[0]} and {in_shapes[1]}")
        out = ins[0] if node.attrs.get("inplace", True) else ctx.f32(
            f"{node.name}_out", numel(out_shape))
        ctx.call("mcutl_add_f32", [ins[0], ins[1], str(numel(out_shape)), out],
                 str(node.attrs.get("comment", f"{node.name}: add")))
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None  # both inputs share the output's gradient buffer


@register
class Int8Bias(FloatOp):
    """The bias of a frozen int8 conv (attr ``tensor``: its output) trained in float (``bias``,
    real units): TinyTL's bias-only training. Its gradient is the channel sum of the
    conv's output gradient after the activation mask."""

    name = "int8_bias"
    backbone_param = True

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        return tuple(node.params["bias"].shape)

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["bias"]  # the reference substitutes it into the int8 run

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        return ""  # the conv reads the RAM table ctx.bias_table gave it

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None

    def lower_grad(self, node: TNode, ctx: Any, out_shape: Shape, g_masked: str) -> None:
        """After the frozen node's backward masked its output gradient in place."""
        _, gb = ctx.param(f"{node.name}.bias", node.params["bias"])
        ctx.call("mcutl_conv2d_grad_bias_f32", [ctx.f32_dims(out_shape), g_masked, gb],
                 f"{node.name}: gradient of the bias of {node.attrs['tensor']}'s conv "
                 "(accumulates)")


@register
class Linear(FloatOp):
    name = "linear"

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        w = node.params["weight"].shape
        if len(in_shapes[0]) != 2 or in_shapes[0][1] != w[1]:
            raise self.fail(node, f"input {in_shapes[0]} does not fit weight {w}")
        return (1, int(w[0]))

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0].reshape(1, -1) @ params["weight"].T + params["bias"]

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        c, k = int(in_shapes[0][1]), int(out_shape[1])
        out = ctx.f32(node.output, k)
        w, _ = ctx.param(f"{node.name}.weight", node.params["weight"])
        b, _ = ctx.param(f"{node.name}.bias", node.params["bias"])
        ctx.call("mcutl_linear_f32", ["1", str(c), ins[0], str(k), w, b, out],
                 f"{node.name}: linear {c} -> {k}", macs=c * k)
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        c, k = int(in_shapes[0][1]), int(out_shape[1])
        w, gw = ctx.param(f"{node.name}.weight", node.params["weight"])
        _, gb = ctx.param(f"{node.name}.bias", node.params["bias"])
        ctx.call("mcutl_linear_grad_weight_f32", ["1", str(c), ins[0], str(k), g_out, gw],
                 f"{node.name}: weight gradient (accumulates)", macs=c * k)
        ctx.call("mcutl_linear_grad_bias_f32", ["1", str(k), g_out, gb],
                 f"{node.name}: bias gradient (accumulates)")
        if g_ins[0]:
            ctx.call("mcutl_linear_grad_input_f32", ["1", str(c), str(k), w, g_out, *g_ins[0]],
                     f"{node.name}: gradient of the features", macs=c * k)
