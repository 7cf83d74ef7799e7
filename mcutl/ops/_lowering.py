"""Helpers the ops' C lowerings share: quantisation params of IR tensors, params structs,
comments, and the masks and float params structs of the training step.

The ``ctx`` they take is the code generator's context (mcutl.codegen.context.CContext or
mcutl.train.context.TrainContext), used only through its methods: ops describe their
kernel calls to it and import nothing from codegen/ or train/."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.quant import fixedpoint as fp


def qparams(t: Tensor) -> tuple[float, int]:
    """Per-tensor (scale, zero point) of an int8 activation."""
    if t.quant is None or t.dtype != "int8":
        raise ValueError(f"tensor {t.name} is not a quantised int8 activation")
    return float(t.quant.scale[0]), int(t.quant.zero_point[0])


def weight_scales(t: Tensor) -> np.ndarray:
    assert t.quant is not None, f"weight {t.name} has no quantisation params"
    return np.asarray(t.quant.scale, dtype=np.float32)


def struct_fields(params: object, ctx: Any, base: str) -> dict[str, object]:
    """A fixedpoint params dataclass as C struct fields; numpy arrays become flash tables."""
    fields: dict[str, object] = {}
    for f in dataclasses.fields(params):  # type: ignore[arg-type]
        value = getattr(params, f.name)
        if isinstance(value, np.ndarray):
            fields[f.name] = ctx.const_array(f"{base}_{f.name}", value.astype(np.int32))
        else:
            fields[f.name] = value
    return fields


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def describe(node: Node, graph: Graph, extra: str = "") -> str:
    ins = [graph.tensors[i] for i in node.inputs if i and not graph.tensors[i].is_const]
    outs = [graph.tensors[o] for o in node.outputs]
    text = f"{node.op} '{node.name}'"
    if extra:
        text += f" {extra}"
    return (
        f"{text}: {', '.join(shape_str(t.shape) for t in ins)} -> "
        f"{', '.join(shape_str(t.shape) for t in outs)}"
    )


def conv_f32_params(ctx: Any, base: str, stride: tuple[int, int], pad: tuple[int, int],
                    groups: int) -> str:
    """A float conv's params struct (mcutl_f32_conv_params_t); returns ``&name``."""
    return str(ctx.params(f"{base}_f32params", "mcutl_f32_conv_params_t", {
        "stride_h": stride[0], "stride_w": stride[1], "dilation_h": 1, "dilation_w": 1,
        "pad_top": pad[0], "pad_left": pad[1], "groups": groups,
    }))


def act_mask_call(ctx: Any, node: Node, graph: Graph, act: str) -> str | None:
    """A 1-bit mask of where a frozen node's fused activation passes, from its int8
    output (what its backward needs); returns the mask buffer, None without activation."""
    if act == "none":
        return None
    out = node.outputs[0]
    t = graph.tensors[out]
    s, zp = qparams(t)
    lo, hi = fp.activation_range(act.upper(), s, zp)
    sym = str(ctx.mask(f"mask_{node.name}", t.size))
    mode = "MCUTL_ACT_MASK_RELU6" if act == "relu6" else "MCUTL_ACT_MASK_RELU"
    ctx.call("mcutl_act_mask_from_s8", [ctx.act(out), str(t.size), str(lo), str(hi), mode, sym],
             f"mask of {node.name}'s {act} for backward")
    return sym
