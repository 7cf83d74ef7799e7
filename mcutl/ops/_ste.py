"""Helpers of the ops' int8 reference and straight-through (STE) backward methods.

The backward through a frozen int8 layer (shared/notes/repnet.md, DESIGN.md §3) uses
the layer's float op on dequantised constants, treats the output requantisation as
the identity and replaces the fused ReLU/ReLU6 by a 1-bit mask computed from the
int8 OUTPUT: the gradient passes where ``act_min < out`` (ReLU) or
``act_min < out < act_max`` (ReLU6), with the bounds of the int8 kernel. The C side
(``mcutl_act_mask_from_s8``) applies exactly this rule.

torch is imported lazily: importing the op registry must stay cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.ops._lowering import qparams, weight_scales  # noqa: F401  (shared)
from mcutl.quant import fixedpoint as fp

if TYPE_CHECKING:
    import torch


def dequant_const(t: Tensor) -> np.ndarray:
    """A quantised constant as float32, ``scale[o] * (q - zp)`` along its quantised axis
    (a single float32 product per element, as the C backward forms its weights)."""
    assert t.data is not None, f"{t.name} is not a constant"
    if t.quant is None or t.dtype == "float32":
        return t.data.astype(np.float32)
    shape = [1] * t.data.ndim
    if t.quant.axis is not None and t.data.ndim:
        shape[t.quant.axis] = -1
    scale = t.quant.scale.astype(np.float32).reshape(shape) if t.data.ndim else t.quant.scale[0]
    zp = t.quant.zero_point.astype(np.int64).reshape(shape) if t.data.ndim else \
        t.quant.zero_point[0]
    return (scale * (t.data.astype(np.int64) - zp).astype(np.float32)).astype(np.float32)


def const_tensor(graph: Graph, name: str, like: torch.Tensor) -> torch.Tensor:
    """Dequantised constant ``name`` as a torch tensor of ``like``'s dtype (no grad)."""
    import torch

    return torch.from_numpy(dequant_const(graph.tensors[name])).to(like.dtype)


def act_bounds(node: Node, graph: Graph, act: str) -> tuple[int, int]:
    """int8 clamp bounds of a fused activation on the node's output (as the kernel's)."""
    s, zp = qparams(graph.tensors[node.outputs[0]])
    return fp.activation_range(act.upper(), s, zp)


def clamp_mask(out_q: np.ndarray, act: str, lo: int, hi: int) -> np.ndarray | None:
    """Where the gradient passes a clamp ``act`` ('relu' | 'relu6') with int8 bounds
    [lo, hi], judged on the int8 output; None for 'none' (everything passes)."""
    q = np.asarray(out_q).astype(np.int32)
    if act == "relu":
        return q > lo
    if act == "relu6":
        return (q > lo) & (q < hi)
    if act == "none":
        return None
    raise ValueError(f"no straight-through mask for activation {act!r}")


def nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def pool_sum_count(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                   pad: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(window sums, number of real cells per window) of an NHWC tensor, padding ignored."""
    import torch
    import torch.nn.functional as F

    t, left, b, r = pad
    xs = F.pad(nchw(x), (left, r, t, b))
    sums = F.avg_pool2d(xs, kernel, stride, divisor_override=1)
    ones = F.pad(torch.ones((1, 1) + tuple(x.shape[1:3]), dtype=x.dtype), (left, r, t, b))
    count = F.avg_pool2d(ones, kernel, stride, divisor_override=1)
    return nhwc(sums), nhwc(count)
