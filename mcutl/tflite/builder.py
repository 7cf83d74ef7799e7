"""A small writer for .tflite flatbuffers (no TensorFlow needed).

Uses the generated schema builder functions of the PyPI ``tflite`` package and
``flatbuffers``. Typical use::

    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 8, 8, 3], "int8", scale=0.02, zero_point=-3)
    w = b.add_tensor("w", [4, 3, 3, 3], "int8", data=w_q, scale=w_scales, zero_point=0)
    bias = b.add_tensor("b", [4], "int32", data=b_q, scale=0.02 * w_scales, zero_point=0)
    y = b.add_tensor("y", [1, 8, 8, 4], "int8", scale=0.05, zero_point=5)
    b.add_operator("CONV_2D", [x, w, bias], [y], padding="SAME", fused_activation="RELU")
    model_bytes = b.finish(inputs=[x], outputs=[y])

What the file gets right (see shared/notes/tflite.md): buffer 0 is the empty
sentinel and every tensor owns a buffer (constant data aligned to 16 bytes), each
operator code sets both ``deprecated_builtin_code`` and ``builtin_code``, model
version 3, file identifier ``TFL3``, omitted optional inputs are ``-1``.

Padding: TFLite only knows ``SAME`` and ``VALID``. ``SAME`` pads
``total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)`` with
``total // 2`` before and the rest (one more, when odd) after; ``VALID`` pads
nothing. A PyTorch-style explicit padding ``(pad_top, pad_bottom)`` is equivalent
to one of them iff it yields the same output size and the same leading padding
(trailing padding that no window reaches is irrelevant): see ``tflite_padding``.
E.g. k=3, stride 1, pad 1 == SAME; k=3, stride 2, pad 1 on an even input is
*not* SAME (SAME puts 0 rows on top and 1 at the bottom), so the graph needs an
explicit ``PAD`` op (int8 PAD fills with the tensor's zero point, i.e. real 0)
followed by a ``VALID`` conv. The C kernels take explicit ``pad_top``/``pad_left``
and handle both. Zero-point padding is exact for convolutions (PyTorch pads
with real 0) but not for max pooling (PyTorch pads with -inf) nor for average
pooling with ``count_include_pad=False`` (TFLite never counts padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import flatbuffers
import numpy as np
import numpy.typing as npt
import tflite

Padding = Literal["SAME", "VALID"]

_DTYPES: dict[str, tuple[int, type[np.generic]]] = {
    "int8": (tflite.TensorType.INT8, np.int8),
    "int32": (tflite.TensorType.INT32, np.int32),
    "float32": (tflite.TensorType.FLOAT32, np.float32),
    "uint8": (tflite.TensorType.UINT8, np.uint8),
    "int16": (tflite.TensorType.INT16, np.int16),
    "int64": (tflite.TensorType.INT64, np.int64),
}

_ACTIVATIONS: dict[str, int] = {
    "NONE": tflite.ActivationFunctionType.NONE,
    "RELU": tflite.ActivationFunctionType.RELU,
    "RELU_N1_TO_1": tflite.ActivationFunctionType.RELU_N1_TO_1,
    "RELU6": tflite.ActivationFunctionType.RELU6,
}

_PADDINGS: dict[str, int] = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}

#: Operators this builder can serialise, with the operator-code version written
#: (the lowest version whose kernel handles int8; runtimes accept any registered
#: version, TFLite Micro ignores it).
SUPPORTED_OPS: dict[str, int] = {
    "ADD": 2,
    "AVERAGE_POOL_2D": 2,
    "CONCATENATION": 2,
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 3,
    "FULLY_CONNECTED": 4,
    "MAX_POOL_2D": 2,
    "PAD": 2,
    "RELU": 2,
    "RELU6": 2,
    "RELU_N1_TO_1": 1,
    "RESHAPE": 1,
    "QUANTIZE": 2,
    "DEQUANTIZE": 2,
}

# options each operator accepts, with defaults
_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "CONV_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1,
        "fused_activation": "NONE",
    },
    "DEPTHWISE_CONV_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1,
        "depth_multiplier": 1, "fused_activation": "NONE",
    },
    "FULLY_CONNECTED": {"fused_activation": "NONE", "keep_num_dims": False},
    "ADD": {"fused_activation": "NONE"},
    "AVERAGE_POOL_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1, "filter_h": 1, "filter_w": 1,
        "fused_activation": "NONE",
    },
    "MAX_POOL_2D": {
        "padding": "VALID", "stride_h": 1, "stride_w": 1, "filter_h": 1, "filter_w": 1,
        "fused_activation": "NONE",
    },
    "CONCATENATION": {"axis": -1, "fused_activation": "NONE"},
    "RESHAPE": {"new_shape": None},
    "PAD": {},
    "RELU": {},
    "RELU6": {},
    "RELU_N1_TO_1": {},
    "QUANTIZE": {},
    "DEQUANTIZE": {},
}


# --------------------------------------------------------------------------- geometry


def compute_padding(
    padding: Padding | str, in_size: int, k: int, stride: int, dilation: int = 1
) -> tuple[int, int, int]:
    """TFLite's output size and padding for one spatial dimension.

    Returns ``(out_size, pad_before, pad_after)``; ``pad_after`` is what SAME
    implies (the kernels only need ``pad_before`` and ``out_size``).
    """
    if in_size < 1 or k < 1 or stride < 1 or dilation < 1:
        raise ValueError("sizes, stride and dilation must be >= 1")
    eff_k = (k - 1) * dilation + 1
    p = padding.upper()
    if p == "SAME":
        out = (in_size + stride - 1) // stride
    elif p == "VALID":
        out = (in_size + stride - eff_k) // stride
        if out < 1:
            raise ValueError(f"VALID: kernel {eff_k} larger than input {in_size}")
        return out, 0, 0
    else:
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    total = max((out - 1) * stride + eff_k - in_size, 0)
    return out, total // 2, total - total // 2


def explicit_output_size(
    in_size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int = 1
) -> int:
    """Output size of a convolution/pool with explicit padding (PyTorch formula)."""
    eff_k = (k - 1) * dilation + 1
    out = (in_size + pad_before + pad_after - eff_k) // stride + 1
    if out < 1:
        raise ValueError("window larger than the padded input")
    return out


def tflite_padding(
    in_size: int, k: int, stride: int, pad_top: int, pad_bottom: int, dilation: int = 1
) -> Padding | None:
    """Which TFLite padding reproduces an explicit ``(pad_top, pad_bottom)`` padding
    of one spatial dimension, or ``None`` if neither does (an explicit ``PAD`` op,
    or the C kernels' explicit pads, are then needed).

    Equivalence means the same output size and the same leading padding (so every
    window covers the same input positions). Check both dimensions.
    """
    out = explicit_output_size(in_size, k, stride, pad_top, pad_bottom, dilation)
    for mode in ("VALID", "SAME"):
        try:
            o, before, _ = compute_padding(mode, in_size, k, stride, dilation)
        except ValueError:
            continue
        if o == out and before == pad_top:
            return mode  # type: ignore[return-value]
    return None


# --------------------------------------------------------------------------- builder


@dataclass
class _Tensor:
    name: str
    shape: list[int]
    dtype: str
    buffer: int
    scale: list[float] | None
    zero_point: list[int] | None
    quantized_dimension: int


@dataclass
class _Operator:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: dict[str, Any]
    op: str


class TFLiteBuilder:
    """Accumulates tensors and operators of a single-subgraph model; ``finish``
    serialises it to .tflite bytes."""

    def __init__(self, description: str = "mcutl") -> None:
        self._description = description
        self._tensors: list[_Tensor] = []
        self._buffers: list[bytes | None] = [None]  # buffer 0: empty sentinel
        self._opcodes: list[tuple[str, int]] = []
        self._operators: list[_Operator] = []

    # ---------------------------------------------------------------- tensors
    def add_tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str,
        data: npt.ArrayLike | None = None,
        scale: float | Sequence[float] | npt.ArrayLike | None = None,
        zero_point: int | Sequence[int] | npt.ArrayLike | None = None,
        quantized_dimension: int = 0,
    ) -> int:
        """Add a tensor and return its index.

        ``dtype`` is ``'int8'``, ``'int32'`` or ``'float32'`` (also ``'uint8'``,
        ``'int16'``, ``'int64'``). ``data`` makes it a constant (must match
        ``shape``; cast to ``dtype``). ``scale`` / ``zero_point``: scalars for
        per-tensor quantisation or sequences for per-axis quantisation along
        ``quantized_dimension`` (0 for CONV_2D and FULLY_CONNECTED weights, 3 for
        DEPTHWISE_CONV_2D); a scalar zero point is broadcast to the number of
        scales. Omit both for an unquantised tensor.
        """
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; one of {sorted(_DTYPES)}")
        shp = [int(d) for d in shape]
        if any(d < 0 for d in shp):
            raise ValueError(f"negative dimension in {shp}")
        buf_index = len(self._buffers)
        if data is None:
            self._buffers.append(None)
        else:
            arr = np.asarray(data)
            np_type = _DTYPES[dtype][1]
            if arr.dtype != np_type:
                if arr.dtype.kind in "iu" and np_type is not np.float32:
                    info = np.iinfo(np_type)
                    if arr.size and (arr.min() < info.min or arr.max() > info.max):
                        raise ValueError(f"data of {name!r} out of range for {dtype}")
                arr = arr.astype(np_type)
            if list(arr.shape) != shp and arr.size != int(np.prod(shp, dtype=np.int64)):
                raise ValueError(f"data of {name!r} has shape {arr.shape}, tensor {shp}")
            self._buffers.append(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"))
                                 .tobytes())
        scales: list[float] | None = None
        zps: list[int] | None = None
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(np.asarray(scale, dtype=np.float64))]
            if any(not np.isfinite(s) or s <= 0 for s in scales):
                raise ValueError(f"scales of {name!r} must be finite and > 0")
            if zero_point is None:
                zps = [0] * len(scales)
            else:
                zps = [int(z) for z in np.atleast_1d(np.asarray(zero_point, dtype=np.int64))]
                if len(zps) == 1 and len(scales) > 1:
                    zps = zps * len(scales)
            if len(zps) != len(scales):
                raise ValueError(f"{len(scales)} scales but {len(zps)} zero points for {name!r}")
            if len(scales) > 1:
                if not 0 <= quantized_dimension < len(shp):
                    raise ValueError("quantized_dimension out of range")
                if shp[quantized_dimension] != len(scales):
                    raise ValueError(
                        f"{len(scales)} scales for dimension {quantized_dimension} of size "
                        f"{shp[quantized_dimension]} ({name!r})"
                    )
        elif zero_point is not None:
            raise ValueError("zero_point given without scale")
        self._tensors.append(
            _Tensor(name, shp, dtype, buf_index, scales, zps, int(quantized_dimension))
        )
        return len(self._tensors) - 1

    def add_constant_paddings(
        self, name: str, pad_top: int, pad_bottom: int, pad_left: int, pad_right: int
    ) -> int:
        """The int32 ``[4, 2]`` paddings tensor of a ``PAD`` op on an NHWC tensor."""
        pads = np.array(
            [[0, 0], [pad_top, pad_bottom], [pad_left, pad_right], [0, 0]], dtype=np.int32
        )
        return self.add_tensor(name, [4, 2], "int32", data=pads)

    def tensor_shape(self, index: int) -> list[int]:
        return list(self._tensors[index].shape)

    # ---------------------------------------------------------------- operators
    def add_operator(self, op: str, inputs: Sequence[int], outputs: Sequence[int],
                     **options: Any) -> None:
        """Add an operator. ``inputs`` may contain ``-1`` for an omitted optional input.

        Options (defaults in brackets):

        * CONV_2D: padding ['VALID'], stride_h/stride_w [1], dilation_h/dilation_w [1],
          fused_activation ['NONE' | 'RELU' | 'RELU6' | 'RELU_N1_TO_1'];
        * DEPTHWISE_CONV_2D: as CONV_2D plus depth_multiplier [1];
        * FULLY_CONNECTED: fused_activation, keep_num_dims [False];
        * ADD: fused_activation;
        * AVERAGE_POOL_2D / MAX_POOL_2D: padding, stride_h/stride_w, filter_h/filter_w [1],
          fused_activation;
        * CONCATENATION: axis [-1], fused_activation (TFLite accepts only NONE);
        * RESHAPE: new_shape [None: use the 2nd input / the output shape];
        * PAD (inputs: data, int32 [rank, 2] paddings), RELU, RELU6, RELU_N1_TO_1,
          QUANTIZE, DEQUANTIZE: none.
        """
        name = op.upper()
        if name not in SUPPORTED_OPS:
            raise ValueError(f"unsupported operator {op!r}; one of {sorted(SUPPORTED_OPS)}")
        defaults = _OPTION_DEFAULTS[name]
        unknown = set(options) - set(defaults)
        if unknown:
            raise TypeError(f"{name} has no option(s) {sorted(unknown)}; valid: {sorted(defaults)}")
        opts = {**defaults, **options}
        n = len(self._tensors)
        for t in list(inputs) + list(outputs):
            if not -1 <= int(t) < n:
                raise ValueError(f"tensor index {t} out of range (have {n} tensors)")
        if any(int(t) < 0 for t in outputs):
            raise ValueError("outputs cannot be omitted")
        self._validate_options(name, opts)
        key = (name, SUPPORTED_OPS[name])
        if key not in self._opcodes:
            self._opcodes.append(key)
        options_type = {
            "CONV_2D": tflite.BuiltinOptions.Conv2DOptions,
            "DEPTHWISE_CONV_2D": tflite.BuiltinOptions.DepthwiseConv2DOptions,
            "FULLY_CONNECTED": tflite.BuiltinOptions.FullyConnectedOptions,
            "ADD": tflite.BuiltinOptions.AddOptions,
            "AVERAGE_POOL_2D": tflite.BuiltinOptions.Pool2DOptions,
            "MAX_POOL_2D": tflite.BuiltinOptions.Pool2DOptions,
            "CONCATENATION": tflite.BuiltinOptions.ConcatenationOptions,
            "RESHAPE": tflite.BuiltinOptions.ReshapeOptions,
            "PAD": tflite.BuiltinOptions.PadOptions,
        }.get(name, tflite.BuiltinOptions.NONE)
        self._operators.append(
            _Operator(self._opcodes.index(key), [int(t) for t in inputs],
                      [int(t) for t in outputs], options_type, opts, name)
        )

    @staticmethod
    def _validate_options(name: str, opts: dict[str, Any]) -> None:
        if "fused_activation" in opts and str(opts["fused_activation"]).upper() not in _ACTIVATIONS:
            raise ValueError(f"fused_activation must be one of {sorted(_ACTIVATIONS)}")
        if "padding" in opts and str(opts["padding"]).upper() not in _PADDINGS:
            raise ValueError("padding must be 'SAME' or 'VALID' (use a PAD op for explicit pads)")
        for k in ("stride_h", "stride_w", "dilation_h", "dilation_w", "depth_multiplier",
                  "filter_h", "filter_w"):
            if k in opts and int(opts[k]) < 1:
                raise ValueError(f"{name}: {k} must be >= 1")

    # ---------------------------------------------------------------- serialise
    def finish(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        """Serialise the model with the given graph inputs and outputs."""
        n = len(self._tensors)
        for t in list(inputs) + list(outputs):
            if not 0 <= int(t) < n:
                raise ValueError(f"graph tensor index {t} out of range")
        fb = flatbuffers.Builder(1024)

        # buffers
        buffer_offsets = []
        for data in self._buffers:
            vec = None
            if data:
                fb.StartVector(1, len(data), 16)
                fb.head = fb.head - len(data)
                fb.Bytes[fb.head : fb.head + len(data)] = data
                vec = fb.EndVector()
            tflite.BufferStart(fb)
            if vec is not None:
                tflite.BufferAddData(fb, vec)
            buffer_offsets.append(tflite.BufferEnd(fb))

        # tensors
        tensor_offsets = []
        for t in self._tensors:
            name_off = fb.CreateString(t.name)
            shape_off = fb.CreateNumpyVector(np.asarray(t.shape, dtype=np.int32))
            quant_off = None
            if t.scale is not None and t.zero_point is not None:
                scale_off = fb.CreateNumpyVector(np.asarray(t.scale, dtype=np.float32))
                zp_off = fb.CreateNumpyVector(np.asarray(t.zero_point, dtype=np.int64))
                tflite.QuantizationParametersStart(fb)
                tflite.QuantizationParametersAddScale(fb, scale_off)
                tflite.QuantizationParametersAddZeroPoint(fb, zp_off)
                tflite.QuantizationParametersAddQuantizedDimension(fb, t.quantized_dimension)
                quant_off = tflite.QuantizationParametersEnd(fb)
            tflite.TensorStart(fb)
            tflite.TensorAddShape(fb, shape_off)
            tflite.TensorAddType(fb, _DTYPES[t.dtype][0])
            tflite.TensorAddBuffer(fb, t.buffer)
            tflite.TensorAddName(fb, name_off)
            if quant_off is not None:
                tflite.TensorAddQuantization(fb, quant_off)
            tensor_offsets.append(tflite.TensorEnd(fb))

        # operators
        op_offsets = []
        for op in self._operators:
            opt_off = self._write_options(fb, op)
            in_off = fb.CreateNumpyVector(np.asarray(op.inputs, dtype=np.int32))
            out_off = fb.CreateNumpyVector(np.asarray(op.outputs, dtype=np.int32))
            tflite.OperatorStart(fb)
            tflite.OperatorAddOpcodeIndex(fb, op.opcode_index)
            tflite.OperatorAddInputs(fb, in_off)
            tflite.OperatorAddOutputs(fb, out_off)
            if opt_off is not None:
                tflite.OperatorAddBuiltinOptionsType(fb, op.options_type)
                tflite.OperatorAddBuiltinOptions(fb, opt_off)
            op_offsets.append(tflite.OperatorEnd(fb))

        # subgraph
        tensors_vec = self._offset_vector(fb, tflite.SubGraphStartTensorsVector, tensor_offsets)
        sg_in = fb.CreateNumpyVector(np.asarray(list(inputs), dtype=np.int32))
        sg_out = fb.CreateNumpyVector(np.asarray(list(outputs), dtype=np.int32))
        ops_vec = self._offset_vector(fb, tflite.SubGraphStartOperatorsVector, op_offsets)
        sg_name = fb.CreateString("main")
        tflite.SubGraphStart(fb)
        tflite.SubGraphAddTensors(fb, tensors_vec)
        tflite.SubGraphAddInputs(fb, sg_in)
        tflite.SubGraphAddOutputs(fb, sg_out)
        tflite.SubGraphAddOperators(fb, ops_vec)
        tflite.SubGraphAddName(fb, sg_name)
        subgraph = tflite.SubGraphEnd(fb)

        # operator codes
        code_offsets = []
        for name, version in self._opcodes:
            code = getattr(tflite.BuiltinOperator, name)
            tflite.OperatorCodeStart(fb)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(
                fb, min(code, tflite.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            )
            tflite.OperatorCodeAddBuiltinCode(fb, code)
            tflite.OperatorCodeAddVersion(fb, version)
            code_offsets.append(tflite.OperatorCodeEnd(fb))

        codes_vec = self._offset_vector(fb, tflite.ModelStartOperatorCodesVector, code_offsets)
        subgraphs_vec = self._offset_vector(fb, tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = self._offset_vector(fb, tflite.ModelStartBuffersVector, buffer_offsets)
        desc = fb.CreateString(self._description)
        tflite.ModelStart(fb)
        tflite.ModelAddVersion(fb, 3)
        tflite.ModelAddOperatorCodes(fb, codes_vec)
        tflite.ModelAddSubgraphs(fb, subgraphs_vec)
        tflite.ModelAddDescription(fb, desc)
        tflite.ModelAddBuffers(fb, buffers_vec)
        model = tflite.ModelEnd(fb)
        fb.Finish(model, file_identifier=b"TFL3")
        return bytes(fb.Output())

    @staticmethod
    def _offset_vector(fb: flatbuffers.Builder, start: Any, offsets: list[int]) -> int:
        start(fb, len(offsets))
        for off in reversed(offsets):
            fb.PrependUOffsetTRelative(off)
        return int(fb.EndVector())

    @staticmethod
    def _write_options(fb: flatbuffers.Builder, op: _Operator) -> int | None:
        o = op.options
        act = _ACTIVATIONS.get(str(o.get("fused_activation", "NONE")).upper(), 0)
        pad = _PADDINGS.get(str(o.get("padding", "VALID")).upper(), tflite.Padding.VALID)
        if op.op == "CONV_2D":
            tflite.Conv2DOptionsStart(fb)
            tflite.Conv2DOptionsAddPadding(fb, pad)
            tflite.Conv2DOptionsAddStrideW(fb, int(o["stride_w"]))
            tflite.Conv2DOptionsAddStrideH(fb, int(o["stride_h"]))
            tflite.Conv2DOptionsAddDilationWFactor(fb, int(o["dilation_w"]))
            tflite.Conv2DOptionsAddDilationHFactor(fb, int(o["dilation_h"]))
            tflite.Conv2DOptionsAddFusedActivationFunction(fb, act)
            return int(tflite.Conv2DOptionsEnd(fb))
        if op.op == "DEPTHWISE_CONV_2D":
            tflite.DepthwiseConv2DOptionsStart(fb)
            tflite.DepthwiseConv2DOptionsAddPadding(fb, pad)
            tflite.DepthwiseConv2DOptionsAddStrideW(fb, int(o["stride_w"]))
            tflite.DepthwiseConv2DOptionsAddStrideH(fb, int(o["stride_h"]))
            tflite.DepthwiseConv2DOptionsAddDepthMultiplier(fb, int(o["depth_multiplier"]))
            tflite.DepthwiseConv2DOptionsAddDilationWFactor(fb, int(o["dilation_w"]))
            tflite.DepthwiseConv2DOptionsAddDilationHFactor(fb, int(o["dilation_h"]))
            tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(fb, act)
            return int(tflite.DepthwiseConv2DOptionsEnd(fb))
        if op.op == "FULLY_CONNECTED":
            tflite.FullyConnectedOptionsStart(fb)
            tflite.FullyConnectedOptionsAddFusedActivationFunction(fb, act)
            tflite.FullyConnectedOptionsAddKeepNumDims(fb, bool(o["keep_num_dims"]))
            return int(tflite.FullyConnectedOptionsEnd(fb))
        if op.op == "ADD":
            tflite.AddOptionsStart(fb)
            tflite.AddOptionsAddFusedActivationFunction(fb, act)
            return int(tflite.AddOptionsEnd(fb))
        if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            tflite.Pool2DOptionsStart(fb)
            tflite.Pool2DOptionsAddPadding(fb, pad)
            tflite.Pool2DOptionsAddStrideW(fb, int(o["stride_w"]))
            tflite.Pool2DOptionsAddStrideH(fb, int(o["stride_h"]))
            tflite.Pool2DOptionsAddFilterWidth(fb, int(o["filter_w"]))
            tflite.Pool2DOptionsAddFilterHeight(fb, int(o["filter_h"]))
            tflite.Pool2DOptionsAddFusedActivationFunction(fb, act)
            return int(tflite.Pool2DOptionsEnd(fb))
        if op.op == "CONCATENATION":
            tflite.ConcatenationOptionsStart(fb)
            tflite.ConcatenationOptionsAddAxis(fb, int(o["axis"]))
            tflite.ConcatenationOptionsAddFusedActivationFunction(fb, act)
            return int(tflite.ConcatenationOptionsEnd(fb))
        if op.op == "RESHAPE":
            shape_vec = None
            if o["new_shape"] is not None:
                shape_vec = fb.CreateNumpyVector(np.asarray(list(o["new_shape"]), dtype=np.int32))
            tflite.ReshapeOptionsStart(fb)
            if shape_vec is not None:
                tflite.ReshapeOptionsAddNewShape(fb, shape_vec)
            return int(tflite.ReshapeOptionsEnd(fb))
        if op.op == "PAD":
            tflite.PadOptionsStart(fb)
            return int(tflite.PadOptionsEnd(fb))
        return None
