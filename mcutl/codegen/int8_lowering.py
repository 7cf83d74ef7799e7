"""Helpers the ops' `lower_c` share: quantisation params of IR tensors, struct fields."""

from __future__ import annotations

import dataclasses

import numpy as np

from mcutl.codegen.context import CContext
from mcutl.ir.graph import Graph, Node, Tensor


def qparams(t: Tensor) -> tuple[float, int]:
    """Per-tensor (scale, zero point) of an int8 activation."""
    if t.quant is None or t.dtype != "int8":
        raise ValueError(f"tensor {t.name} is not a quantised int8 activation")
    return float(t.quant.scale[0]), int(t.quant.zero_point[0])


def weight_scales(t: Tensor) -> np.ndarray:
    assert t.quant is not None, f"weight {t.name} has no quantisation params"
    return np.asarray(t.quant.scale, dtype=np.float32)


def struct_fields(params: object, ctx: CContext, base: str) -> dict[str, object]:
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
