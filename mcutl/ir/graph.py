"""The mcutl intermediate representation: tensors, nodes and a graph.

Conventions (every pass and the code generator rely on them):

- Activations are channel-last with batch 1: 4-D ``(1, H, W, C)``; a 1-D signal
  ``(N, C, L)`` is ``(1, 1, L, C)``; a feature vector is ``(1, F)``.
- Conv weights are ``OHWI`` with ``I = C_in / groups``; linear weights ``(out, in)``.
- A tensor with ``data`` is a constant; every other tensor is an activation.
- ``nodes`` are kept in topological order; ``''`` marks an omitted optional input.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES = ("float32", "int8", "int32")
SOURCE_LAYOUTS = ("NCHW", "NCL", "NHWC", "NC")


class GraphError(ValueError):
    """The graph breaks an IR invariant (dangling name, cycle, shape mismatch...)."""


@dataclass
class QuantParams:
    """Affine quantisation ``real = scale * (q - zero_point)``."""

    scale: np.ndarray  # float32, shape (1,) per-tensor or (C,) per-channel
    zero_point: np.ndarray  # int32, same shape as scale
    axis: int | None = None  # channel axis of the tensor for per-channel params

    def __post_init__(self) -> None:
        self.scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        self.zero_point = np.asarray(self.zero_point, dtype=np.int32).reshape(-1)
        if self.scale.shape != self.zero_point.shape:
            raise GraphError(f"scale {self.scale.shape} and zero_point "
                             f"{self.zero_point.shape} differ in shape")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantParams):
            return NotImplemented
        return (self.axis == other.axis
                and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # 'float32' | 'int8' | 'int32'
    data: np.ndarray | None = None  # constants only
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        if (self.name, tuple(self.shape), self.dtype, self.quant) != (
                other.name, tuple(other.shape), other.dtype, other.quant):
            return False
        if self.data is None or other.data is None:
            return self.data is None and other.data is None
        return self.data.dtype == other.data.dtype and np.array_equal(self.data, other.data)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    name: str
    op: str  # key into the op registry (mcutl.ops)
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    nodes: list[Node]  # topologically ordered
    inputs: list[str]
    outputs: list[str]
    source_layout: str = "NHWC"  # the user's layout of the model input

    # ---- lookups -------------------------------------------------------
    def producer(self, tensor: str) -> Node | None:
        """The node writing ``tensor`` (None for graph inputs and constants)."""
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes reading ``tensor``, in graph order."""
        return [n for n in self.nodes if tensor in n.inputs]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def activations(self) -> list[str]:
        """Names of non-constant tensors, graph inputs first, then in node order."""
        names = list(self.inputs)
        for n in self.nodes:
            names.extend(o for o in n.outputs if o not in names)
        return names

    def constants(self) -> list[str]:
        return [k for k, t in self.tensors.items() if t.is_const]

    @property
    def is_quantized(self) -> bool:
        return all(self.tensors[n].dtype == "int8" for n in self.activations())

    # ---- editing -------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        if tensor.name in self.tensors:
            raise GraphError(f"tensor {tensor.name!r} already exists")
        self.tensors[tensor.name] = tensor
        return tensor

    def unique_name(self, base: str) -> str:
        """``base`` if unused by tensors and nodes, else ``base_1``, ``base_2``..."""
        used = set(self.tensors) | {n.name for n in self.nodes}
        if base not in used:
            return base
        i = 1
        while f"{base}_{i}" in used:
            i += 1
        return f"{base}_{i}"

    def remove_node(self, node: Node) -> None:
        """Remove ``node`` (by identity) from the node list."""
        self.nodes = [n for n in self.nodes if n is not node]

    def replace_uses(self, old: str, new: str) -> None:
        """Make every reader of ``old`` (nodes and graph outputs) read ``new``."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def prune(self) -> None:
        """Drop nodes whose outputs nobody reads and tensors nobody references."""
        changed = True
        while changed:
            live = set(self.outputs)
            for n in self.nodes:
                live.update(n.inputs)
            kept = [n for n in self.nodes if any(o in live for o in n.outputs)]
            changed = len(kept) != len(self.nodes)
            self.nodes = kept
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(n.inputs)
            used.update(n.outputs)
        self.tensors = {k: t for k, t in self.tensors.items() if k in used}

    def copy(self) -> Graph:
        """A deep copy: editing the copy never changes this graph."""
        return _copy.deepcopy(self)

    def __str__(self) -> str:
        return format_graph(self)


# ---- human-readable listing: one line per node with shapes and dtypes ----------

def format_tensor(t: Tensor) -> str:
    shape = "x".join(str(d) for d in t.shape) or "scalar"
    text = f"{t.name}:{t.dtype}[{shape}]"
    if t.quant is not None:
        q = t.quant
        if q.axis is None:
            text += f"(s={float(q.scale[0]):.6g},zp={int(q.zero_point[0])})"
        else:
            text += f"(per-channel axis={q.axis})"
    return text


def _attr(value: object) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def format_graph(graph: Graph) -> str:
    """Inputs, then ``name = op(inputs) {attrs} -> outputs`` per node, then outputs."""
    lines = [f"graph (source layout {graph.source_layout}, {len(graph.nodes)} nodes)"]
    for name in graph.inputs:
        lines.append(f"  input  {format_tensor(graph.tensors[name])}")
    for node in graph.nodes:
        ins = []
        for i in node.inputs:
            if i == "":
                ins.append("-")
                continue
            t = graph.tensors.get(i)
            ins.append(format_tensor(t) if t is not None else f"{i}:?")
        outs = [format_tensor(graph.tensors[o]) if o in graph.tensors else f"{o}:?"
                for o in node.outputs]
        attrs = " ".join(f"{k}={_attr(v)}" for k, v in node.attrs.items())
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {node.name}: {node.op}{attrs}")
        lines.append(f"      in  {', '.join(ins)}")
        lines.append(f"      out {', '.join(outs)}")
    for name in graph.outputs:
        lines.append(f"  output {format_tensor(graph.tensors[name])}")
    return "\n".join(lines)
