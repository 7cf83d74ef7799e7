"""Float layers of trainable graphs: average pool, conv (grouped / depthwise, optional
bias), group norm, per-channel scale+shift and shift, ReLU, ReLU6, global average pool,
reshape, nearest resize. NHWC, batch 1; conv weights OHWI.

Attrs: avgpool ``k`` (kernel = stride, no padding, floor); conv ``k``, ``stride`` (1),
``pad`` (k // 2 each side; the C kernel takes top and left, the output shape implies the
rest; ``pad4`` (top, left, bottom, right) when they differ), ``groups``; groupnorm
``groups``, ``eps``; reshape ``shape``; resize ``size`` (H, W): nearest, src =
floor(dst * in / out). ``k`` / ``pad`` / ``stride`` are an int (same on both axes) or an
(h, w) pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.trainable import TNode
from mcutl.ops._lowering import conv_f32_params
from mcutl.ops.f32.base import FloatOp, GradTarget, Shape, numel, pair, register

if TYPE_CHECKING:
    import torch


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def nearest_indices(n_in: int, n_out: int) -> torch.Tensor:
    """Nearest-resize source indices ``floor(dst * in / out)`` in exact integer arithmetic."""
    import torch

    return (torch.arange(n_out, dtype=torch.int64) * n_in) // n_out


@register
class AvgPool(FloatOp):
    name = "avgpool"

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        x = in_shapes[0]
        kh, kw = pair(node.attrs["k"])
        return (x[0], x[1] // kh, x[2] // kw, x[3])

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        k = pair(node.attrs["k"])
        return _nhwc(F.avg_pool2d(_nchw(inputs[0]), k, k))

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        kh, kw = pair(node.attrs["k"])
        ctx.call("mcutl_avg_pool_f32", [din, ins[0], str(kh), str(kw), out],
                 f"{node.name}: avgpool {kh}x{kw}")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        din = ctx.f32_dims(in_shapes[0])
        ctx.f32_dims(out_shape)
        if g_ins[0]:
            kh, kw = pair(node.attrs["k"])
            ctx.call("mcutl_avg_pool_grad_input_f32", [din, str(kh), str(kw), g_out, *g_ins[0]],
                     f"{node.name}: avgpool backward")


@register
class Conv(FloatOp):
    name = "conv"

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        x = in_shapes[0]
        w = node.params["weight"].shape
        kh, kw = pair(node.attrs["k"])
        sh, sw = pair(node.attrs.get("stride", 1))
        ph, pw = pair(node.attrs.get("pad", (kh // 2, kw // 2)))
        groups = int(node.attrs.get("groups", 1))
        if tuple(w[1:3]) != (kh, kw) or w[3] * groups != x[3] or w[0] % groups:
            raise self.fail(node, f"weight {w} does not fit k {(kh, kw)}, groups {groups} "
                                  f"and input {x}")
        return (x[0], (x[1] + 2 * ph - kh) // sh + 1, (x[2] + 2 * pw - kw) // sw + 1, w[0])

    def _geometry(self, node: TNode) -> tuple[tuple[int, int], tuple[int, int],
                                              tuple[int, int], int]:
        k = pair(node.attrs["k"])
        return (k, pair(node.attrs.get("stride", 1)),
                pair(node.attrs.get("pad", (k[0] // 2, k[1] // 2))),
                int(node.attrs.get("groups", 1)))

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        _, stride, pad, groups = self._geometry(node)
        w = params["weight"].permute(0, 3, 1, 2)  # OHWI -> OIHW
        x = _nchw(inputs[0])
        if "pad4" in node.attrs:  # (top, left, bottom, right), e.g. TF "same"
            t, left, b, r = (int(v) for v in node.attrs["pad4"])
            x, pad = F.pad(x, (left, r, t, b)), (0, 0)
        y = _nhwc(F.conv2d(x, w, None, stride, pad, 1, groups))
        if "bias" in params:  # added after the conv, as the C kernel adds it
            y = y + params["bias"]
        return y

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        (kh, kw), stride, pad, groups = self._geometry(node)
        weight = node.params["weight"]
        w, _ = ctx.param(f"{node.name}.weight", weight)
        b = "NULL"
        if "bias" in node.params:
            b, _ = ctx.param(f"{node.name}.bias", node.params["bias"])
        p = conv_f32_params(ctx, node.name, stride, pad, groups)
        ctx.call("mcutl_conv2d_f32",
                 [p, din, ins[0], ctx.f32_dims(weight.shape), w, b,
                  ctx.f32_dims(out_shape), out],
                 f"{node.name}: conv {kh}x{kw} groups {groups}",
                 macs=numel(out_shape) * kh * kw * in_shapes[0][-1] // groups)
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        din = ctx.f32_dims(in_shapes[0])
        dout = ctx.f32_dims(out_shape)
        _, stride, pad, groups = self._geometry(node)
        weight = node.params["weight"]
        w, gw = ctx.param(f"{node.name}.weight", weight)
        p = conv_f32_params(ctx, node.name, stride, pad, groups)
        wd = ctx.f32_dims(weight.shape)
        macs = numel(out_shape) * int(weight.shape[1] * weight.shape[2] * weight.shape[3])
        ctx.call("mcutl_conv2d_grad_weight_f32", [p, din, ins[0], dout, g_out, wd, gw],
                 f"{node.name}: conv weight gradient (accumulates)", macs=macs)
        if "bias" in node.params:
            _, gb = ctx.param(f"{node.name}.bias", node.params["bias"])
            ctx.call("mcutl_conv2d_grad_bias_f32", [dout, g_out, gb],
                     f"{node.name}: conv bias gradient (accumulates)")
        if g_ins[0]:
            ctx.call("mcutl_conv2d_grad_input_f32", [p, dout, g_out, wd, w, din, *g_ins[0]],
                     f"{node.name}: conv input gradient", macs=macs)


@register
class GroupNorm(FloatOp):
    name = "groupnorm"

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        return _nhwc(F.group_norm(_nchw(inputs[0]), int(node.attrs["groups"]),
                                  params["gamma"], params["beta"], float(node.attrs["eps"])))

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        n_in = numel(in_shapes[0])
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        g, _ = ctx.param(f"{node.name}.gamma", node.params["gamma"])
        b, _ = ctx.param(f"{node.name}.beta", node.params["beta"])
        groups = int(node.attrs["groups"])
        ctx.call("mcutl_group_norm_f32",
                 [din, ins[0], str(groups), f"{float(node.attrs.get('eps', 1e-5))!r}f", g, b,
                  out, ctx.f32(f"{node.name}_xhat", n_in), ctx.f32(f"{node.name}_mean", groups),
                  ctx.f32(f"{node.name}_rstd", groups)],
                 f"{node.name}: group norm, {groups} groups")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        n_in = numel(in_shapes[0])
        din = ctx.f32_dims(in_shapes[0])
        ctx.f32_dims(out_shape)
        g, gg = ctx.param(f"{node.name}.gamma", node.params["gamma"])
        _, gb = ctx.param(f"{node.name}.beta", node.params["beta"])
        groups = int(node.attrs["groups"])
        gi = g_ins[0] or (ctx.f32(f"{node.name}_gin_unused", n_in), "0")
        ctx.call("mcutl_group_norm_grad_f32",
                 [din, str(groups), ctx.f32(f"{node.name}_xhat", n_in),
                  ctx.f32(f"{node.name}_rstd", groups), g, g_out, *gi, gg, gb],
                 f"{node.name}: group norm backward")


@register
class ScaleShift(FloatOp):
    name = "scale_shift"

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0] * params["gamma"] + params["beta"]

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        g, _ = ctx.param(f"{node.name}.gamma", node.params["gamma"])
        b, _ = ctx.param(f"{node.name}.beta", node.params["beta"])
        ctx.call("mcutl_scale_shift_f32", [din, ins[0], g, b, out], f"{node.name}: scale+shift")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        n_in = numel(in_shapes[0])
        din = ctx.f32_dims(in_shapes[0])
        ctx.f32_dims(out_shape)
        g, gg = ctx.param(f"{node.name}.gamma", node.params["gamma"])
        _, gb = ctx.param(f"{node.name}.beta", node.params["beta"])
        gi = g_ins[0] or (ctx.f32(f"{node.name}_gin_unused", n_in), "0")
        ctx.call("mcutl_scale_shift_grad_f32", [din, ins[0], g, g_out, *gi, gg, gb],
                 f"{node.name}: scale+shift backward")


@register
class Relu(FloatOp):
    name = "relu"
    kernel = "mcutl_relu_f32"

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.relu(inputs[0])

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        n_in = numel(in_shapes[0])
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        ctx.f32_dims(in_shapes[0])
        ctx.call(self.kernel, [ins[0], str(n_in), out, ctx.mask(f"{node.name}_mask", n_in)],
                 f"{node.name}: {self.name} (mask saved)")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        n_in = numel(in_shapes[0])
        ctx.f32_dims(in_shapes[0])
        ctx.f32_dims(out_shape)
        if g_ins[0]:
            ctx.call("mcutl_act_grad_input_f32",
                     [g_out, ctx.mask(f"{node.name}_mask", n_in), str(n_in), *g_ins[0]],
                     f"{node.name}: {self.name} backward")


@register
class Relu6(Relu):
    name = "relu6"
    kernel = "mcutl_relu6_f32"

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.relu6(inputs[0])


@register
class GlobalAvgPool(FloatOp):
    """Mean over H and W: (1, H, W, C) -> (1, 1, 1, C)."""

    name = "global_avgpool"

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0].mean(dim=(1, 2), keepdim=True)

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        ctx.call("mcutl_global_avg_pool_f32", [ctx.f32_dims(in_shapes[0]), ins[0], out],
                 f"{node.name}: global average pool")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        if g_ins[0]:
            ctx.call("mcutl_global_avg_pool_grad_input_f32",
                     [ctx.f32_dims(in_shapes[0]), g_out, *g_ins[0]],
                     f"{node.name}: global average pool backward")


@register
class Reshape(FloatOp):
    """A view: the same buffer with another shape (attr ``shape``)."""

    name = "reshape"
    grad_alias = (0,)

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0].reshape(tuple(int(v) for v in node.attrs["shape"]))

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        return ins[0]

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        return None


@register
class Resize(FloatOp):
    name = "resize"

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        h, w = (int(v) for v in node.attrs["size"])
        return (in_shapes[0][0], h, w, in_shapes[0][3])

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        h, w = (int(v) for v in node.attrs["size"])
        return x.index_select(1, nearest_indices(x.shape[1], h)).index_select(
            2, nearest_indices(x.shape[2], w))

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        h, w = (int(v) for v in node.attrs["size"])
        ctx.call("mcutl_resize_nearest_f32", [din, ins[0], str(h), str(w), out],
                 f"{node.name}: nearest resize to {h}x{w}")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        din = ctx.f32_dims(in_shapes[0])
        ctx.f32_dims(out_shape)
        if g_ins[0]:
            h, w = (int(v) for v in node.attrs["size"])
            ctx.call("mcutl_resize_nearest_grad_input_f32",
                     [din, str(h), str(w), g_out, *g_ins[0]],
                     f"{node.name}: nearest resize backward")


@register
class Shift(FloatOp):
    """``x + beta`` per channel (a norm's shift, BatchNorm being folded into the frozen
    conv); the input's gradient is the output's (one buffer), beta's is its sum."""

    name = "shift"
    grad_alias = (0,)

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[0] + params["beta"]

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        c = int(out_shape[-1])
        out = ctx.f32(f"{node.name}_out", numel(out_shape))
        din = ctx.f32_dims(in_shapes[0])
        ones = ctx.const_array(f"ones_{c}", np.ones(c, np.float32), "a scale of 1")
        b, _ = ctx.param(f"{node.name}.beta", node.params["beta"])
        ctx.call("mcutl_scale_shift_f32", [din, ins[0], ones, b, out], f"{node.name}: shift")
        return str(out)

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        _, gb = ctx.param(f"{node.name}.beta", node.params["beta"])
        ctx.call("mcutl_conv2d_grad_bias_f32", [ctx.f32_dims(out_shape), g_out, gb],
                 f"{node.name}: shift gradient (accumulates)")
