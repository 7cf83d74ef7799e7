"""conv2d: standard, depthwise (any depth multiplier), pointwise and grouped 2-D convolution.

Inputs: x ``(1, H, W, C_in)``, weight OHWI ``(C_out, kh, kw, C_in / groups)``, bias
``(C_out,)`` (always present; zeros when the source had none).
Attrs: ``stride (sh, sw)``, ``pad (top, left, bottom, right)``, ``groups``,
``dilation`` (must be (1, 1)), ``act`` ('none' | 'relu' | 'relu6').
Depthwise means ``groups == C_in > 1``; output channel ``o`` reads input channel
``o // (C_out / groups)``, as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops._const import private_const
from mcutl.ops._window import out_size, pad_nhwc, trim_after, window_views
from mcutl.ops.base import OpDef, Shape, apply_act, attr_pad, attr_pair, register
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch

    from mcutl.ops.base import LoweringContext


def conv_dsp_scratch_bytes(filter_shape: tuple[int, ...], groups: int) -> int:
    """mcutl_conv2d_s8_dsp_get_buffer_size: two int16 columns of KH * KW * C_in taps and
    per output channel its requantisation and bias (20 B) and two int32 sums; a grouped
    convolution runs the portable kernel: none."""
    c_out, kh, kw, cg = (int(v) for v in filter_shape)
    return 0 if groups != 1 else 2 * kh * kw * cg * 2 + 28 * c_out


def dw_dsp_scratch_bytes(input_shape: tuple[int, ...], filter_shape: tuple[int, ...],
                         output_shape: tuple[int, ...], stride_w: int, pad_left: int,
                         depth_multiplier: int, dilation_w: int = 1) -> int:
    """mcutl_depthwise_conv2d_s8_dsp_get_buffer_size: the weights as int16 pairs, a
    per-channel table (requantisation and bias, 20 B), the int32 sums of an output row,
    KH transposed int16 input rows and a row of zeros (layers it leaves to the portable
    kernel: none)."""
    _, kh, kw, ch = (int(v) for v in filter_shape)
    if depth_multiplier != 1 or dilation_w != 1 or kh > 16:
        return 0
    pairs = (kw + 1) // 2
    need = max((int(output_shape[2]) - 1) * stride_w + 2 * pairs,
               pad_left + int(input_shape[2]))
    cols = (need + 1) & ~1
    return (4 * ch * kh * pairs + 20 * ch + 4 * ch * int(output_shape[2])
            + 2 * (kh * ch * cols + cols))


def conv_kind(node: Node, graph: Graph) -> str:
    """'depthwise' | 'pointwise' | 'grouped' | 'standard' (what kernel the node needs)."""
    c_in = graph.tensors[node.inputs[0]].shape[-1]
    groups = int(node.attrs.get("groups", 1))
    kh, kw = graph.tensors[node.inputs[1]].shape[1:3]
    if groups > 1 and groups == c_in:
        return "depthwise"
    if groups > 1:
        return "grouped"
    if (kh, kw) == (1, 1) and tuple(node.attrs["stride"]) == (1, 1) and not any(
            node.attrs.get("pad", (0, 0, 0, 0))):
        return "pointwise"
    return "standard"


@register
class Conv2d(OpDef):
    name = "conv2d"
    family = "conv"
    num_inputs = (3, 3)
    input_roles = ("act", "weight", "bias")
    accepts_act = True

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        x = graph.tensors[node.inputs[0]].shape
        w = graph.tensors[node.inputs[1]].shape
        groups = int(node.attrs.get("groups", 1))
        if tuple(node.attrs.get("dilation", (1, 1))) != (1, 1):
            raise self.unsupported(node, f"dilation {tuple(node.attrs['dilation'])} "
                                         "(only dilation 1 is supported)")
        if len(x) != 4 or len(w) != 4:
            raise self.unsupported(node, f"needs 4-D NHWC input and OHWI weight, got "
                                         f"{x} and {w}")
        if groups < 1 or x[3] % groups or w[0] % groups or w[3] * groups != x[3]:
            raise self.unsupported(node, f"groups={groups} does not fit input channels "
                                         f"{x[3]} and weight {w}")
        if graph.tensors[node.inputs[2]].shape != (w[0],):
            raise self.unsupported(node, "bias must have shape (C_out,)")
        attr_pair(node, "stride")
        attr_pad(node)

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        x, w = in_shapes[0], in_shapes[1]
        assert x is not None and w is not None
        sh, sw = attr_pair(node, "stride")
        t, left, b, r = attr_pad(node)
        return [(x[0], out_size(x[1], w[1], sh, t, b), out_size(x[2], w[2], sw, left, r), w[0])]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x, w, bias = inputs
        assert x is not None and w is not None and bias is not None
        groups = int(node.attrs.get("groups", 1))
        sh, sw = attr_pair(node, "stride")
        pad = attr_pad(node)
        c_out, kh, kw, cg = w.shape
        og = c_out // groups
        n, h, wd, _ = x.shape
        ho = out_size(h, kh, sh, pad[0], pad[2])
        wo = out_size(wd, kw, sw, pad[1], pad[3])
        xp = pad_nhwc(x.astype(np.float32), pad, 0.0)
        wg = w.astype(np.float32).reshape(groups, og, kh, kw, cg)
        acc = np.zeros((groups, n * ho * wo, og), np.float32)
        for i, j, view in window_views(xp, kh, kw, sh, sw, ho, wo):
            cols = view.reshape(n * ho * wo, groups, cg).transpose(1, 0, 2)
            acc += np.matmul(cols, wg[:, :, i, j, :].transpose(0, 2, 1))
        y = acc.transpose(1, 0, 2).reshape(n, ho, wo, c_out) + bias.astype(np.float32)
        return [apply_act(y, node.attrs.get("act", "none"))]

    def absorb_affine(self, graph: Graph, node: Node, scale: np.ndarray,
                      shift: np.ndarray) -> bool:
        if node.attrs.get("act", "none") != "none":
            return False
        w = private_const(graph, node, 1)
        b = private_const(graph, node, 2)
        assert w.data is not None and b.data is not None
        w.data = (w.data * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
        b.data = (b.data * scale + shift).astype(np.float32)
        return True

    def can_absorb_input_pad(self, graph: Graph, node: Node, tensor: str) -> bool:
        """Conv padding means zeros: a zero pad of input 0 (and only there) folds in."""
        return node.inputs[0] == tensor and tensor not in node.inputs[1:]

    def absorb_input_pad(self, graph: Graph, node: Node, pad: tuple[int, int, int, int],
                         unpadded: Shape) -> None:
        t, left, b, r = (p + q for p, q in zip(pad, attr_pad(node), strict=True))
        kh, kw = graph.tensors[node.inputs[1]].shape[1:3]
        sh, sw = attr_pair(node, "stride")
        node.attrs["pad"] = (t, left, trim_after(unpadded[1], kh, sh, t, b),
                             trim_after(unpadded[2], kw, sw, left, r))

    def band_rows(self, node: Node, graph: Graph, rows: tuple[int, int]
                  ) -> tuple[list[tuple[int, int] | None], dict[str, Any]] | None:
        """Output row o reads input rows o*sh - top + [0, kh): a band's window clipped to
        the map, and the clipped part becomes the band's own top/bottom padding."""
        sh, _ = attr_pair(node, "stride")
        top, left, _, right = attr_pad(node)
        kh = graph.tensors[node.inputs[1]].shape[1]
        h = graph.tensors[node.inputs[0]].shape[1]
        lo, hi = rows[0] * sh - top, (rows[1] - 1) * sh - top + kh
        a, b = max(0, lo), min(h, hi)
        return [(a, b), None, None], {**node.attrs, "pad": (a - lo, left, hi - b, right)}

    def scratch_bytes(self, node: Node, graph: Graph, kernels: str = "portable") -> int:
        """The portable kernels need none; the DSP ones their im2col columns (the C
        kernels' get_buffer_size partners compute the same)."""
        if kernels != "dsp":
            return 0
        x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
        if conv_kind(node, graph) == "depthwise":
            y = graph.tensors[node.outputs[0]]
            _, left, _, _ = attr_pad(node)
            return dw_dsp_scratch_bytes(x.shape, (1, *w.shape[1:3], w.shape[0]), y.shape,
                                        attr_pair(node, "stride")[1], left,
                                        w.shape[0] // x.shape[3])
        return conv_dsp_scratch_bytes(w.shape, int(node.attrs.get("groups", 1)))

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        g = ctx.graph
        x_name, w_name, b_name = node.inputs
        w = g.tensors[w_name]
        sh, sw = attr_pair(node, "stride")
        x, padding = ctx.window_input(node, x_name, w.shape[1], w.shape[2], sh, sw,
                                      attr_pad(node))
        act = node.attrs.get("act", "none").upper()
        opts = {"stride_h": sh, "stride_w": sw, "padding": padding, "fused_activation": act}
        if conv_kind(node, g) == "depthwise":
            assert w.data is not None and w.quant is not None
            c_in = g.tensors[x_name].shape[-1]
            data = np.ascontiguousarray(w.data.transpose(3, 1, 2, 0))  # OHW1 -> 1HWO
            wt = ctx.const(w_name, data, w.quant.scale, w.quant.zero_point, 3)
            ctx.op("DEPTHWISE_CONV_2D", [x, wt, ctx.tensor(b_name)],
                   [ctx.tensor(node.outputs[0])], depth_multiplier=w.shape[0] // c_in, **opts)
            return
        ctx.op("CONV_2D", [x, ctx.tensor(w_name), ctx.tensor(b_name)],
               [ctx.tensor(node.outputs[0])], **opts)

    def int8_kernel(self, node: Node, graph: Graph
                    ) -> tuple[str, fp.ConvParams | fp.DepthwiseConvParams, np.ndarray]:
        """(kind, kernel params, weights as the kernel reads them): shared by ``lower_c``
        and ``reference_int8`` so both use the same integer parameters."""
        from mcutl.ops._ste import qparams, weight_scales

        x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
        y = graph.tensors[node.outputs[0]]
        assert w.data is not None
        s_in, zp_in = qparams(x)
        s_out, zp_out = qparams(y)
        sh, sw = attr_pair(node, "stride")
        top, left, _, _ = attr_pad(node)
        act = node.attrs.get("act", "none").upper()
        c_out = w.shape[0]
        kind = conv_kind(node, graph)
        common = dict(stride=(sh, sw), pad=(top, left), activation=act)
        if kind == "depthwise":
            p: fp.ConvParams | fp.DepthwiseConvParams = fp.depthwise_conv_params(
                s_in, zp_in, weight_scales(w), s_out, zp_out, c_out,
                depth_multiplier=c_out // x.shape[3], **common)
            wdata = np.ascontiguousarray(w.data.transpose(3, 1, 2, 0))  # OHW1 -> 1HWO
        else:
            p = fp.conv_params(s_in, zp_in, weight_scales(w), s_out, zp_out, c_out,
                               groups=int(node.attrs.get("groups", 1)), **common)
            wdata = w.data
        return kind, p, wdata

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        b = graph.tensors[node.inputs[2]].data
        assert b is not None
        kind, p, wdata = self.int8_kernel(node, graph)
        ho, wo = graph.tensors[node.outputs[0]].shape[1:3]
        bias = b.astype(np.int32)
        if kind == "depthwise":
            assert isinstance(p, fp.DepthwiseConvParams)
            return [int8_ref.depthwise_conv2d_s8(p, x, wdata.astype(np.int8), bias, (ho, wo))]
        assert isinstance(p, fp.ConvParams)
        return [int8_ref.conv2d_s8(p, x, wdata.astype(np.int8), bias, (ho, wo))]

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        return True

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        import torch.nn.functional as F

        from mcutl.ops._ste import const_tensor, nchw, nhwc

        x = inputs[0]
        assert x is not None
        w = const_tensor(graph, node.inputs[1], x).permute(0, 3, 1, 2)  # OHWI -> OIHW
        b = const_tensor(graph, node.inputs[2], x)
        t, left, bottom, r = attr_pad(node)
        xp = F.pad(nchw(x), (left, r, t, bottom))
        y = F.conv2d(xp, w, b, attr_pair(node, "stride"), 0, 1,
                     int(node.attrs.get("groups", 1)))
        return nhwc(y)

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, struct_fields

        x, w, b = (graph.tensors[n] for n in node.inputs)
        y = graph.tensors[node.outputs[0]]
        assert w.data is not None and b.data is not None
        sh, _ = attr_pair(node, "stride")
        c_out, kh, kw, cg = w.shape
        base = ctx.unique(node.name)
        kind, p, wdata = self.int8_kernel(node, graph)
        if kind == "depthwise":
            func, ctype = "mcutl_depthwise_conv2d_s8", "mcutl_dw_conv_params_t"
        else:
            func, ctype = "mcutl_conv2d_s8", "mcutl_conv_params_t"
        scratch = self.scratch_bytes(node, graph, ctx.kernels_for(node.name))
        extra = []
        if scratch:  # the DSP variant (same arguments, then its scratch)
            func += "_dsp"
            extra = [ctx.scratch(node.name, scratch)]
        params = ctx.params(f"{base}_params", ctype, struct_fields(p, ctx, base))
        weights = ctx.const_array(f"{base}_weights", wdata.astype(np.int8),
                                  f"{node.name}: {kind} {kh}x{kw} weights")
        bias = ctx.bias_table(node.name, f"{base}_bias", b.data.astype(np.int32))
        ctx.call(func, [params, ctx.dims(x.shape), ctx.act(node.inputs[0]),
                        ctx.dims(wdata.shape), weights, bias, ctx.dims(y.shape),
                        ctx.act(node.outputs[0]), *extra],
                 describe(node, graph, f"{kind} {kh}x{kw}/{sh}"),
                 macs=y.size * kh * kw * cg, node=node.name)

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        from mcutl.ops._lowering import conv_f32_params, weight_scales

        x_name, w_name, _ = node.inputs
        target = grads.write(x_name)
        g_out = self._masked_grad(node, graph, ctx, grads)
        if target is None or g_out is None:
            return
        x, w, y = graph.tensors[x_name], graph.tensors[w_name], graph.tensors[node.outputs[0]]
        assert w.data is not None
        sh, sw = attr_pair(node, "stride")
        top, left, _, _ = attr_pad(node)
        groups = int(node.attrs.get("groups", 1))
        base = ctx.unique(node.name)
        if conv_kind(node, graph) == "depthwise":
            wdata = np.ascontiguousarray(w.data.transpose(3, 1, 2, 0))
            func = "mcutl_depthwise_conv2d_grad_input_s8w_f32"
        else:
            wdata = w.data
            func = "mcutl_conv2d_grad_input_s8w_f32"
        weights = ctx.const_array(f"{base}_weights", wdata.astype(np.int8))
        scales = ctx.const_array(f"{base}_wscale", weight_scales(w))
        p = conv_f32_params(ctx, base, (sh, sw), (top, left), groups)
        ctx.call(func, [p, ctx.f32_dims(y.shape), g_out, ctx.f32_dims(wdata.shape), weights,
                        scales, ctx.f32_dims(x.shape), *target],
                 f"{node.name}: input gradient through the frozen int8 weights",
                 macs=y.size * w.shape[1] * w.shape[2] * w.shape[3])
