"""What an op's C lowering writes into: constant tables, params structs, kernel calls.

Each OpDef's `lower_c(node, graph, ctx)` asks this context for C names
(`ctx.act`, `ctx.const_array`, `ctx.dims`, `ctx.params`) and appends one or more
kernel calls (`ctx.call`). The context only collects plain data; the Jinja2
templates (`templates/model*.c.j2`) loop over it and substitute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_CTYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.float32): "float",
    np.dtype(np.uint8): "uint8_t",
}


def c_ident(name: str) -> str:
    """A readable C identifier from a tensor/node name ('features.0/conv' -> 'features_0_conv')."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "t"
    if ident[0].isdigit():
        ident = "t_" + ident
    return re.sub(r"__+", "_", ident)


def c_literal(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if v == -(2**31):
            return "(-2147483647 - 1)"
        return str(v)
    if isinstance(value, (float, np.floating)):
        return repr(float(np.float32(value))) + "f"
    return str(value)


def scratch_key(node: str) -> str:
    """The arena buffer name of a node's kernel scratch."""
    return f"{node}#scratch"


@dataclass
class ConstArray:
    name: str
    ctype: str
    values: list[str]  # C literals, rendered 16 per line by the template
    nbytes: int
    comment: str = ""


@dataclass
class Struct:
    name: str
    ctype: str
    fields: list[tuple[str, str]]  # (field, C expression), in order


@dataclass
class PtrArray:
    name: str
    exprs: list[str]  # arena pointer expressions


@dataclass
class KernelCall:
    comment: str
    func: str
    args: list[str]
    macs: int = 0
    node: str = ""
    assign: str = ""  # if set: `assign = func(args);` (a value, not a status)


@dataclass
class CContext:
    """Collects the C a graph lowers to. `act()` is resolved by the arena plan."""

    act_offsets: dict[str, int]  # tensor name -> byte offset in the arena
    kernels: str = "portable"  # the target's int8 kernel set (mcutl.targets.KERNEL_SETS)
    #: nodes that run the portable kernel although the set has another: its scratch would
    #: raise the arena's peak (mcutl.plan.kernels)
    portable_nodes: frozenset[str] = frozenset()
    consts: list[ConstArray] = field(default_factory=list)
    structs: list[Struct] = field(default_factory=list)
    calls: list[KernelCall] = field(default_factory=list)
    ptr_arrays: list[PtrArray] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)
    _dims_cache: dict[tuple[int | str, ...], str] = field(default_factory=dict)
    _const_cache: dict[tuple[str, tuple[int, ...], bytes], str] = field(default_factory=dict)

    def kernels_for(self, node: str) -> str:
        """The kernel set ``node`` runs with."""
        return "portable" if node in self.portable_nodes else self.kernels

    def unique(self, base: str) -> str:
        name = c_ident(base)
        if name not in self._names:
            self._names.add(name)
            return name
        i = 1
        while f"{name}_{i}" in self._names:
            i += 1
        self._names.add(f"{name}_{i}")
        return f"{name}_{i}"

    def act(self, tensor: str) -> str:
        """C expression for the int8 pointer to an activation in the arena."""
        return f"(mcutl_arena + {self.act_offsets[tensor]})"

    def band_buffer(self, tensor: str, band: int, nbytes: int) -> str:
        """The buffer that holds band ``band``'s rows of ``tensor`` inside a streamed
        segment: here the tensor's own (planned at its band size, shared by every band)."""
        return tensor

    def view(self, name: str, base: str, offset: int) -> None:
        """``name`` is the int8 activation ``offset`` bytes into ``base``'s buffer (a band
        of rows of a map: mcutl.plan.streaming)."""
        self.act_offsets[name] = self.act_offsets[base] + offset

    def scratch(self, node: str, nbytes: int) -> str:
        """C expression for a kernel's scratch buffer (``nbytes``, planned in the arena
        for the duration of ``node``'s call: ``scratch_key(node)``)."""
        return f"(mcutl_arena + {self.act_offsets[scratch_key(node)]})"

    def const_array(self, base: str, values: np.ndarray, comment: str = "") -> str:
        """Emit a flash table (`const`) and return its C name; identical tables are shared."""
        arr = np.ascontiguousarray(values)
        ctype = _CTYPES[arr.dtype]
        key = (ctype, arr.shape, arr.tobytes())
        if key in self._const_cache:
            return self._const_cache[key]
        name = self.unique(base)
        self._const_cache[key] = name
        flat = [c_literal(v) for v in arr.reshape(-1).tolist()]
        self.consts.append(ConstArray(name, ctype, flat, int(arr.nbytes), comment))
        return name

    def dims(self, shape: tuple[int, ...]) -> str:
        """A `static const mcutl_dims_t` for a shape (padded to 4-D NHWC); returns `&name`."""
        s = tuple(int(v) for v in shape)
        if len(s) > 4:
            raise ValueError(f"shape {s} has more than 4 dimensions")
        s4 = (1,) * (4 - len(s)) + s
        if s4 not in self._dims_cache:
            name = self.unique("dims_" + "x".join(map(str, s4)))
            fields = list(zip(("n", "h", "w", "c"), map(str, s4), strict=True))
            self.structs.append(Struct(name, "mcutl_dims_t", fields))
            self._dims_cache[s4] = name
        return "&" + self._dims_cache[s4]

    def bias_table(self, node: str, base: str, values: np.ndarray) -> str:
        """A kernel's int32 bias: a flash table here (a training step may keep it in RAM,
        where a method trains it)."""
        return self.const_array(base, values)

    def f32_dims(self, shape: tuple[int, ...]) -> str:
        """A `static const mcutl_f32_dims_t` for a float shape (padded to 4-D NHWC);
        returns `&name`."""
        s4 = (1,) * (4 - len(shape)) + tuple(int(v) for v in shape)
        key = ("f32dims", *s4)  # the shared cache: the prefix keeps the two types apart
        if key not in self._dims_cache:
            name = self.unique("f32dims_" + "x".join(map(str, s4)))
            fields = list(zip(("n", "h", "w", "c"), map(str, s4), strict=True))
            self.structs.append(Struct(name, "mcutl_f32_dims_t", fields))
            self._dims_cache[key] = name
        return "&" + self._dims_cache[key]

    def params(self, base: str, ctype: str, fields: dict[str, object]) -> str:
        """A `static const` params struct; values are C expressions or numbers. Returns `&name`."""
        name = self.unique(base)
        self.structs.append(
            Struct(name, ctype, [(k, c_literal(v)) for k, v in fields.items()])
        )
        return "&" + name

    def ptr_array(self, base: str, exprs: list[str]) -> str:
        """A `static const int8_t *const name[]` of arena pointers; returns its name."""
        name = self.unique(base)
        self.ptr_arrays.append(PtrArray(name, exprs))
        return name

    def call(self, func: str, args: list[str], comment: str, macs: int = 0, node: str = "") -> None:
        self.calls.append(KernelCall(comment, func, args, macs, node))
