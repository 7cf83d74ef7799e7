"""The float ops of a trainable graph (mcutl/methods/model.py): declared once, asked by
every pass.

A ``FloatOp`` answers, for one ``TNode`` of its op:

- ``infer_shape``     its output shape from its input shapes and attrs
- ``torch_forward``   the PyTorch reference (NHWC torch tensors; autograd is its
                      backward), used by mcutl.verify.reference
- ``lower_forward`` / ``lower_backward``  its kernel calls in the training step: the
                      op describes each call (function, arguments, comment) to the
                      step's context, which plans the buffers and renders the C
- ``grad_alias``      the gradient of its output IS the gradient of these inputs (a
                      view, an add, a (de)quantisation with a straight-through rule):
                      one buffer, no code
- ``writes_backbone`` its output is a backbone int8 tensor it overwrites (a
                      requantisation: a PROBE point for `verify`)

Ops import nothing from codegen/, train/ or verify/: the context (``ctx``) is used
through its methods only (``f32``, ``mask``, ``param``, ``call``, ``f32_dims``, ``act``,
``params``, ``probe``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from mcutl.ir.trainable import TNode

if TYPE_CHECKING:
    import torch

Shape = tuple[int, ...]
#: (buffer, accumulate flag "0" | "1") for an input gradient, or None if not needed
GradTarget = tuple[str, str] | None


class FloatOpError(ValueError):
    """A trainable node that the op cannot take (names the node and the problem)."""


class FloatOp:
    name: ClassVar[str] = ""
    grad_alias: ClassVar[tuple[int, ...]] = ()  # inputs whose gradient is the output's
    writes_backbone: ClassVar[bool] = False
    reads_backbone: ClassVar[bool] = False  # input 0 is a backbone int8 tensor
    #: a trainable parameter of a frozen backbone node (attr ``tensor``: its output):
    #: the step keeps the node's int8 form in RAM, requantised after every update, and
    #: accumulates its gradient in that node's backward
    backbone_param: ClassVar[bool] = False

    def fail(self, node: TNode, problem: str) -> FloatOpError:
        return FloatOpError(f"{self.name} node {node.name!r}: {problem}")

    def infer_shape(self, node: TNode, in_shapes: Sequence[Shape]) -> Shape:
        return in_shapes[0]

    def torch_forward(self, node: TNode, inputs: Sequence[torch.Tensor],
                      params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def lower_forward(self, node: TNode, ctx: Any, ins: Sequence[str],
                      in_shapes: Sequence[Shape], out_shape: Shape) -> str:
        """Emit the forward call(s) reading buffers ``ins``; return the output buffer."""
        raise NotImplementedError

    def lower_backward(self, node: TNode, ctx: Any, ins: Sequence[str],
                       in_shapes: Sequence[Shape], out_shape: Shape, g_out: str,
                       g_ins: Sequence[GradTarget]) -> None:
        """Emit the backward call(s): parameter gradients accumulate into the static
        gradient block; ``g_ins[k]`` receives input k's gradient (None: not needed)."""
        raise NotImplementedError


REGISTRY: dict[str, FloatOp] = {}


def register(cls: type[FloatOp]) -> type[FloatOp]:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"float op {cls.name!r} empty or declared twice")
    REGISTRY[cls.name] = cls()
    return cls


def get_float_op(name: str, node: TNode | None = None) -> FloatOp:
    try:
        return REGISTRY[name]
    except KeyError:
        where = f" (node {node.name!r})" if node is not None else ""
        raise FloatOpError(f"no float op {name!r}{where}; known: "
                           f"{', '.join(sorted(REGISTRY))}") from None


def pair(v: Any) -> tuple[int, int]:
    """An attr that is an int (same on both axes) or an (h, w) pair, as (h, w)."""
    if isinstance(v, int) or hasattr(v, "__index__"):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def numel(shape: Shape) -> int:
    n = 1
    for v in shape:
        n *= int(v)
    return n
