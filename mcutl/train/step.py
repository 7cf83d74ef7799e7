"""The training step of a TrainableModel as one straight-line program of kernel calls.

Forward: module 0 on the dequantised input; the int8 backbone node by node (each
op's `lower_c`); at connector i the backbone's int8 output is dequantised, the
module output added (m_i), and the sum requantised in place for the rest of the
backbone; module i + 1 reads m_i; the head reads the dequantised features.
Nodes through which a gradient will flow record a 1-bit mask of their fused
activation from their int8 output.

Backward (reverse order): softmax cross-entropy, head, then the frozen backbone
from its output down to connector 0 (each op's `lower_c_backward`: int8 weights
from flash, masks, straight-through requantisation), the modules in reverse (their
weight gradients accumulate into the static `mcutl_grads`). At connector i the
gradient of m_i is complete (backbone consumers + module i + 1) and is both the
gradient of module i's output and of the backbone tensor before the add.

The optimizer (SGD with momentum, or Adam) runs over the whole parameter block
when the host says a mini-batch is complete (gradient accumulation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.methods.model import SideLayer, SideModule, TrainableModel
from mcutl.methods.repnet import as_pair
from mcutl.ops._lowering import conv_f32_params, qparams
from mcutl.ops.base import get_op
from mcutl.train.context import TrainContext


class TrainCompileError(ValueError):
    """The model cannot be trained as compiled (the message names the node and the fix)."""


@dataclass
class GradState:
    """Float gradient buffers of backbone activations during backward emission."""

    ctx: TrainContext
    graph: Graph
    buffers: dict[str, str] = field(default_factory=dict)  # tensor -> f32 symbol
    written: set[str] = field(default_factory=set)
    masks: dict[str, str] = field(default_factory=dict)  # node name -> mask symbol
    needed: set[str] = field(default_factory=set)  # tensors whose gradient is wanted

    def _sym(self, tensor: str) -> str:
        if tensor not in self.buffers:
            n = self.graph.tensors[tensor].size
            self.buffers[tensor] = self.ctx.f32(f"g_{tensor}", n)
        return self.buffers[tensor]

    def out(self, tensor: str) -> str | None:
        """The gradient of an activation, or None if nothing flows into it."""
        return self.buffers[tensor] if tensor in self.written else None

    def write(self, tensor: str) -> tuple[str, str] | None:
        """(buffer, accumulate flag) to add a contribution to tensor's gradient, or None
        if its gradient is not needed (it lies before the first connector)."""
        if tensor not in self.needed:
            return None
        sym = self._sym(tensor)
        acc = "1" if tensor in self.written else "0"
        self.written.add(tensor)
        return sym, acc

    def alias(self, out_tensor: str, in_tensor: str) -> None:
        """in_tensor's gradient is out_tensor's buffer (views such as reshape)."""
        if in_tensor not in self.needed or out_tensor not in self.written:
            return
        if in_tensor in self.written:
            n = self.graph.tensors[in_tensor].size
            self.ctx.call("mcutl_axpy_f32", [str(n), "1.0f", self.buffers[out_tensor],
                                             self.buffers[in_tensor]],
                          f"gradient of {in_tensor} += gradient of {out_tensor}")
            return
        self.buffers[in_tensor] = self.buffers[out_tensor]
        self.written.add(in_tensor)


# ---------------------------------------------------------------------------- side layers

def _layer_forward(ctx: TrainContext, layer: SideLayer, src: str) -> str:
    """Emit one side layer's forward from buffer src; returns its output buffer."""
    n_in = int(np.prod(layer.in_shape))
    n_out = int(np.prod(layer.out_shape))
    out = ctx.f32(f"{layer.name}_out", n_out)
    din = ctx.f32_dims(layer.in_shape)
    a = layer.attrs
    if layer.kind == "avgpool":
        kh, kw = as_pair(a["k"])
        ctx.call("mcutl_avg_pool_f32", [din, src, str(kh), str(kw), out],
                 f"{layer.name}: avgpool {kh}x{kw}")
    elif layer.kind == "conv":
        (kh, kw), groups = as_pair(a["k"]), int(a.get("groups", 1))
        w, _ = ctx.param(f"{layer.name}.weight", layer.params["weight"])
        p = conv_f32_params(ctx, layer.name, as_pair(a.get("stride", 1)),
                            as_pair(a.get("pad", (kh // 2, kw // 2))), groups)
        ctx.call("mcutl_conv2d_f32",
                 [p, din, src, ctx.f32_dims(layer.params["weight"].shape), w, "NULL",
                  ctx.f32_dims(layer.out_shape), out],
                 f"{layer.name}: conv {kh}x{kw} groups {groups}",
                 macs=n_out * kh * kw * layer.in_shape[-1] // groups)
    elif layer.kind == "groupnorm":
        g, _ = ctx.param(f"{layer.name}.gamma", layer.params["gamma"])
        b, _ = ctx.param(f"{layer.name}.beta", layer.params["beta"])
        groups = int(a["groups"])
        ctx.call("mcutl_group_norm_f32",
                 [din, src, str(groups), f"{float(a.get('eps', 1e-5))!r}f", g, b, out,
                  ctx.f32(f"{layer.name}_xhat", n_in), ctx.f32(f"{layer.name}_mean", groups),
                  ctx.f32(f"{layer.name}_rstd", groups)],
                 f"{layer.name}: group norm, {groups} groups")
    elif layer.kind == "scale_shift":
        g, _ = ctx.param(f"{layer.name}.gamma", layer.params["gamma"])
        b, _ = ctx.param(f"{layer.name}.beta", layer.params["beta"])
        ctx.call("mcutl_scale_shift_f32", [din, src, g, b, out], f"{layer.name}: scale+shift")
    elif layer.kind == "relu":
        ctx.call("mcutl_relu_f32", [src, str(n_in), out, ctx.mask(f"{layer.name}_mask", n_in)],
                 f"{layer.name}: relu (mask saved)")
    elif layer.kind == "resize":
        h, w_ = (int(v) for v in a["size"])
        ctx.call("mcutl_resize_nearest_f32", [din, src, str(h), str(w_), out],
                 f"{layer.name}: nearest resize to {h}x{w_}")
    else:
        raise TrainCompileError(f"side layer {layer.name}: unknown kind {layer.kind!r}")
    return out


def _layer_backward(ctx: TrainContext, layer: SideLayer, src: str, g_out: str,
                    g_in: tuple[str, str] | None) -> None:
    """Emit one side layer's backward. src: its forward input buffer; g_in: (buffer,
    accumulate) for the input gradient, or None when no input gradient is needed."""
    n_in = int(np.prod(layer.in_shape))
    din = ctx.f32_dims(layer.in_shape)
    dout = ctx.f32_dims(layer.out_shape)
    a = layer.attrs
    if layer.kind == "avgpool":
        if g_in:
            kh, kw = as_pair(a["k"])
            ctx.call("mcutl_avg_pool_grad_input_f32", [din, str(kh), str(kw), g_out, *g_in],
                     f"{layer.name}: avgpool backward")
    elif layer.kind == "conv":
        (kh, kw), groups = as_pair(a["k"]), int(a.get("groups", 1))
        w, gw = ctx.param(f"{layer.name}.weight", layer.params["weight"])
        p = conv_f32_params(ctx, layer.name, as_pair(a.get("stride", 1)),
                            as_pair(a.get("pad", (kh // 2, kw // 2))), groups)
        wd = ctx.f32_dims(layer.params["weight"].shape)
        ctx.call("mcutl_conv2d_grad_weight_f32", [p, din, src, dout, g_out, wd, gw],
                 f"{layer.name}: conv weight gradient (accumulates)")
        if g_in:
            ctx.call("mcutl_conv2d_grad_input_f32", [p, dout, g_out, wd, w, din, *g_in],
                     f"{layer.name}: conv input gradient")
    elif layer.kind == "groupnorm":
        g, gg = ctx.param(f"{layer.name}.gamma", layer.params["gamma"])
        _, gb = ctx.param(f"{layer.name}.beta", layer.params["beta"])
        groups = int(a["groups"])
        gi = g_in or (ctx.f32(f"{layer.name}_gin_unused", n_in), "0")
        ctx.call("mcutl_group_norm_grad_f32",
                 [din, str(groups), ctx.f32(f"{layer.name}_xhat", n_in),
                  ctx.f32(f"{layer.name}_rstd", groups), g, g_out, *gi, gg, gb],
                 f"{layer.name}: group norm backward")
    elif layer.kind == "scale_shift":
        g, gg = ctx.param(f"{layer.name}.gamma", layer.params["gamma"])
        _, gb = ctx.param(f"{layer.name}.beta", layer.params["beta"])
        gi = g_in or (ctx.f32(f"{layer.name}_gin_unused", n_in), "0")
        ctx.call("mcutl_scale_shift_grad_f32", [din, src, g, g_out, *gi, gg, gb],
                 f"{layer.name}: scale+shift backward")
    elif layer.kind == "relu":
        if g_in:
            ctx.call("mcutl_act_grad_input_f32",
                     [g_out, ctx.mask(f"{layer.name}_mask", n_in), str(n_in), *g_in],
                     f"{layer.name}: relu backward")
    elif layer.kind == "resize" and g_in:
        h, w_ = (int(v) for v in a["size"])
        ctx.call("mcutl_resize_nearest_grad_input_f32", [din, str(h), str(w_), g_out, *g_in],
                 f"{layer.name}: nearest resize backward")


def _module_forward(ctx: TrainContext, m: SideModule, src: str) -> tuple[list[str], str]:
    inputs = []
    cur = src
    for layer in m.layers:
        inputs.append(cur)
        cur = _layer_forward(ctx, layer, cur)
    return inputs, cur


def _module_backward(ctx: TrainContext, m: SideModule, inputs: list[str], g_out: str,
                     g_src: tuple[str, str] | None) -> None:
    g = g_out
    for j in range(len(m.layers) - 1, -1, -1):
        layer = m.layers[j]
        if j == 0:
            target = g_src
        else:
            target = (ctx.f32(f"{layer.name}_gin", int(np.prod(layer.in_shape))), "0")
        _layer_backward(ctx, layer, inputs[j], g, target)
        if target is None:
            break
        g = target[0]


# ---------------------------------------------------------------------------- the step

@dataclass
class StepProgram:
    ctx: TrainContext
    input_sym: str
    logits_sym: str
    forward_end: int  # calls [0, forward_end) are the forward pass (INFER)
    loss_call: int  # index of the softmax cross-entropy call
    label_sym: str = "mcutl_label"


def _needs_grad(tm: TrainableModel) -> set[str]:
    """Backbone tensors whose gradient is needed: everything from connector 0 on."""
    g = tm.backbone
    first = tm.connectors[0] if tm.connectors else None
    started = False
    need: set[str] = set()
    if first is None:
        return need
    for node in g.nodes:
        if first in node.outputs:
            started = True
        if started:
            for t in [*node.inputs, *node.outputs]:
                if t and not g.tensors[t].is_const:
                    need.add(t)
    return need


def build_step(tm: TrainableModel) -> StepProgram:
    g = tm.backbone
    ctx = TrainContext(act_offsets={})
    x_name = g.inputs[0]
    feat_name = g.outputs[0]
    for node in g.nodes:
        if get_op(node.op, node).c_alias:
            ctx.alias[node.outputs[0]] = node.inputs[0]
    for t in g.activations():
        if t not in ctx.alias:
            ctx.i8(t, g.tensors[t].size)
    need = _needs_grad(tm)
    module_of_target = {m.target: m for m in tm.modules}
    module_of_source: dict[str, list[SideModule]] = {}
    for m in tm.modules:
        module_of_source.setdefault(m.source, []).append(m)
    saved: dict[int, tuple[list[str], str]] = {}  # module index -> (layer inputs, output)
    m_sym: dict[str, str] = {}  # connector / input tensor -> float value buffer

    # ---- forward -----------------------------------------------------------
    ctx.mark("forward")
    s_in, zp_in = qparams(g.tensors[x_name])
    n_x = g.tensors[x_name].size
    if x_name in module_of_source:
        m_sym[x_name] = ctx.f32(f"{x_name}_f", n_x)
        ctx.call("mcutl_dequantize_s8_f32",
                 [ctx.act(x_name), str(n_x), f"{s_in!r}f", str(zp_in), m_sym[x_name]],
                 "dequantise the input for the side network")
        for m in module_of_source[x_name]:
            saved[m.index] = _module_forward(ctx, m, m_sym[x_name])
    masks: dict[str, str] = {}
    for node in g.nodes:
        op = get_op(node.op, node)
        op.lower_c(node, g, ctx)
        out = node.outputs[0]
        if out in need and any(t in need for t in node.inputs if t):
            sym = op.lower_c_mask(node, g, ctx)
            if sym is not None:
                masks[node.name] = sym
        if out in module_of_target:
            m = module_of_target[out]
            s, zp = qparams(g.tensors[out])
            n = g.tensors[out].size
            m_sym[out] = ctx.f32(f"m_{out}", n)
            ctx.call("mcutl_dequantize_s8_f32",
                     [ctx.act(out), str(n), f"{s!r}f", str(zp), m_sym[out]],
                     f"connector {m.index}: dequantise {out}")
            ctx.call("mcutl_add_f32", [m_sym[out], saved[m.index][1], str(n), m_sym[out]],
                     f"connector {m.index}: add module {m.index}'s output")
            ctx.call("mcutl_quantize_f32_s8",
                     [m_sym[out], str(n), f"{s!r}f", str(zp), ctx.act(out)],
                     f"connector {m.index}: requantise the sum for the backbone")
            ctx.probe(out, ctx.act(out), n)
            for nxt in module_of_source.get(out, []):
                saved[nxt.index] = _module_forward(ctx, nxt, m_sym[out])
    # head
    s_f, zp_f = qparams(g.tensors[feat_name])
    c_feat = g.tensors[feat_name].size
    k = tm.num_classes
    feat_f = ctx.f32("features_f", c_feat)
    logits = ctx.f32("logits", k)
    hw, ghw = ctx.param("head.weight", tm.head_weight)
    hb, ghb = ctx.param("head.bias", tm.head_bias)
    ctx.call("mcutl_dequantize_s8_f32",
             [ctx.act(feat_name), str(c_feat), f"{s_f!r}f", str(zp_f), feat_f],
             "dequantise the backbone features")
    ctx.call("mcutl_linear_f32", ["1", str(c_feat), feat_f, str(k), hw, hb, logits],
             f"head: linear {c_feat} -> {k}", macs=c_feat * k)
    forward_end = len(ctx.calls)

    # ---- backward ------------------------------------------------------------
    ctx.mark("backward")
    g_logits = ctx.f32("g_logits", k)
    loss_call = len(ctx.calls)
    ctx.call("mcutl_softmax_xent_f32",
             [logits, "&mcutl_label", "1", str(k), "mcutl_label_smoothing", "1.0f", "NULL",
              g_logits], "loss: softmax cross-entropy, gradient of the logits",
             assign="*loss")
    ctx.call("mcutl_linear_grad_weight_f32", ["1", str(c_feat), feat_f, str(k), g_logits, ghw],
             "head: weight gradient (accumulates)")
    ctx.call("mcutl_linear_grad_bias_f32", ["1", str(k), g_logits, ghb],
             "head: bias gradient (accumulates)")
    grads = GradState(ctx, g, needed=need, masks=masks)
    if feat_name in need:
        gf = grads.write(feat_name)
        assert gf is not None
        ctx.call("mcutl_linear_grad_input_f32", ["1", str(c_feat), str(k), hw, g_logits, *gf],
                 "head: gradient of the features")
    order = list(reversed(g.nodes))
    for node in order:
        out = node.outputs[0]
        if out in module_of_target:
            m = module_of_target[out]
            g_m = grads.out(out)
            if g_m is None:
                raise TrainCompileError(f"no gradient reaches connector {out}")
            src = m.source
            g_src = grads.write(src) if src != x_name else None
            if src == x_name or src not in need:
                g_src = None
            _module_backward(ctx, m, saved[m.index][0], g_m, g_src)
        if out not in need or grads.out(out) is None:
            continue
        if not any(t in need for t in node.inputs if t):
            continue
        get_op(node.op, node).lower_c_backward(node, g, ctx, grads)
    return StepProgram(ctx=ctx, input_sym=ctx.act(x_name), logits_sym=logits,
                       forward_end=forward_end, loss_call=loss_call)
