"""ONNX -> float IR (channel-last), for the ops PyTorch's exporters emit.

Constant sub-graphs (Shape, Gather, Concat... of static shapes) are evaluated at
import; every other op maps onto one GraphBuilder call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from mcutl.errors import McutlError
from mcutl.frontend.builder import GraphBuilder
from mcutl.ir.graph import Graph, GraphError
from mcutl.validate import InputError, ModelFileError

Handler = Callable[[GraphBuilder, "_Node"], None]


class _Node:
    """An ONNX node with decoded attributes and a stable name."""

    def __init__(self, proto: onnx.NodeProto, index: int) -> None:
        self.op_type = proto.op_type
        self.name = proto.name or f"{proto.op_type}_{index}"
        self.inputs = list(proto.input)
        self.outputs = list(proto.output)
        self.attrs: dict[str, Any] = {a.name: helper.get_attribute_value(a)
                                      for a in proto.attribute}

    def attr(self, key: str, default: Any = None) -> Any:
        value = self.attrs.get(key, default)
        return value.decode() if isinstance(value, bytes) else value

    def opt_input(self, i: int) -> str:
        return self.inputs[i] if i < len(self.inputs) else ""


def _conv(b: GraphBuilder, n: _Node) -> None:
    w = b.const(n.inputs[1])
    nsp = w.ndim - 2
    _no_auto_pad(b, n)
    bias = b.const(n.inputs[2]) if n.opt_input(2) else None
    b.conv(n.name, n.outputs[0], n.inputs[0], w, bias, n.attr("strides", [1] * nsp),
           n.attr("pads", [0] * 2 * nsp), n.attr("dilations", [1] * nsp), n.attr("group", 1))


def _pool(kind: str) -> Handler:
    def handle(b: GraphBuilder, n: _Node) -> None:
        _no_auto_pad(b, n)
        kernel = n.attr("kernel_shape")
        nsp = len(kernel)
        if any(d != 1 for d in n.attr("dilations", [1] * nsp)):
            raise b.unsupported("pooling with dilation")
        if len(n.outputs) > 1 and n.outputs[1]:
            raise b.unsupported("MaxPool indices output")
        b.pool(kind, n.name, n.outputs[0], n.inputs[0], kernel, n.attr("strides", [1] * nsp),
               n.attr("pads", [0] * 2 * nsp), bool(n.attr("ceil_mode", 0)),
               bool(n.attr("count_include_pad", 0)))
    return handle


def _no_auto_pad(b: GraphBuilder, n: _Node) -> None:
    if n.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise b.unsupported(f"auto_pad={n.attr('auto_pad')}: export with explicit pads")


def _pad(b: GraphBuilder, n: _Node) -> None:
    """Pad (opset 2..: pads/value attrs; 11..: pads, constant_value, axes inputs)."""
    mode = n.attr("mode", "constant")
    if mode != "constant":
        raise b.pad_mode_unsupported(mode)
    x = b.value(n.inputs[0])
    pads = n.attr("pads")
    if n.opt_input(1):
        if not b.is_const(n.inputs[1]):
            raise b.unsupported("Pad whose pads are computed from an activation at run time; "
                                "export with static input shapes")
        pads = [int(p) for p in b.const(n.inputs[1]).reshape(-1)]
    value = float(n.attr("value", 0.0))
    if n.opt_input(2):
        if not b.is_const(n.inputs[2]):
            raise b.unsupported("Pad with a constant_value that is not a constant (computed "
                                "by the graph); only zero padding is supported: make it the "
                                "constant 0 or omit it")
        c = b.const(n.inputs[2]).reshape(-1)
        value = float(c[0]) if c.size else 0.0
    rank = len(x.src_shape)
    if n.opt_input(3):
        axes = [int(a) % rank for a in b.const(n.inputs[3]).reshape(-1)]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[rank + a] = pads[k], pads[len(axes) + k]
        pads = full
    b.pad(n.name, n.outputs[0], n.inputs[0], pads or [], value)


def _batchnorm(b: GraphBuilder, n: _Node) -> None:
    if len([o for o in n.outputs if o]) > 1 or n.attr("training_mode", 0):
        raise b.unsupported("BatchNormalization in training mode")
    gamma, beta, mean, var = (b.const(i) for i in n.inputs[1:5])
    b.batchnorm(n.name, n.outputs[0], n.inputs[0], gamma, beta, mean, var,
                n.attr("epsilon", 1e-5))


def _clip(b: GraphBuilder, n: _Node) -> None:
    lo, hi = n.attr("min", float("-inf")), n.attr("max", float("inf"))
    if n.opt_input(1):
        lo = float(b.const(n.inputs[1]))
    if n.opt_input(2):
        hi = float(b.const(n.inputs[2]))
    b.clip(n.name, n.outputs[0], n.inputs[0], float(lo), float(hi))


def _reduce_mean(b: GraphBuilder, n: _Node) -> None:
    axes = n.attr("axes")
    if n.opt_input(1):
        axes = [int(a) for a in b.const(n.inputs[1]).reshape(-1)]
    if axes is None:
        raise b.unsupported("ReduceMean over all axes")
    b.mean(n.name, n.outputs[0], n.inputs[0], axes, bool(n.attr("keepdims", 1)))


def _flatten(b: GraphBuilder, n: _Node) -> None:
    if n.attr("axis", 1) != 1:
        raise b.unsupported(f"Flatten axis={n.attr('axis')} (only 1)")
    b.reshape(n.name, n.outputs[0], n.inputs[0], (1, -1))


def _reshape(b: GraphBuilder, n: _Node) -> None:
    if n.attr("allowzero", 0):
        raise b.unsupported("Reshape with allowzero=1")
    b.reshape(n.name, n.outputs[0], n.inputs[0], [int(d) for d in b.const(n.inputs[1])])


def _squeeze(unsqueeze: bool) -> Handler:
    def handle(b: GraphBuilder, n: _Node) -> None:
        axes = n.attr("axes")
        if n.opt_input(1):
            axes = [int(a) for a in b.const(n.inputs[1]).reshape(-1)]
        shape = list(b.value(n.inputs[0]).src_shape)
        if unsqueeze:
            new = _unsqueeze_shape(shape, axes or [])
        else:
            rank = len(shape)
            drop = {a % rank for a in axes} if axes else {i for i, d in enumerate(shape) if d == 1}
            new = [d for i, d in enumerate(shape) if i not in drop]
        b.reshape(n.name, n.outputs[0], n.inputs[0], new)
    return handle


def _unsqueeze_shape(shape: list[int], axes: list[int]) -> list[int]:
    rank = len(shape) + len(axes)
    new = list(shape)
    for a in sorted(a % rank for a in axes):
        new.insert(a, 1)
    return new


def _gemm(b: GraphBuilder, n: _Node) -> None:
    if n.attr("transA", 0):
        raise b.unsupported("Gemm with transA=1")
    w = b.const(n.inputs[1]).astype(np.float32)
    w = w if n.attr("transB", 0) else w.T
    w = w * np.float32(n.attr("alpha", 1.0))
    bias = None
    if n.opt_input(2):
        bias = np.broadcast_to(b.const(n.inputs[2]).astype(np.float32).reshape(-1),
                               (w.shape[0],)) * np.float32(n.attr("beta", 1.0))
    b.linear(n.name, n.outputs[0], n.inputs[0], np.ascontiguousarray(w), bias)


def _matmul(b: GraphBuilder, n: _Node) -> None:
    w = b.const(n.inputs[1])
    if w.ndim != 2:
        raise b.unsupported("MatMul needs a constant 2-D right operand")
    b.linear(n.name, n.outputs[0], n.inputs[0], np.ascontiguousarray(w.T), None)


def _relu(b: GraphBuilder, n: _Node) -> None:
    b.act(n.name, n.outputs[0], n.inputs[0], "relu")


def _identity(b: GraphBuilder, n: _Node) -> None:
    b.alias(n.outputs[0], n.inputs[0])


def _add(b: GraphBuilder, n: _Node) -> None:
    b.add(n.name, n.outputs[0], n.inputs[0], n.inputs[1])


def _gap(b: GraphBuilder, n: _Node) -> None:
    b.global_avgpool(n.name, n.outputs[0], n.inputs[0])


def _concat(b: GraphBuilder, n: _Node) -> None:
    b.concat(n.name, n.outputs[0], n.inputs, n.attr("axis"))


HANDLERS: dict[str, Handler] = {
    "Conv": _conv, "BatchNormalization": _batchnorm, "Relu": _relu, "Clip": _clip,
    "Add": _add, "AveragePool": _pool("avg"), "MaxPool": _pool("max"),
    "GlobalAveragePool": _gap, "ReduceMean": _reduce_mean, "Flatten": _flatten,
    "Reshape": _reshape, "Gemm": _gemm, "MatMul": _matmul, "Concat": _concat,
    "Identity": _identity, "Dropout": _identity, "Squeeze": _squeeze(False),
    "Unsqueeze": _squeeze(True), "Pad": _pad,
}

#: Ops evaluated in numpy when all their inputs are constants.
#: (The exporter's pad arithmetic is ConstantOfShape, Concat, Reshape, Slice, Transpose,
#: Cast: it folds to the constant pads of the Pad that follows.)
CONST_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Reshape",
             "Add", "Sub", "Mul", "Div", "Identity", "Transpose", "ConstantOfShape", "Slice")

SUPPORTED = sorted(set(HANDLERS) | {"Constant"})
MAX_CONST = 1 << 22  #: elements of a constant computed at import (ConstantOfShape)


def _const_eval(b: GraphBuilder, n: _Node) -> bool:
    """Evaluate ``n`` if its inputs are constants (or it is Shape); True if done."""
    ins = [i for i in n.inputs if i]
    if n.op_type == "Shape" and ins and not b.is_const(ins[0]):
        b.set_const(n.outputs[0], np.array(b.value(ins[0]).src_shape, np.int64))
        return True
    if n.op_type == "ConstantOfShape" and ins and b.is_const(ins[0]):
        fill = n.attrs.get("value")
        value = numpy_helper.to_array(fill).reshape(-1) if fill is not None else np.zeros(
            1, np.float32)
        shape = [int(d) for d in b.const(ins[0]).reshape(-1)]
        if min(shape, default=1) < 0 or int(np.prod(shape, dtype=np.float64)) > MAX_CONST:
            raise b.unsupported(f"ConstantOfShape of shape {shape}: not shape or pad "
                                "arithmetic (negative or too large); re-export the model")
        b.set_const(n.outputs[0], np.full(shape, value[0], value.dtype))
        return True
    if n.op_type not in CONST_OPS or not ins or not all(b.is_const(i) for i in ins):
        return False
    x = [b.const(i) for i in ins]
    op = n.op_type
    if op in ("Identity", "Cast"):
        y = x[0]
    elif op == "Shape":
        y = np.array(x[0].shape, np.int64)
    elif op == "Gather":
        y = np.take(x[0], x[1], axis=n.attr("axis", 0))
    elif op in ("Unsqueeze", "Squeeze"):
        axes = n.attr("axes") if len(x) < 2 else [int(a) for a in x[1].reshape(-1)]
        if op == "Unsqueeze":
            y = x[0].reshape(_unsqueeze_shape(list(x[0].shape), axes))
        else:
            y = np.squeeze(x[0], axis=tuple(axes) if axes else None)
    elif op == "Concat":
        y = np.concatenate([np.atleast_1d(v) for v in x], axis=n.attr("axis"))
    elif op == "Reshape":
        y = x[0].reshape([int(d) for d in x[1]])
    elif op == "Transpose":
        y = np.transpose(x[0], n.attr("perm"))
    elif op == "Slice":
        y = _slice(n, x)
    else:
        y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
             "Div": np.divide}[op](x[0], x[1])
    if op == "Cast":
        y = y.astype(helper.tensor_dtype_to_np_dtype(n.attr("to")))
    b.set_const(n.outputs[0], np.asarray(y))
    return True


def _slice(n: _Node, x: list[np.ndarray]) -> np.ndarray:
    """Slice of a constant (opset 1..9: attrs; 10..: starts, ends, axes, steps inputs)."""
    data = x[0]
    if len(x) > 1:
        starts, ends = (list(v.reshape(-1)) for v in x[1:3])
        axes = list(x[3].reshape(-1)) if len(x) > 3 else list(range(len(starts)))
        steps = list(x[4].reshape(-1)) if len(x) > 4 else [1] * len(starts)
    else:
        starts, ends = n.attr("starts"), n.attr("ends")
        axes = n.attr("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        # ONNX clamps out-of-range starts/ends (INT64 max means "to the end"), as Python does
        index[int(a) % data.ndim] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def from_onnx(model: onnx.ModelProto | str | Path | bytes,
              input_shape: Sequence[int] | None = None) -> Graph:
    """Import an ONNX model (object, path or serialized bytes) as a float IR graph.

    ``input_shape`` (batch included) gives the sizes of the first input's symbolic
    dimensions (a symbolic batch is 1 anyway); its static ones must agree."""
    what = str(model) if isinstance(model, str | Path) else "the ONNX model"
    if isinstance(model, bytes):
        model = _decode(model, what)
    elif not isinstance(model, onnx.ModelProto):
        model = _decode(Path(model).read_bytes(), what)
    _check(model, what)
    g = model.graph
    b = GraphBuilder(SUPPORTED)
    for init in g.initializer:
        b.set_const(init.name, _tensor_value(init, what))
    first = True
    for inp in g.input:
        if b.is_const(inp.name):
            continue
        b.add_input(inp.name, _input_dims(inp, input_shape if first else None, what))
        first = False
    _reject_unknown_ops(b, g)
    try:
        return _lower(b, g)
    except GraphError as exc:
        raise ModelFileError(f"{what}: the graph is malformed ({exc}); re-export it with "
                             "torch.onnx.export") from exc


def _decode(data: bytes, what: str) -> onnx.ModelProto:
    try:
        return onnx.load_from_string(data)
    except DecodeError as exc:
        raise ModelFileError(f"{what}: not a valid ONNX file ({len(data)} bytes; protobuf "
                             f"decode failed: {exc}); re-export it with torch.onnx.export"
                             ) from exc


def _check(model: onnx.ModelProto, what: str) -> None:
    if not model.graph.node and not model.graph.input:
        raise ModelFileError(f"{what}: not an ONNX model (no graph: empty or another kind of "
                             "file); re-export it with torch.onnx.export")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:
        problem = str(exc).strip().splitlines()[0]
        raise ModelFileError(f"{what}: not a valid ONNX model ({problem}); re-export it with "
                             "torch.onnx.export") from exc


def _tensor_value(init: onnx.TensorProto, what: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(init)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{what}: initializer {init.name!r} cannot be decoded ({exc}); "
                             "re-export the model") from exc


def _input_dims(inp: onnx.ValueInfoProto, given: Sequence[int] | None, what: str
                ) -> list[int]:
    """The input's static shape; symbolic dimensions from ``given`` (batch: 1)."""
    dims = list(inp.type.tensor_type.shape.dim)
    names = [str(d.dim_value) if d.dim_value > 0 else (d.dim_param or "?") for d in dims]
    if given is not None and len(given) != len(dims):
        raise InputError(f"--input-shape {','.join(map(str, given))} has {len(given)} sizes "
                         f"but input {inp.name!r} of {what} has {len(dims)}: "
                         f"[{', '.join(names)}]")
    out = []
    for k, d in enumerate(dims):
        if d.dim_value > 0:
            if given is not None and k > 0 and int(given[k]) != d.dim_value:
                raise InputError(f"--input-shape: size {given[k]} at axis {k} but input "
                                 f"{inp.name!r} of {what} has {d.dim_value} there "
                                 f"([{', '.join(names)}])")
            out.append(d.dim_value)
        elif k == 0:
            out.append(1)  # the IR has batch 1
        elif given is not None and int(given[k]) > 0:
            out.append(int(given[k]))
        else:
            example = ",".join(["1", *(n if n.isdigit() else "N" for n in names[1:])])
            raise InputError(f"{what}: input {inp.name!r} has shape [{', '.join(names)}] with "
                             f"the symbolic dimension {names[k]!r} at axis {k}; give its size "
                             f"with --input-shape (e.g. --input-shape {example})")
    return out


def _reject_unknown_ops(b: GraphBuilder, g: onnx.GraphProto) -> None:
    """Name the ops no rule can import before lowering anything: an op like Transpose is
    importable only on constants, so lowering would stop at it and hide an LSTM after it.
    Layers with weights (an LSTM, not the Expand of its initial state) are named first."""
    known = set(HANDLERS) | set(CONST_OPS) | {"Constant"}
    weights = {t.name for t in g.initializer}
    bad = [(i, p) for i, p in enumerate(g.node) if p.op_type not in known]
    if not bad:
        return
    bad.sort(key=lambda ip: (not any(x in weights for x in ip[1].input), ip[0]))
    i, proto = bad[0]
    others = sorted({p.op_type for _, p in bad[1:]} - {proto.op_type})
    also = f" (also unsupported here: {', '.join(others)})" if others else ""
    with b.at(proto.op_type, proto.name or f"{proto.op_type}_{i}"):
        raise b.unsupported(f"no import rule for this op{also}")


def _lower(b: GraphBuilder, g: onnx.GraphProto) -> Graph:
    for i, proto in enumerate(g.node):
        n = _Node(proto, i)
        with b.at(n.op_type, n.name):
            try:
                _lower_node(b, n)
            except (McutlError, GraphError):
                raise
            except (ValueError, IndexError, TypeError, KeyError, OverflowError,
                    MemoryError) as exc:  # attributes or constants that contradict each other
                problem = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
                raise b.unsupported(f"inconsistent node in the file ({type(exc).__name__}: "
                                    f"{problem}); re-export the model with torch.onnx.export"
                                    ) from exc
    return b.finish([o.name for o in g.output])


def _lower_node(b: GraphBuilder, n: _Node) -> None:
    if n.op_type == "Constant":
        b.set_const(n.outputs[0], _constant_value(b, n))
    elif _const_eval(b, n):
        return
    elif n.op_type in HANDLERS:
        HANDLERS[n.op_type](b, n)
    elif n.op_type in CONST_OPS:
        raise b.unsupported(f"{n.op_type} is imported only where it computes constants "
                            "(shape or pad arithmetic); here it reads an activation")
    else:
        raise b.unsupported("no import rule for this op")


def _constant_value(b: GraphBuilder, n: _Node) -> np.ndarray:
    if "value" in n.attrs:
        return numpy_helper.to_array(n.attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64),
                       ("value_floats", np.float32), ("value_ints", np.int64)):
        if key in n.attrs:
            return np.array(n.attrs[key], dtype)
    raise b.unsupported("Constant without a dense value")
