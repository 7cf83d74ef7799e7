"""The op registry: one OpDef per canonical op, declared once, asked by every pass.

An OpDef answers, for one node of its op:

- ``check``           are the attrs and input count supported? (UnsupportedOpError if not)
- ``infer_shape``     output shapes from input shapes
- ``reference_f32``   numpy forward on batched channel-last float arrays
- ``quant_rule`` / ``input_roles``  how PTQ treats its outputs and constant inputs
- ``accepts_act`` / ``fuse_activation`` / ``absorb_affine`` / ``simplify`` /
  ``legalize`` / ``absorb_input_pad``  the graph rewrites done before quantisation
- ``output_bytes`` / ``scratch_bytes``  memory needs of the int8 kernel
- ``lower_tflite``    emit the TFLite operator(s) through an export context
- ``lower_c`` / ``c_alias``  slots for the C code generator
- ``backward``        slot for the backward rule (filled by the training issue)
- ``reference_int8``  numpy model of the int8 C kernel (bit-exact, mcutl.quant.int8_exec)
- ``torch_forward_f32`` / ``ste_mask`` / ``crosses_backward``  the straight-through
                      backward through a frozen int8 node (mcutl.verify.reference)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from mcutl.errors import McutlError
from mcutl.ir.graph import Graph, Node

if TYPE_CHECKING:
    import torch

Shape = tuple[int, ...]
ACTIVATIONS = ("none", "relu", "relu6")


class LoweringContext(Protocol):
    """What an op's ``lower_tflite`` writes into (mcutl.tflite.export implements it; the
    ops see only this interface, so they import nothing from tflite/)."""

    graph: Graph

    def tensor(self, name: str) -> int: ...

    def const(self, name: str, data: np.ndarray, scale: np.ndarray | None,
              zero_point: np.ndarray | None, quantized_dimension: int = 0) -> int: ...

    def op(self, op: str, inputs: list[int], outputs: list[int], **options: object) -> None: ...

    def window_input(self, node: Node, x_name: str, kh: int, kw: int, sh: int, sw: int,
                     pad: tuple[int, int, int, int], pad_value: str | None = "zero_point"
                     ) -> tuple[int, str]: ...


class UnsupportedOpError(McutlError, ValueError):
    """An op or attribute mcutl cannot compile; names op, node, problem, supported ops."""

    def __init__(self, op: str, node: str, problem: str,
                 supported: Iterable[str] | None = None) -> None:
        ops = sorted(supported) if supported is not None else supported_ops()
        self.op, self.node, self.problem, self.supported = op, node, problem, ops
        super().__init__(f"unsupported op {op!r} at node {node!r}: {problem}. "
                         f"Supported ops: {', '.join(ops)}")


class QuantRule(Enum):
    """How post-training quantisation chooses a node's output params."""

    CALIBRATED = "calibrated"  # own params from the calibrated output range
    SAME_AS_INPUT = "same_as_input"  # output reuses input 0's params (kernel cannot rescale)
    SHARED = "shared"  # all activation inputs and the output share one set


def apply_act(x: np.ndarray, act: str) -> np.ndarray:
    if act == "relu":
        return np.maximum(x, 0).astype(x.dtype, copy=False)
    if act == "relu6":
        return np.clip(x, 0, 6).astype(x.dtype, copy=False)
    return x


def combine_acts(first: str, second: str) -> str:
    """The single activation equal to applying ``first`` then ``second``."""
    if "relu6" in (first, second):
        return "relu6"
    if "relu" in (first, second):
        return "relu"
    return "none"


class OpDef:
    """Base class; subclasses set the class attributes and override what applies."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # the ops/<family>.py file that declares it
    num_inputs: ClassVar[tuple[int, int]] = (1, 1)  # min, max (max -1: unbounded)
    input_roles: ClassVar[tuple[str, ...]] = ("act",)  # 'act'|'weight'|'bias'|'param'
    quant_rule: ClassVar[QuantRule] = QuantRule.CALIBRATED
    accepts_act: ClassVar[bool] = False  # has an 'act' attr a following relu can fuse into
    c_alias: ClassVar[bool] = False  # output is a view of input 0 (no kernel, shared buffer)
    #: Backward rule slot, filled by the training issue: a callable
    #: ``backward(node, inputs, outputs, grad_outputs) -> grad_inputs``.
    backward: ClassVar[Any] = None

    # ---- declaration checks ------------------------------------------
    def role(self, index: int) -> str:
        """Role of input ``index``: the last declared role repeats for variadic ops."""
        return self.input_roles[min(index, len(self.input_roles) - 1)]

    def unsupported(self, node: Node, problem: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.name, node.name, problem)

    def check(self, node: Node, graph: Graph) -> None:
        """Raise UnsupportedOpError if this node cannot be compiled as written."""
        lo, hi = self.num_inputs
        n = len(node.inputs)
        if n < lo or (hi >= 0 and n > hi):
            raise self.unsupported(node, f"takes {lo}..{hi if hi >= 0 else 'n'} inputs, got {n}")
        if self.accepts_act and node.attrs.get("act", "none") not in ACTIVATIONS:
            raise self.unsupported(node, f"act {node.attrs.get('act')!r} not in {ACTIVATIONS}")
        for i, name in enumerate(node.inputs):
            if name and self.role(i) != "act" and not graph.tensors[name].is_const:
                raise self.unsupported(node, f"input {i} ({self.role(i)}) must be a constant")
            if name and self.role(i) == "act" and graph.tensors[name].is_const:
                raise self.unsupported(node, f"input {i} must be an activation, "
                                             "not a constant")

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        raise NotImplementedError

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Float forward. Activations are batched ``(N, ...)`` NHWC, constants as stored."""
        raise NotImplementedError

    # ---- rewrites before quantisation ---------------------------------
    def simplify(self, graph: Graph, node: Node) -> bool:
        """Rewrite ``node`` in place in ``graph`` (fold, fuse, drop); True if changed."""
        return False

    def legalize(self, graph: Graph, node: Node) -> bool:
        """Rewrite ``node`` into ops that have int8 kernels; True if changed."""
        return False

    def fuse_activation(self, graph: Graph, node: Node, act: str) -> bool:
        """Apply ``act`` after this node's output by changing its attrs; True if done."""
        if not self.accepts_act:
            return False
        node.attrs["act"] = combine_acts(node.attrs.get("act", "none"), act)
        return True

    def absorb_affine(self, graph: Graph, node: Node, scale: np.ndarray,
                      shift: np.ndarray) -> bool:
        """Fold ``y * scale + shift`` (per output channel) into this node; True if done."""
        return False

    def can_absorb_input_pad(self, graph: Graph, node: Node, tensor: str) -> bool:
        """Can a zero padding of ``tensor`` (which this node reads) become this node's own?"""
        return False

    def absorb_input_pad(self, graph: Graph, node: Node, pad: tuple[int, int, int, int],
                         unpadded: Shape) -> None:
        """Take over a zero ``pad`` (top, left, bottom, right) of input 0, whose shape
        without it is ``unpadded`` (only called when ``can_absorb_input_pad``)."""
        raise self.unsupported(node, "cannot absorb a padding of its input")

    # ---- memory ----------------------------------------------------------
    def output_bytes(self, node: Node, graph: Graph) -> int:
        return sum(graph.tensors[o].nbytes for o in node.outputs)

    def scratch_bytes(self, node: Node, graph: Graph, kernels: str = "portable") -> int:
        """Bytes of scratch the node's kernel from the ``kernels`` set (the target's:
        mcutl.targets.KERNEL_SETS) needs while it runs, planned in the arena (the C
        kernel's get_buffer_size must agree); 0: none."""
        return 0

    def band_rows(self, node: Node, graph: Graph, rows: tuple[int, int]
                  ) -> tuple[list[tuple[int, int] | None], dict[str, Any]] | None:
        """Row streaming (mcutl.plan.streaming): to compute output rows ``[a, b)`` alone,
        the rows of each input it reads (None for a constant) and the node's attrs for
        that band (its padding where the band meets an edge of the map). None: the op
        cannot run on a band of rows, which ends a streamed segment."""
        return None

    # ---- export --------------------------------------------------------
    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        raise self.unsupported(node, "has no TFLite lowering")

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        """Slot for the code generator: append this node's int8 kernel call(s) to ``ctx``."""
        raise self.unsupported(node, "has no C lowering")

    # ---- int8 reference and straight-through backward (Rep-Net training) ----
    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """What the C kernel computes: batch-1 int8 NHWC ``inputs`` (aligned with
        ``node.inputs``; constants may be None, they are read from ``graph``) -> int8
        outputs, with the integer params ``lower_c`` writes (mcutl.quant.int8_ref)."""
        raise self.unsupported(node, "has no int8 reference")

    def crosses_backward(self, node: Node, graph: Graph) -> bool:
        """Can a gradient flow back through this frozen int8 node (torch_forward_f32)?"""
        return False

    def torch_forward_f32(self, node: Node, graph: Graph,
                          inputs: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """The node's float op on real-valued NHWC torch tensors (aligned with
        ``node.inputs``, None for constants) with dequantised constants, WITHOUT its
        fused activation; autograd of it is the node's straight-through backward
        (requantisation = identity), the activation's derivative being replaced by
        ``ste_mask``. Raises for ops a gradient cannot cross (the message names the node)."""
        raise self.unsupported(node, "the backward cannot cross it (no straight-through "
                                     "rule); place every Rep-Net connector after it")

    def ste_mask(self, node: Node, graph: Graph, out_q: np.ndarray) -> np.ndarray | None:
        """Where the gradient passes the node's fused clamp, judged on its int8 output
        ``out_q`` (bool array of its shape), or None if it passes everywhere."""
        if not self.accepts_act:
            return None
        from mcutl.ops._ste import act_bounds, clamp_mask

        act = node.attrs.get("act", "none")
        if act == "none":
            return None
        lo, hi = act_bounds(node, graph, act)
        return clamp_mask(out_q, act, lo, hi)

    # ---- training (frozen backbone) -------------------------------------------
    def activation_of(self, node: Node) -> str:
        """The activation applied to this node's output ('none' | 'relu' | 'relu6')."""
        return str(node.attrs.get("act", "none")) if self.accepts_act else "none"

    def lower_c_mask(self, node: Node, graph: Graph, ctx: Any) -> str | None:
        """Emit the 1-bit mask of this node's activation (from its int8 output) that its
        backward needs; returns the mask buffer, or None when there is no activation."""
        from mcutl.ops._lowering import act_mask_call

        return act_mask_call(ctx, node, graph, self.activation_of(node))

    def lower_c_backward(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> None:
        """Emit the float gradient of this frozen node's inputs from its output's
        (straight-through requantisation, int8 weights from flash, the saved mask)."""
        raise self.unsupported(node, "has no backward rule: a gradient cannot cross it; "
                                     "put the first connector after it (--stages)")

    def _masked_grad(self, node: Node, graph: Graph, ctx: Any, grads: Any) -> str | None:
        """The output gradient with this node's activation mask applied (in place)."""
        g_out = grads.out(node.outputs[0])
        if g_out is None:
            return None
        mask = grads.masks.get(node.name)
        if mask is not None:
            n = graph.tensors[node.outputs[0]].size
            ctx.call("mcutl_act_grad_input_f32", [g_out, mask, str(n), g_out, "0"],
                     f"{node.name}: gradient through its {self.activation_of(node)}")
        return g_out



REGISTRY: dict[str, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: instantiate and register an OpDef under ``cls.name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"op name {cls.name!r} empty or declared twice")
    REGISTRY[cls.name] = cls()
    return cls


def supported_ops() -> list[str]:
    return sorted(REGISTRY)


def get_op(op: str, node: Node | None = None) -> OpDef:
    """The OpDef for ``op``; UnsupportedOpError naming the node if there is none."""
    try:
        return REGISTRY[op]
    except KeyError:
        where = node.name if node is not None else "?"
        raise UnsupportedOpError(op, where, "no such op in the registry") from None


def attr_pair(node: Node, key: str) -> tuple[int, int]:
    value = tuple(int(v) for v in node.attrs[key])
    if len(value) != 2:
        raise UnsupportedOpError(node.op, node.name, f"{key} must have 2 values, got {value}")
    return value[0], value[1]


def attr_pad(node: Node) -> tuple[int, int, int, int]:
    pad = tuple(int(v) for v in node.attrs.get("pad", (0, 0, 0, 0)))
    if len(pad) != 4 or min(pad) < 0:
        raise UnsupportedOpError(node.op, node.name,
                                 f"pad must be (top, left, bottom, right) >= 0, got {pad}")
    return pad[0], pad[1], pad[2], pad[3]
