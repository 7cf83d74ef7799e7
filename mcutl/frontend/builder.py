"""Build a channel-last IR graph from channel-first (PyTorch / ONNX) op semantics.

The ONNX and torch.export frontends translate their ops into calls on one
GraphBuilder; only this module knows how NCHW / NCL shapes, axes, pads and
weights map to the IR (see ``mcutl.ir.graph`` for the IR conventions):

- activation ``(1, C, H, W)`` -> ``(1, H, W, C)``; ``(1, C, L)`` -> ``(1, 1, L, C)``;
  ``(1, F)`` -> ``(1, F)``. The batch must be 1.
- conv weights OIHW / OIL -> OHWI / O1LI, transposed once, here.
- a flatten of a map with H*W > 1 keeps the channel-last element order; the
  value remembers the permutation and the next linear's weight columns absorb it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.ir.passes import simplify
from mcutl.ops import UnsupportedOpError, get_op
from mcutl.ops._window import trim_after
from mcutl.ops.validate import validate_graph

LAYOUT_OF_RANK = {4: "NCHW", 3: "NCL", 2: "NC"}


@dataclass
class Value:
    """A source-framework activation: its IR tensor, source shape and element order."""

    ir: str
    src_shape: tuple[int, ...]
    perm: np.ndarray | None = None  # ir_flat[i] = src_flat[perm[i]]; None: natural order


def ir_shape_of(src: Sequence[int]) -> tuple[int, ...]:
    src = tuple(int(d) for d in src)
    if len(src) == 4:
        return (1, src[2], src[3], src[1])
    if len(src) == 3:
        return (1, 1, src[2], src[1])
    if len(src) == 2:
        return (1, src[1])
    raise ValueError(f"activations of rank {len(src)} are not supported: {src}")


def natural_perm(src: Sequence[int]) -> np.ndarray:
    idx = np.arange(int(np.prod(src))).reshape(src)
    if len(src) == 4:
        idx = idx.transpose(0, 2, 3, 1)
    elif len(src) == 3:
        idx = idx.transpose(0, 2, 1)
    return idx.ravel()


class GraphBuilder:
    """Accumulates IR nodes; ``frontend_ops`` is the frontend's list of supported op types."""

    def __init__(self, frontend_ops: Iterable[str]) -> None:
        self.graph = Graph({}, [], [], [], "NHWC")
        self.values: dict[str, Value] = {}
        self.consts: dict[str, np.ndarray] = {}
        self.consumed: set[str] = set()  # values changed in place by a folded constant add
        self.frontend_ops = sorted(frontend_ops)
        self.op_type, self.node_name = "?", "?"

    # ---- errors and context ------------------------------------------
    @contextmanager
    def at(self, op_type: str, node_name: str):
        """Attribute errors raised inside the block to this source node."""
        self.op_type, self.node_name = op_type, node_name
        yield

    def unsupported(self, problem: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.op_type, self.node_name, problem, self.frontend_ops)

    # ---- values --------------------------------------------------------
    def add_input(self, name: str, src_shape: Sequence[int]) -> None:
        shape = (1,) + tuple(int(d) for d in src_shape[1:])
        if len(shape) not in LAYOUT_OF_RANK:
            raise self.unsupported(f"input {name!r} of rank {len(shape)}: need 2, 3 or 4")
        if not self.graph.inputs:
            self.graph.source_layout = LAYOUT_OF_RANK[len(shape)]
        self._new_tensor(name, ir_shape_of(shape))
        self.graph.inputs.append(name)
        self.values[name] = Value(name, shape)

    def set_const(self, name: str, array: np.ndarray) -> None:
        self.consts[name] = np.asarray(array)

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            raise self.unsupported(f"input {name!r} must be a constant")
        return self.consts[name]

    def value(self, name: str) -> Value:
        if name in self.consumed:
            raise self.unsupported(f"{name!r} is read after a constant was added to it in "
                                   "place (as the bias of its producer)")
        if name not in self.values:
            raise self.unsupported(f"input {name!r} must be an activation computed by the graph")
        return self.values[name]

    def alias(self, name: str, src: str) -> None:
        """``name`` is the same value as ``src`` (identity, dropout, no-op reshape)."""
        if src in self.consts:
            self.consts[name] = self.consts[src]
        else:
            self.values[name] = self.value(src)

    def _new_tensor(self, name: str, shape: tuple[int, ...], data: np.ndarray | None = None,
                    dtype: str = "float32") -> str:
        name = self.graph.unique_name(name)
        if data is not None:
            data = np.ascontiguousarray(data, dtype=np.float32)
        self.graph.add_tensor(Tensor(name, shape, dtype, data))
        return name

    def _node(self, op: str, name: str, inputs: list[str], out: str, src_shape: Sequence[int],
              attrs: dict, perm: np.ndarray | None = None) -> Value:
        node = Node(self.graph.unique_name(name), op, inputs, [], attrs)
        shapes = [self.graph.tensors[i].shape for i in inputs]
        ir_shape = get_op(op, node).infer_shape(node, shapes)[0]
        node.outputs = [self._new_tensor(out, ir_shape)]
        self.graph.nodes.append(node)
        value = Value(node.outputs[0], tuple(int(d) for d in src_shape), perm)
        self.values[out] = value
        return value

    def _weight(self, name: str, data: np.ndarray) -> str:
        return self._new_tensor(f"{name}.weight", data.shape, data)

    def _bias(self, name: str, data: np.ndarray | None, n: int) -> str:
        b = np.zeros(n, np.float32) if data is None else np.asarray(data, np.float32).reshape(n)
        return self._new_tensor(f"{name}.bias", (n,), b)

    def _spatial(self, x: Value, what: str) -> int:
        if len(x.src_shape) not in (3, 4):
            raise self.unsupported(f"{what} needs an NCHW or NCL input, got {x.src_shape}")
        return len(x.src_shape) - 2

    # ---- ops -----------------------------------------------------------
    def conv(self, name: str, out: str, x_name: str, w: np.ndarray, b: np.ndarray | None,
             strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int],
             groups: int) -> Value:
        """Conv with PyTorch/ONNX semantics: ``pads`` = begins then ends per spatial axis."""
        x = self.value(x_name)
        nsp = self._spatial(x, "Conv")
        if w.ndim != nsp + 2:
            raise self.unsupported(f"weight of shape {w.shape} for a {nsp}-D conv")
        if any(int(d) != 1 for d in dilations):
            raise self.unsupported(f"dilation {tuple(dilations)} (only dilation 1 is supported)")
        if nsp == 1:
            w = w[:, :, None, :]
            strides, pads = (1, strides[0]), (0, pads[0], 0, pads[1])
        w_ohwi = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        c_out, kh, kw = w_ohwi.shape[:3]
        _, h, wd, c_in = self.graph.tensors[x.ir].shape
        if w_ohwi.shape[3] * groups != c_in:
            raise self.unsupported(f"weight {w.shape} with groups={groups} does not fit "
                                   f"{c_in} input channels")
        sh, sw = int(strides[0]), int(strides[1])
        pad = (int(pads[0]), int(pads[1]), trim_after(h, kh, sh, int(pads[0]), int(pads[2])),
               trim_after(wd, kw, sw, int(pads[1]), int(pads[3])))
        attrs = {"stride": (sh, sw), "pad": pad, "groups": int(groups), "dilation": (1, 1),
                 "act": "none"}
        inputs = [x.ir, self._weight(name, w_ohwi), self._bias(name, b, c_out)]
        return self._conv_like("conv2d", name, out, inputs, attrs, x, c_out)

    def _conv_like(self, op: str, name: str, out: str, inputs: list[str], attrs: dict,
                   x: Value, channels: int) -> Value:
        node = Node(name, op, inputs, [], attrs)
        _, ho, wo, _ = get_op(op).infer_shape(
            node, [self.graph.tensors[i].shape for i in inputs])[0]
        src = (1, channels, ho, wo) if len(x.src_shape) == 4 else (1, channels, wo)
        return self._node(op, name, inputs, out, src, attrs)

    def pool(self, kind: str, name: str, out: str, x_name: str, kernel: Sequence[int],
             strides: Sequence[int], pads: Sequence[int], ceil_mode: bool = False,
             count_include_pad: bool = False) -> Value:
        """``kind`` 'max' | 'avg'; PyTorch/ONNX semantics as in ``conv``."""
        x = self.value(x_name)
        nsp = self._spatial(x, f"{kind} pooling")
        if ceil_mode:
            raise self.unsupported("ceil_mode=True is not supported")
        if nsp == 1:
            kernel, strides, pads = (1, kernel[0]), (1, strides[0]), (0, pads[0], 0, pads[1])
        kh, kw, sh, sw = (int(v) for v in (*kernel, *strides))
        _, h, wd, c = self.graph.tensors[x.ir].shape
        pad = (int(pads[0]), int(pads[1]), trim_after(h, kh, sh, int(pads[0]), int(pads[2])),
               trim_after(wd, kw, sw, int(pads[1]), int(pads[3])))
        if kind == "avg" and count_include_pad and any(pad):
            raise self.unsupported("average pooling that counts padded cells "
                                   "(count_include_pad) is not supported")
        attrs = {"kernel": (kh, kw), "stride": (sh, sw), "pad": pad}
        op = "maxpool2d" if kind == "max" else "avgpool2d"
        return self._conv_like(op, name, out, [x.ir], attrs, x, c)

    def pad(self, name: str, out: str, x_name: str, pads: Sequence[int], value: float,
            mode: str = "constant") -> Value:
        """Padding with ONNX semantics: ``pads`` = begins then ends of every source axis."""
        x = self.value(x_name)
        if mode != "constant":
            raise self.pad_mode_unsupported(mode)
        rank = len(x.src_shape)
        pads = [int(p) for p in pads]
        if len(pads) != 2 * rank:
            raise self.unsupported(f"Pad with {len(pads)} pads for a rank-{rank} input "
                                   f"{x.src_shape} (needs {2 * rank})")
        begins, ends = pads[:rank], pads[rank:]
        if min(pads) < 0:
            raise self.unsupported(f"Pad with negative pads {tuple(pads)} (cropping) is not "
                                   "supported: crop the input before the model, or drop the "
                                   "cropping")
        if any(begins[:2]) or any(ends[:2]):
            raise self.unsupported(f"Pad of the batch or channel axis (pads {tuple(pads)} of "
                                   f"{x.src_shape}): only the spatial axes (H and W, or L) "
                                   "can be padded; remove the channel padding from the "
                                   "model (before a conv, zero channels add nothing: drop "
                                   "their weights instead)")
        if value != 0.0:
            raise self.unsupported(f"Pad with the value {value}: only zero padding (real 0, "
                                   "the int8 zero point) is supported; pad with 0")
        h0, h1 = (0, 0) if rank == 3 else (begins[2], ends[2])  # NCL: L is the IR's W
        pad = (h0, begins[-1], h1, ends[-1])
        src = [d + b + e for d, b, e in zip(x.src_shape, begins, ends, strict=True)]
        return self._node("pad", name, [x.ir], out, src, {"pad": pad})

    def pad_mode_unsupported(self, mode: str) -> UnsupportedOpError:
        """The error for a padding that repeats the input (reflect, edge, circular...)."""
        return self.unsupported(f"Pad with mode {mode}: only constant zero padding has an "
                                "int8 kernel in mcutl; pad with zeros instead (nn.ZeroPad2d, "
                                "F.pad(x, pads) with mode='constant', Keras padding='same') "
                                "and retrain or fine-tune the model")

    def global_avgpool(self, name: str, out: str, x_name: str, keepdims: bool = True) -> Value:
        x = self.value(x_name)
        self._spatial(x, "global average pooling")
        c = x.src_shape[1]
        src = (1, c) + (1,) * (len(x.src_shape) - 2)
        v = self._node("global_avgpool", name, [x.ir], out if keepdims else f"{out}.keep",
                       src, {})
        if keepdims:
            return v
        self.values[f"{out}.keep"] = v
        return self.reshape(f"{name}.squeeze", out, f"{out}.keep", (1, c))

    def mean(self, name: str, out: str, x_name: str, axes: Sequence[int],
             keepdims: bool) -> Value:
        x = self.value(x_name)
        rank = len(x.src_shape)
        spatial = set(range(2, rank))
        norm = {int(a) % rank for a in axes}
        if rank < 3 or norm != spatial:
            raise self.unsupported(f"mean over axes {tuple(axes)} of {x.src_shape}: only the "
                                   "mean over all spatial axes is supported")
        return self.global_avgpool(name, out, x_name, keepdims)

    def act(self, name: str, out: str, x_name: str, kind: str) -> Value:
        """``kind`` 'relu' | 'relu6' | 'none' (identity)."""
        x = self.value(x_name)
        if kind == "none":
            self.values[out] = x
            return x
        return self._node(kind, name, [x.ir], out, x.src_shape, {}, x.perm)

    def clip(self, name: str, out: str, x_name: str, lo: float, hi: float) -> Value:
        if lo == 0.0 and hi == 6.0:
            return self.act(name, out, x_name, "relu6")
        if lo == 0.0 and hi == float("inf"):
            return self.act(name, out, x_name, "relu")
        if lo == float("-inf") and hi == float("inf"):
            return self.act(name, out, x_name, "none")
        raise self.unsupported(f"clip to [{lo}, {hi}]: only [0, 6] (relu6) and [0, inf) "
                               "(relu) are supported")

    def batchnorm(self, name: str, out: str, x_name: str, gamma: np.ndarray, beta: np.ndarray,
                  mean: np.ndarray, var: np.ndarray, eps: float) -> Value:
        x = self.value(x_name)
        params = [self._new_tensor(f"{name}.{k}", (len(a),), np.asarray(a).reshape(-1))
                  for k, a in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))]
        return self._node("batchnorm", name, [x.ir, *params], out, x.src_shape,
                          {"eps": float(eps)}, x.perm)

    def add(self, name: str, out: str, a_name: str, b_name: str) -> Value:
        if self.is_const(a_name):
            a_name, b_name = b_name, a_name
        if self.is_const(b_name):
            return self._add_const(out, a_name, self.const(b_name))
        a, b = self.value(a_name), self.value(b_name)
        if a.src_shape != b.src_shape:
            raise self.unsupported(f"add of shapes {a.src_shape} and {b.src_shape}: "
                                   "broadcasting is not supported")
        if not _same_perm(a.perm, b.perm):
            raise self.unsupported("add of two flattened tensors in different element orders")
        return self._node("add", name, [a.ir, b.ir], out, a.src_shape, {"act": "none"}, a.perm)

    def _add_const(self, out: str, x_name: str, c: np.ndarray) -> Value:
        """x + per-channel constant: folded into the bias of the conv/linear producing x."""
        x = self.value(x_name)
        channels = x.src_shape[1]
        vec = _channel_vector(c, len(x.src_shape), channels)
        prod = self.graph.producer(x.ir)
        readers = [n for n in self.graph.nodes if x.ir in n.inputs]
        if (vec is None or prod is None or readers or x.perm is not None
                or not get_op(prod.op, prod).absorb_affine(
                    self.graph, prod, np.ones(channels, np.float32), vec)):
            raise self.unsupported("adding a constant is supported only as the bias of the "
                                   "conv/linear that directly produces the other operand")
        self.values[out] = x
        self.consumed.add(x_name)
        return x

    def linear(self, name: str, out: str, x_name: str, w: np.ndarray,
               b: np.ndarray | None) -> Value:
        """``y = x @ w.T + b`` with ``w`` (out, in)."""
        x = self.value(x_name)
        if len(x.src_shape) != 2 or w.ndim != 2 or w.shape[1] != x.src_shape[1]:
            raise self.unsupported(f"linear needs (1, in) features and (out, in) weights; got "
                                   f"{x.src_shape} and {w.shape}")
        if x.perm is not None:
            w = w[:, x.perm]
        inputs = [x.ir, self._weight(name, np.ascontiguousarray(w)),
                  self._bias(name, b, w.shape[0])]
        return self._node("linear", name, inputs, out, (1, w.shape[0]), {"act": "none"})

    def reshape(self, name: str, out: str, x_name: str, shape: Sequence[int]) -> Value:
        """Source reshape/flatten/squeeze/unsqueeze; ``shape`` may hold one -1 and 0s."""
        x = self.value(x_name)
        new = _resolve_shape(x.src_shape, shape)
        if new is None:
            raise self.unsupported(f"reshape {x.src_shape} -> {tuple(shape)}")
        if new[0] != 1 or len(new) not in LAYOUT_OF_RANK:
            raise self.unsupported(f"reshape {x.src_shape} -> {new}: batch must stay 1 and "
                                   "the rank must be 2, 3 or 4")
        in_perm = x.perm if x.perm is not None else natural_perm(x.src_shape)
        if np.array_equal(in_perm, natural_perm(new)):
            perm = None
        elif len(new) == 2:
            perm = in_perm
        else:
            raise self.unsupported(f"reshape {x.src_shape} -> {new} reorders channel-last data")
        if ir_shape_of(new) == self.graph.tensors[x.ir].shape:
            v = Value(x.ir, new, perm)
            self.values[out] = v
            return v
        return self._node("reshape", name, [x.ir], out, new,
                          {"shape": ir_shape_of(new)}, perm)

    def concat(self, name: str, out: str, names: Sequence[str], axis: int) -> Value:
        xs = [self.value(n) for n in names]
        rank = len(xs[0].src_shape)
        axis = int(axis) % rank
        if any(v.perm is not None for v in xs) or axis == 0:
            raise self.unsupported(f"concat along axis {axis} of flattened or batched values")
        ir_axis = {4: {1: 3, 2: 1, 3: 2}, 3: {1: 3, 2: 2}, 2: {1: 1}}[rank][axis]
        src = list(xs[0].src_shape)
        src[axis] = sum(v.src_shape[axis] for v in xs)
        return self._node("concat", name, [v.ir for v in xs], out, src, {"axis": ir_axis})

    # ---- result ----------------------------------------------------------
    def finish(self, outputs: Sequence[str]) -> Graph:
        """Set the outputs, prune, fold batchnorm / fuse relus, validate; return the graph."""
        g = self.graph
        for name in outputs:
            v = self.value(name)
            if v.perm is not None:
                raise self.unsupported(f"graph output {name!r} is a flatten of a map in "
                                       "channel-first order; flatten before a linear only")
            g.outputs.append(v.ir)
        g.prune()
        simplify(g)
        validate_graph(g)
        return g


def _same_perm(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def _channel_vector(c: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``c`` as a (channels,) vector if it broadcasts along the channel axis only."""
    c = np.asarray(c, np.float32)
    if c.ndim > rank:
        return None
    aligned = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(aligned) if i != 1) or aligned[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,)).astype(np.float32)


def _resolve_shape(src: tuple[int, ...], shape: Sequence[int]) -> tuple[int, ...] | None:
    """ONNX/torch target shape with 0 (copy) and one -1 (infer) resolved, or None."""
    out = [src[i] if int(d) == 0 and i < len(src) else int(d) for i, d in enumerate(shape)]
    total = int(np.prod(src))
    if out.count(-1) > 1:
        return None
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out) if int(np.prod(out)) == total else None
