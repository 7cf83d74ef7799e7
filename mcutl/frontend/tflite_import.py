"""int8 .tflite -> already-quantised IR (no re-quantisation), source layout NHWC.

TFLite's SAME/VALID padding becomes explicit ``pad``; a PAD op feeding only convs is
folded into their ``pad`` (PAD fills with the zero point = real 0, exactly what
conv padding means), any other PAD (before a pool, where zeros change the result)
becomes a standalone ``pad`` node. Depthwise weights 1HW(C*m) become OHWI (C*m, kh, kw, 1).
Weight and bias QuantParams always get ``axis=0`` (per-tensor ones are broadcast),
the IR convention PTQ also follows. QUANTIZE / DEQUANTIZE are accepted only at
the graph boundary, where they are dropped (the IR's graph input is int8).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcutl.errors import McutlError
from mcutl.frontend.tflite_reader import TfModel, TfOperator, TfTensor, read_tflite
from mcutl.ir.graph import Graph, GraphError, Node, QuantParams, Tensor
from mcutl.ops import UnsupportedOpError
from mcutl.ops._window import trim_after
from mcutl.ops.validate import validate_graph
from mcutl.tflite.builder import compute_padding
from mcutl.validate import ModelFileError

_ACTS = {"NONE": "none", "RELU": "relu", "RELU6": "relu6"}


class _Importer:
    def __init__(self, model: TfModel) -> None:
        self.m = model
        self.g = Graph({}, [], [], [], "NHWC")
        self.names: dict[int, str] = {}  # tflite tensor index -> IR tensor name
        self.alias: dict[int, int] = {}  # dropped boundary op: output index -> input index
        self.pads: dict[int, tuple[int, tuple[int, int, int, int]]] = {}  # PAD out -> (in, pad)
        self.op: TfOperator | None = None

    # ---- helpers ---------------------------------------------------------
    def fail(self, problem: str) -> UnsupportedOpError:
        op = self.op.op if self.op else "?"
        where = self._out_name() if self.op else "?"
        return UnsupportedOpError(op, where, problem, SUPPORTED)

    def _out_name(self) -> str:
        assert self.op is not None
        if not self.op.outputs:
            return f"#{self.op.index}"
        return f"#{self.op.index} -> {self.m.tensors[self.op.outputs[0]].name}"

    def t(self, index: int) -> TfTensor:
        return self.m.tensors[self.alias.get(index, index)]

    def name(self, index: int, weight_axis: bool = False) -> str:
        """IR name of tflite tensor ``index``, adding the IR tensor on first use."""
        index = self.alias.get(index, index)
        if index in self.names:
            return self.names[index]
        t = self.m.tensors[index]
        if t.dtype not in ("int8", "int32"):
            raise self.fail(f"tensor {t.name!r} is {t.dtype}; only int8 models are supported")
        quant = None
        if t.scale is not None and t.zero_point is not None:
            if weight_axis:
                n = t.shape[0]
                quant = QuantParams(np.broadcast_to(t.scale, (n,)).copy(),
                                    np.broadcast_to(t.zero_point, (n,)).copy(), axis=0)
            elif t.scale.size == 1:
                quant = QuantParams(t.scale, t.zero_point)
            else:
                raise self.fail(f"activation {t.name!r} is quantised per channel")
        name = t.name if t.name not in self.g.tensors else self.g.unique_name(t.name)
        self.g.add_tensor(Tensor(name, t.shape, t.dtype, t.data, quant))
        self.names[index] = name
        return name

    def node(self, op: str, inputs: list[str], out: str, attrs: dict) -> None:
        self.g.nodes.append(Node(out, op, inputs, [out], attrs))

    def act(self, opts: dict) -> str:
        act = opts.get("fused_activation", "NONE")
        if act not in _ACTS:
            raise self.fail(f"fused activation {act}")
        return _ACTS[act]

    def same_params(self, a: int, b: int, what: str) -> None:
        ta, tb = self.t(a), self.t(b)
        if not (np.array_equal(ta.scale, tb.scale)
                and np.array_equal(ta.zero_point, tb.zero_point)):
            raise self.fail(f"{what}: input and output quantisation differ (no rescaling)")

    def window(self, x: int, k: tuple[int, int], stride: tuple[int, int], padding: str
               ) -> tuple[int, tuple[int, int, int, int]]:
        """(real input index, explicit pad) of a windowed op, folding a PAD producer."""
        pre = (0, 0, 0, 0)
        if x in self.pads:
            x, pre = self.pads[x]
        _, h, w, _ = self.t(x).shape
        ph, pw = h + pre[0] + pre[2], w + pre[1] + pre[3]
        _, t, b = compute_padding(padding, ph, k[0], stride[0])
        _, left, r = compute_padding(padding, pw, k[1], stride[1])
        t, left, b, r = t + pre[0], left + pre[1], b + pre[2], r + pre[3]
        return x, (t, left, trim_after(h, k[0], stride[0], t, b),
                   trim_after(w, k[1], stride[1], left, r))

    def zero_bias(self, out: str, n: int, x: int, w: str) -> str:
        xs = self.t(x).scale
        wq = self.g.tensors[w].quant
        assert xs is not None and wq is not None
        scale = (np.float32(xs[0]) * wq.scale).astype(np.float32)
        name = self.g.unique_name(f"{out}.bias")
        self.g.add_tensor(Tensor(name, (n,), "int32", np.zeros(n, np.int32),
                                 QuantParams(scale, np.zeros(n, np.int32), axis=0)))
        return name

    # ---- driver ------------------------------------------------------------
    def run(self) -> Graph:
        ops = self._boundary(self.m.operators)
        for op in ops:
            self.op = op
            if op.op not in HANDLERS:
                raise self.fail("no import rule for this TFLite op")
            need = MIN_INPUTS.get(op.op, 1)
            if len(op.inputs) < need or not op.outputs or min(op.inputs[:need]) < 0:
                raise self.fail(f"{len(op.inputs)} inputs and {len(op.outputs)} outputs, needs "
                                f"{need} and 1 (the file is corrupt: convert the model again)")
            self._lower(op)
        self.op = None
        self.g.inputs = [self.name(i) for i in self.m.inputs]
        self.g.outputs = [self.name(i) for i in self.m.outputs]
        if len(self.g.tensors[self.g.inputs[0]].shape) == 2:
            self.g.source_layout = "NC"
        validate_graph(self.g)
        return self.g

    def _lower(self, op: TfOperator) -> None:
        """One operator; its options and tensors come from the file: values that contradict
        each other (a kernel larger than its input, per-channel scales of the wrong
        length) are reported as a bad operator, not as a crash."""
        try:
            HANDLERS[op.op](self, op)
        except McutlError:
            raise
        except (ValueError, IndexError) as exc:
            raise self.fail(f"inconsistent operator in the file ({exc}); convert the model "
                            "again") from exc

    def _boundary(self, ops: list[TfOperator]) -> list[TfOperator]:
        """Drop QUANTIZE of a graph input and DEQUANTIZE of a graph output."""
        kept = []
        for op in ops:
            self.op = op
            if op.op in ("QUANTIZE", "DEQUANTIZE") and not (op.inputs and op.outputs):
                raise self.fail("an input and an output are needed (the file is corrupt)")
            if op.op == "QUANTIZE" and op.inputs[0] in self.m.inputs:
                self.m.inputs = [op.outputs[0] if i == op.inputs[0] else i
                                 for i in self.m.inputs]
            elif op.op == "DEQUANTIZE" and op.outputs[0] in self.m.outputs:
                self.m.outputs = [op.inputs[0] if o == op.outputs[0] else o
                                  for o in self.m.outputs]
            elif op.op in ("QUANTIZE", "DEQUANTIZE"):
                raise self.fail("QUANTIZE/DEQUANTIZE inside the graph")
            else:
                kept.append(op)
        return kept


def _conv(imp: _Importer, op: TfOperator) -> None:
    o = op.options
    if (o.get("dilation_h", 1), o.get("dilation_w", 1)) != (1, 1):
        raise imp.fail("dilation other than 1")
    x_idx, w_idx = op.inputs[0], op.inputs[1]
    w_t = imp.t(w_idx)
    depthwise = op.op == "DEPTHWISE_CONV_2D"
    kh, kw = w_t.shape[1], w_t.shape[2]
    stride = (int(o["stride_h"]), int(o["stride_w"]))
    x_idx, pad = imp.window(x_idx, (kh, kw), stride, o["padding"])
    c_in = imp.t(x_idx).shape[3]
    out = imp.name(op.outputs[0])
    if depthwise:
        w_name = _depthwise_weight(imp, w_t)
        groups = c_in
    else:
        w_name = imp.name(w_idx, weight_axis=True)
        groups = c_in // w_t.shape[3]
    c_out = imp.g.tensors[w_name].shape[0]
    b = op.inputs[2] if len(op.inputs) > 2 else -1
    b_name = imp.name(b, weight_axis=True) if b >= 0 else imp.zero_bias(out, c_out, x_idx,
                                                                         w_name)
    imp.node("conv2d", [imp.name(x_idx), w_name, b_name], out,
             {"stride": stride, "pad": pad, "groups": groups, "dilation": (1, 1),
              "act": imp.act(o)})


def _depthwise_weight(imp: _Importer, w_t: TfTensor) -> str:
    """1HW(C*m) depthwise weights as OHWI (C*m, kh, kw, 1), params on axis 0."""
    if w_t.data is None or w_t.scale is None or w_t.zero_point is None:
        raise imp.fail(f"depthwise weights {w_t.name!r} must be a quantised constant")
    data = np.ascontiguousarray(w_t.data.transpose(3, 1, 2, 0))
    n = data.shape[0]
    quant = QuantParams(np.broadcast_to(w_t.scale, (n,)).copy(),
                        np.broadcast_to(w_t.zero_point, (n,)).copy(), axis=0)
    imp.g.add_tensor(Tensor(w_t.name, data.shape, "int8", data, quant))
    imp.names[w_t.index] = w_t.name
    return w_t.name


def _fully_connected(imp: _Importer, op: TfOperator) -> None:
    o = op.options
    if o.get("weights_format", 0) != 0:
        raise imp.fail("shuffled FULLY_CONNECTED weights")
    x = imp.name(op.inputs[0])
    w = imp.name(op.inputs[1], weight_axis=True)
    out = imp.name(op.outputs[0])
    n_in = imp.g.tensors[w].shape[1]
    if imp.g.tensors[x].shape != (1, n_in):
        flat = imp.g.unique_name(f"{x}/flat")
        src = imp.g.tensors[x]
        imp.g.add_tensor(Tensor(flat, (1, n_in), src.dtype, None, src.quant))
        imp.node("reshape", [x], flat, {"shape": (1, n_in)})
        x = flat
    b = op.inputs[2] if len(op.inputs) > 2 else -1
    b_name = imp.name(b, weight_axis=True) if b >= 0 else imp.zero_bias(
        out, imp.g.tensors[w].shape[0], op.inputs[0], w)
    imp.node("linear", [x, w, b_name], out, {"act": imp.act(o)})


def _add(imp: _Importer, op: TfOperator) -> None:
    imp.node("add", [imp.name(i) for i in op.inputs], imp.name(op.outputs[0]),
             {"act": imp.act(op.options)})


def _pool(imp: _Importer, op: TfOperator) -> None:
    o = op.options
    if imp.act(o) != "none":
        raise imp.fail("pooling with a fused activation")
    imp.same_params(op.inputs[0], op.outputs[0], op.op)
    k = (int(o["filter_h"]), int(o["filter_w"]))
    stride = (int(o["stride_h"]), int(o["stride_w"]))
    x_idx, pad = imp.window(op.inputs[0], k, stride, o["padding"])
    _, h, w, _ = imp.t(x_idx).shape
    out = imp.name(op.outputs[0])
    if op.op == "AVERAGE_POOL_2D" and k == (h, w) and imp.g.tensors[out].shape[1:3] == (1, 1):
        imp.node("global_avgpool", [imp.name(x_idx)], out, {})
        return
    kind = "avgpool2d" if op.op == "AVERAGE_POOL_2D" else "maxpool2d"
    imp.node(kind, [imp.name(x_idx)], out, {"kernel": k, "stride": stride, "pad": pad})


def _mean(imp: _Importer, op: TfOperator) -> None:
    axes = imp.t(op.inputs[1]).data
    if axes is None or sorted(int(a) % 4 for a in axes.reshape(-1)) != [1, 2]:
        raise imp.fail("MEAN over axes other than H and W")
    imp.same_params(op.inputs[0], op.outputs[0], "MEAN")
    x = imp.name(op.inputs[0])
    out = imp.name(op.outputs[0])
    if len(imp.g.tensors[out].shape) == 4:
        imp.node("global_avgpool", [x], out, {})
        return
    keep = imp.g.unique_name(f"{out}/keepdims")
    src = imp.g.tensors[x]
    imp.g.add_tensor(Tensor(keep, (1, 1, 1, src.shape[3]), "int8", None, src.quant))
    imp.node("global_avgpool", [x], keep, {})
    imp.node("reshape", [keep], out, {"shape": imp.g.tensors[out].shape})


def _reshape(imp: _Importer, op: TfOperator) -> None:
    imp.same_params(op.inputs[0], op.outputs[0], "RESHAPE")
    out = imp.name(op.outputs[0])
    imp.node("reshape", [imp.name(op.inputs[0])], out, {"shape": imp.g.tensors[out].shape})


def _concat(imp: _Importer, op: TfOperator) -> None:
    if imp.act(op.options) != "none":
        raise imp.fail("CONCATENATION with a fused activation")
    for i in op.inputs:
        imp.same_params(i, op.outputs[0], "CONCATENATION")
    out = imp.name(op.outputs[0])
    rank = len(imp.g.tensors[out].shape)
    imp.node("concat", [imp.name(i) for i in op.inputs], out,
             {"axis": int(op.options.get("axis", -1)) % rank})


def _relu(imp: _Importer, op: TfOperator) -> None:
    imp.node("relu" if op.op == "RELU" else "relu6", [imp.name(op.inputs[0])],
             imp.name(op.outputs[0]), {})


def _pad(imp: _Importer, op: TfOperator) -> None:
    """Folded into the convs that read it (PAD fills with the zero point, what conv
    padding means); a standalone ``pad`` node for any other reader (a pool, an add...)."""
    p = imp.t(op.inputs[1]).data
    if p is None or p.shape != (4, 2):
        raise imp.fail("PAD needs constant [4, 2] paddings of an NHWC tensor")
    if (p < 0).any():
        raise imp.fail(f"negative paddings {p.tolist()} (cropping) are not supported; crop "
                       "the input before the model")
    if p[0].any() or p[3].any():
        raise imp.fail(f"paddings {p.tolist()} pad the batch or channel axis; only H and W "
                       "can be padded")
    imp.same_params(op.inputs[0], op.outputs[0], "PAD")
    pad = (int(p[1, 0]), int(p[2, 0]), int(p[1, 1]), int(p[2, 1]))
    readers = [o for o in imp.m.operators if op.outputs[0] in o.inputs]
    if op.outputs[0] not in imp.m.outputs and readers and all(
            r.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and r.inputs[0] == op.outputs[0]
            and op.outputs[0] not in r.inputs[1:] for r in readers):
        imp.pads[op.outputs[0]] = (op.inputs[0], pad)
        return
    imp.node("pad", [imp.name(op.inputs[0])], imp.name(op.outputs[0]), {"pad": pad})


HANDLERS: dict[str, Callable[[_Importer, TfOperator], None]] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fully_connected,
    "ADD": _add, "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "MEAN": _mean,
    "RESHAPE": _reshape, "CONCATENATION": _concat, "RELU": _relu, "RELU6": _relu,
    "PAD": _pad,
}
#: inputs an op must have (the first ones may not be omitted); others need 1
MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MEAN": 2,
              "PAD": 2}
SUPPORTED = sorted([*HANDLERS, "QUANTIZE", "DEQUANTIZE"])  # the last two at the boundary only


def import_tflite(model: bytes | str | Path) -> Graph:
    """Import an int8 .tflite (bytes or path) as a quantised IR graph."""
    what = "the TFLite model" if isinstance(model, bytes) else str(model)
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    m = read_tflite(data, what)
    try:
        return _Importer(m).run()
    except GraphError as exc:
        raise ModelFileError(f"{what}: the graph is malformed ({exc}); convert the model "
                             "again") from exc
