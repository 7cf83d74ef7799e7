"""The C a training step lowers to, before its buffers have offsets.

Kernel arguments name arena buffers symbolically (`$kind:name$`); every call
records which buffers it touches, so a buffer's lifetime is [first call, last
call] in step order. After planning, `resolve()` replaces each symbol with its
arena pointer. Parameters, gradients and optimizer state are static arrays
outside the arena (`mcutl_params + offset`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcutl.codegen.context import CContext, KernelCall, scratch_key
from mcutl.ir.graph import Graph
from mcutl.ops._lowering import qparams

_SYM = re.compile(r"\$(i8|f32|m):([^$]+)\$")
_ELEM = {"i8": 1, "f32": 4, "m": 1}


@dataclass
class BufferUse:
    name: str
    kind: str  # i8 | f32 | m (1-bit mask, packed)
    nbytes: int
    first: int = 1 << 30
    last: int = -1


@dataclass
class ProbePoint:
    """An int8 tensor the step computes from float values (a requantisation): its
    rounding can differ from a host reference's by one at a tie, so `verify` reads the
    device's values here (PROBE) and counts such flips instead of failing on them."""

    name: str  # the backbone tensor
    call: int  # the forward stops after this call for PROBE
    symbol: str  # its arena buffer
    nbytes: int


@dataclass
class TrainContext(CContext):
    """A CContext whose activations are symbolic arena buffers with recorded lifetimes."""

    buffers: dict[str, BufferUse] = field(default_factory=dict)
    param_list: list[tuple[str, int, int]] = field(default_factory=list)  # name, offset, size
    param_index: dict[str, tuple[int, int]] = field(default_factory=dict)
    param_init: list[np.ndarray] = field(default_factory=list)
    section_marks: dict[str, int] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # view tensor -> tensor it shares
    views: dict[str, tuple[str, int]] = field(default_factory=dict)  # band -> (map, offset)
    probes: list[ProbePoint] = field(default_factory=list)
    graph: Graph | None = None  # the backbone (quantisation params of its tensors)
    trained_biases: dict[str, Any] = field(default_factory=dict)  # backbone node -> TNode
    ram_tables: list[dict[str, Any]] = field(default_factory=list)  # int32 biases in RAM

    # ---- arena buffers ---------------------------------------------------
    def declare(self, kind: str, name: str, elems: int) -> str:
        nbytes = (elems + 7) // 8 if kind == "m" else elems * _ELEM[kind]
        key = f"{kind}:{name}"
        if key not in self.buffers:
            self.buffers[key] = BufferUse(name, kind, nbytes)
        elif self.buffers[key].nbytes != nbytes:
            raise ValueError(f"buffer {key} declared with {nbytes} B and "
                             f"{self.buffers[key].nbytes} B")
        return f"${key}$"

    def act(self, tensor: str) -> str:  # int8 backbone activations (used by ops' lower_c)
        if tensor in self.views:
            base, offset = self.views[tensor]
            return f"({self.act(base)} + {offset})" if offset else self.act(base)
        while tensor in self.alias:
            tensor = self.alias[tensor]
        return f"$i8:{tensor}$"

    def view(self, name: str, base: str, offset: int) -> None:
        self.views[name] = (base, offset)

    def band_buffer(self, tensor: str, band: int, nbytes: int) -> str:
        """One buffer per band: its lifetime is that band's calls (the step's planner sees
        calls, not the repetition of one band's schedule)."""
        name = f"{tensor}#band{band}"
        self.i8(name, nbytes)
        return name

    def scratch(self, node: str, nbytes: int) -> str:
        """A kernel's scratch: an int8 arena buffer live for the calls that use it."""
        return self.i8(scratch_key(node), nbytes)

    def f32(self, name: str, elems: int) -> str:
        return self.declare("f32", name, elems)

    def mask(self, name: str, elems: int) -> str:
        return self.declare("m", name, elems)

    def i8(self, name: str, elems: int) -> str:
        return self.declare("i8", name, elems)

    def keep_alive(self, symbol: str, until: int) -> None:
        """Extend a buffer's lifetime (e.g. the logits are read after the step)."""
        m = _SYM.fullmatch(symbol)
        assert m, symbol
        buf = self.buffers[f"{m.group(1)}:{m.group(2)}"]
        buf.last = max(buf.last, until)
        buf.first = min(buf.first, until)

    # ---- static parameters -----------------------------------------------
    def param(self, name: str, init: np.ndarray) -> tuple[str, str]:
        """Register a trainable tensor; returns (param pointer, grad pointer) C expressions."""
        if name not in self.param_index:
            off = sum(size for _, _, size in self.param_list)
            size = int(init.size)
            self.param_list.append((name, off, size))
            self.param_index[name] = (off, size)
            self.param_init.append(np.asarray(init, dtype=np.float32).reshape(-1))
        off, _ = self.param_index[name]
        return f"(mcutl_params + {off})", f"(mcutl_grads + {off})"

    @property
    def param_count(self) -> int:
        return sum(size for _, _, size in self.param_list)

    # ---- calls -------------------------------------------------------------
    def call(self, func: str, args: list[str], comment: str, macs: int = 0,
             node: str = "", assign: str = "") -> None:
        index = len(self.calls)
        for arg in args:
            for m in _SYM.finditer(arg):
                key = f"{m.group(1)}:{m.group(2)}"
                if key not in self.buffers:
                    kind = m.group(1)
                    raise KeyError(f"buffer {key} used before it was declared ({kind})")
                buf = self.buffers[key]
                buf.first = min(buf.first, index)
                buf.last = max(buf.last, index)
        self.calls.append(KernelCall(comment, func, args, macs, node, assign))

    def bias_table(self, node: str, base: str, values: np.ndarray) -> str:
        """A trained bias lives in RAM as int32 (requantised from its float parameter at
        reset and after every update); any other stays a flash table."""
        tn = self.trained_biases.get(node)
        if tn is None:
            return self.const_array(base, values)
        assert self.graph is not None
        bias_tensor = self.graph.tensors[self.graph_node(node).inputs[2]]
        assert bias_tensor.quant is not None
        param, _ = self.param(f"{tn.name}.bias", tn.params["bias"])
        scales = self.const_array(f"{base}_scale",
                                  np.asarray(bias_tensor.quant.scale, np.float32),
                                  f"{node}: bias scale (input scale x weight scale)")
        name = self.unique(f"{base}_ram")
        self.ram_tables.append({"name": name, "size": int(values.size), "param": param,
                                "scales": scales, "node": node})
        return name

    def graph_node(self, name: str) -> Any:
        assert self.graph is not None
        return next(n for n in self.graph.nodes if n.name == name)

    def qparams(self, tensor: str) -> tuple[float, int]:
        """(scale, zero point) of a backbone int8 tensor."""
        assert self.graph is not None, "TrainContext.graph is not set"
        return qparams(self.graph.tensors[tensor])

    def probe(self, name: str, symbol: str, nbytes: int) -> None:
        """The last call wrote int8 tensor ``name`` from float values: a probe point."""
        self.probes.append(ProbePoint(name, len(self.calls) - 1, symbol, nbytes))

    def mark(self, section: str) -> None:
        """Remember where a section of the step (forward, backward) starts."""
        self.section_marks[section] = len(self.calls)

    def resolve(self, offsets: dict[str, int]) -> None:
        """Replace every buffer symbol by its arena pointer, in calls and pointer arrays."""

        def sub(text: str) -> str:
            def one(m: re.Match[str]) -> str:
                off = offsets[f"{m.group(1)}:{m.group(2)}"]
                if m.group(1) == "f32":
                    return f"((float *)(mcutl_arena + {off}))"
                if m.group(1) == "m":
                    return f"((uint8_t *)(mcutl_arena + {off}))"
                return f"(mcutl_arena + {off})"

            return _SYM.sub(one, text)

        for c in self.calls:
            c.args = [sub(a) for a in c.args]
        for p in self.ptr_arrays:
            p.exprs = [sub(e) for e in p.exprs]
        for q in self.probes:
            q.symbol = sub(q.symbol)


def symbol_kind(symbol: str) -> tuple[str, str]:
    m = _SYM.fullmatch(symbol)
    if not m:
        raise ValueError(f"not a buffer symbol: {symbol}")
    return m.group(1), m.group(2)

