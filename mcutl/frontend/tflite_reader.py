"""Read a .tflite flatbuffer into plain Python: tensors, operators and their options.

Uses the generated schema readers of the ``tflite`` package; no TensorFlow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite

from mcutl.validate import ModelFileError

_TYPES = {tflite.TensorType.INT8: "int8", tflite.TensorType.INT32: "int32",
          tflite.TensorType.FLOAT32: "float32", tflite.TensorType.UINT8: "uint8",
          tflite.TensorType.INT16: "int16", tflite.TensorType.INT64: "int64"}
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACT_NAMES = {v: k for k, v in vars(tflite.ActivationFunctionType).items()
              if not k.startswith("_")}
_PAD_NAMES = {tflite.Padding.SAME: "SAME", tflite.Padding.VALID: "VALID"}

# builtin op -> (options class, {our option name: getter name})
_OPTIONS: dict[str, tuple[Any, dict[str, str]]] = {
    "CONV_2D": (tflite.Conv2DOptions, {
        "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
        "dilation_h": "DilationHFactor", "dilation_w": "DilationWFactor",
        "fused_activation": "FusedActivationFunction"}),
    "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, {
        "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
        "dilation_h": "DilationHFactor", "dilation_w": "DilationWFactor",
        "depth_multiplier": "DepthMultiplier", "fused_activation": "FusedActivationFunction"}),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, {
        "fused_activation": "FusedActivationFunction", "keep_num_dims": "KeepNumDims",
        "weights_format": "WeightsFormat"}),
    "ADD": (tflite.AddOptions, {"fused_activation": "FusedActivationFunction"}),
    "AVERAGE_POOL_2D": (tflite.Pool2DOptions, {
        "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
        "filter_h": "FilterHeight", "filter_w": "FilterWidth",
        "fused_activation": "FusedActivationFunction"}),
    "MAX_POOL_2D": (tflite.Pool2DOptions, {
        "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
        "filter_h": "FilterHeight", "filter_w": "FilterWidth",
        "fused_activation": "FusedActivationFunction"}),
    "CONCATENATION": (tflite.ConcatenationOptions, {
        "axis": "Axis", "fused_activation": "FusedActivationFunction"}),
    "MEAN": (tflite.ReducerOptions, {"keep_dims": "KeepDims"}),
}


@dataclass
class TfTensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None
    scale: np.ndarray | None  # float32, None when unquantised
    zero_point: np.ndarray | None
    quantized_dimension: int


@dataclass
class TfOperator:
    index: int
    op: str
    inputs: list[int]  # -1: omitted optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TfModel:
    tensors: list[TfTensor]
    operators: list[TfOperator]
    inputs: list[int]
    outputs: list[int]


def read_tflite(data: bytes, what: str = "the TFLite model") -> TfModel:
    """Parse the first subgraph of a .tflite model; ``ModelFileError`` if it is not one
    (``what`` names the file in the message)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{what}: not a TFLite flatbuffer ({len(data)} bytes, no 'TFL3' "
                             "identifier); convert the model with the TFLite converter")
    try:
        m = _read(data)
    except (struct.error, IndexError, KeyError, ValueError, TypeError, OverflowError) as exc:
        raise ModelFileError(f"{what}: corrupt TFLite flatbuffer ({len(data)} bytes; decoding "
                             f"failed: {type(exc).__name__}: {exc}); convert the model again"
                             ) from exc
    _check_indices(m, what)
    return m


def _check_indices(m: TfModel, what: str) -> None:
    """Every tensor index an operator or the subgraph names must exist."""
    n = len(m.tensors)
    for op in m.operators:
        for i in (*op.inputs, *op.outputs):
            if not -1 <= i < n:
                raise ModelFileError(f"{what}: operator #{op.index} ({op.op}) names tensor {i} "
                                     f"of {n}; the file is corrupt, convert the model again")
    for i in (*m.inputs, *m.outputs):
        if not 0 <= i < n:
            raise ModelFileError(f"{what}: the subgraph's input/output names tensor {i} of {n}; "
                                 "the file is corrupt, convert the model again")
    if not m.inputs or not m.outputs:
        raise ModelFileError(f"{what}: the subgraph has no inputs or no outputs; the file is "
                             "corrupt, convert the model again")


def _read(data: bytes) -> TfModel:
    model = tflite.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() != 1:
        raise ValueError(f"expected one subgraph, found {model.SubgraphsLength()}")
    sg = model.Subgraphs(0)
    tensors = [_tensor(model, sg.Tensors(i), i) for i in range(sg.TensorsLength())]
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append(TfOperator(i, name, [int(v) for v in op.InputsAsNumpy()],
                              [int(v) for v in op.OutputsAsNumpy()], _options(op, name)))
    return TfModel(tensors, ops, [int(v) for v in sg.InputsAsNumpy()],
                   [int(v) for v in sg.OutputsAsNumpy()])


def _tensor(model: Any, t: Any, index: int) -> TfTensor:
    dtype = _TYPES.get(t.Type(), f"type{t.Type()}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    data = None
    buf = model.Buffers(t.Buffer())
    if buf is not None and buf.DataLength() > 0 and dtype in _TYPES.values():
        data = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=np.dtype(dtype).newbyteorder(
            "<")).astype(dtype).reshape(shape)
    scale = zp = None
    qdim = 0
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = (q.ZeroPointAsNumpy().astype(np.int32) if q.ZeroPointLength()
              else np.zeros(scale.shape, np.int32))
        qdim = int(q.QuantizedDimension())
    name = t.Name().decode() if t.Name() else f"tensor_{index}"
    return TfTensor(index, name, shape, dtype, data, scale, zp, qdim)


def _options(op: Any, name: str) -> dict[str, Any]:
    if name not in _OPTIONS or op.BuiltinOptions() is None:
        return {}
    cls, fields = _OPTIONS[name]
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for key, getter in fields.items():
        value = getattr(opts, getter)()
        if key == "padding":
            value = _PAD_NAMES[value]
        elif key == "fused_activation":
            value = _ACT_NAMES[value]
        out[key] = value
    return out
