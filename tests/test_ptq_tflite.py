"""Quantised IR -> .tflite -> tflite-runtime (reference kernels), import, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from mcutl.frontend import load_model
from mcutl.frontend.onnx_import import from_onnx
from mcutl.frontend.tflite_import import import_tflite
from mcutl.frontend.tflite_reader import read_tflite
from mcutl.ir import Graph, Node, QuantParams, Tensor, to_ir_layout
from mcutl.ops import UnsupportedOpError
from mcutl.quant.ptq import quantize
from mcutl.tflite.builder import TFLiteBuilder
from mcutl.tflite.export import export_tflite
from mcutl.tflite.oracle import run_tflite_ref, run_tflm
from tests.test_frontend_cases import CASES, make, onnx_bytes, samples, torch_forward

pytestmark = pytest.mark.tflite


def quantize_input(q: Graph, x: np.ndarray) -> np.ndarray:
    p = q.tensors[q.inputs[0]].quant
    xi = to_ir_layout(x, q.source_layout)
    return np.clip(np.round(xi / p.scale[0]) + p.zero_point[0], -128, 127).astype(np.int8)


def dequantize_output(q: Graph, y: np.ndarray) -> np.ndarray:
    p = q.tensors[q.outputs[0]].quant
    return (y.astype(np.float32) - p.zero_point[0]) * p.scale[0]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, shape = make(request.param)
    calib = samples(shape, 64, seed=1)
    q = quantize(from_onnx(onnx_bytes(model, shape)), calib)
    return request.param, model, calib, q, export_tflite(q)


def test_tflite_runtime_output_is_close_to_float(case) -> None:
    name, model, calib, q, data = case
    cos = []
    for i in range(12):
        x = calib[i:i + 1]
        y = dequantize_output(q, run_tflite_ref(data, [quantize_input(q, x)])[0])
        ref = torch_forward(model, x)
        cos.append(float((y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref)))
    assert min(cos) > 0.99, (name, cos)


def test_tflite_micro_accepts_the_file_and_agrees_bit_for_bit(case) -> None:
    _, _, calib, q, data = case
    x = quantize_input(q, calib[:1])
    micro, arena_bytes = run_tflm(data, [x])
    np.testing.assert_array_equal(micro[0], run_tflite_ref(data, [x])[0])
    assert arena_bytes > 0


def test_tflite_import_reproduces_the_ir(case) -> None:
    _, _, _, q, data = case
    g = import_tflite(data)
    assert g.source_layout in ("NHWC", "NC") and g.is_quantized
    assert g.inputs == q.inputs and g.outputs == q.outputs
    assert [(n.op, n.inputs, n.outputs, n.attrs) for n in g.nodes] == [
        (n.op, n.inputs, n.outputs, n.attrs) for n in q.nodes]
    assert g.tensors == q.tensors  # names, shapes, dtypes, int8/int32 data, quant params


def test_export_import_export_is_byte_identical(case) -> None:
    _, _, _, _, data = case
    assert export_tflite(import_tflite(data)) == data


def test_depthwise_weights_are_1hwc_with_quantized_dimension_3() -> None:
    model, shape = make("tiny_mbv2")
    q = quantize(from_onnx(onnx_bytes(model, shape)), samples(shape, 8))
    m = read_tflite(export_tflite(q))
    dw = [op for op in m.operators if op.op == "DEPTHWISE_CONV_2D"]
    assert len(dw) == 5
    w = m.tensors[dw[0].inputs[1]]
    assert w.shape[0] == 1 and w.quantized_dimension == 3 and w.scale.size == w.shape[3]
    ops = {op.op for op in m.operators}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE",
                   "FULLY_CONNECTED", "PAD"}  # PAD: stride-2 pad-1 convs on even maps
    assert "MEAN" not in ops


def test_load_model_returns_tflite_files_quantised(tmp_path, case) -> None:
    _, _, calib, q, data = case
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    g = load_model(path)
    assert g.is_quantized
    x = quantize_input(q, calib[:1])
    np.testing.assert_array_equal(run_tflite_ref(export_tflite(g), [x])[0],
                                  run_tflite_ref(data, [x])[0])


def test_maxpool_padding_tflite_cannot_express_is_reported() -> None:
    t = {"x": Tensor("x", (1, 4, 4, 2), "int8", quant=QuantParams([0.1], [0])),
         "y": Tensor("y", (1, 2, 2, 2), "int8", quant=QuantParams([0.1], [0]))}
    node = Node("pool", "maxpool2d", ["x"], ["y"],
                {"kernel": (3, 3), "stride": (2, 2), "pad": (1, 1, 0, 0)})
    with pytest.raises(UnsupportedOpError, match="neither SAME nor VALID"):
        export_tflite(Graph(t, [node], ["x"], ["y"], "NHWC"))


def test_import_folds_boundary_quantize_and_dequantize() -> None:
    rng = np.random.default_rng(0)
    b = TFLiteBuilder()
    xf = b.add_tensor("xf", [1, 4, 4, 1], "float32")
    x = b.add_tensor("x", [1, 4, 4, 1], "int8", scale=0.05, zero_point=-3)
    w = b.add_tensor("w", [2, 3, 3, 1], "int8", data=rng.integers(-127, 128, (2, 3, 3, 1)),
                     scale=[0.01, 0.02], zero_point=0)
    bias = b.add_tensor("bias", [2], "int32", data=[50, -70], scale=[0.0005, 0.001])
    c = b.add_tensor("c", [1, 4, 4, 2], "int8", scale=0.1, zero_point=-128)
    flat = b.add_tensor("flat", [1, 32], "int8", scale=0.1, zero_point=-128)
    fw = b.add_tensor("fw", [3, 32], "int8", data=rng.integers(-127, 128, (3, 32)), scale=0.01)
    y = b.add_tensor("y", [1, 3], "int8", scale=0.5, zero_point=2)
    yf = b.add_tensor("yf", [1, 3], "float32")
    b.add_operator("QUANTIZE", [xf], [x])
    b.add_operator("CONV_2D", [x, w, bias], [c], padding="SAME", fused_activation="RELU")
    b.add_operator("RESHAPE", [c], [flat], new_shape=[1, 32])
    b.add_operator("FULLY_CONNECTED", [flat, fw, -1], [y])
    b.add_operator("DEQUANTIZE", [y], [yf])
    original = b.finish([xf], [yf])
    g = import_tflite(original)
    assert g.inputs == ["x"] and g.outputs == ["y"]
    assert [n.op for n in g.nodes] == ["conv2d", "reshape", "linear"]
    conv, fc = g.nodes[0], g.nodes[2]
    assert conv.attrs["act"] == "relu" and conv.attrs["pad"] == (1, 1, 1, 1)
    fw_q = g.tensors[fc.inputs[1]].quant  # per-tensor weights broadcast to axis 0
    assert fw_q.axis == 0 and fw_q.scale.shape == (3,)
    zero = g.tensors[fc.inputs[2]]  # the omitted bias, made explicit
    assert zero.dtype == "int32" and not zero.data.any()
    np.testing.assert_allclose(zero.quant.scale, [0.001] * 3, rtol=1e-6)
    xq = rng.integers(-128, 128, (1, 4, 4, 1)).astype(np.int8)
    want = run_tflite_ref(original, [((xq.astype(np.float32) + 3) * np.float32(0.05))])[0]
    got = run_tflite_ref(export_tflite(g), [xq])[0].astype(np.float32)
    np.testing.assert_allclose((got - 2) * np.float32(0.5), want, rtol=1e-6)


def test_import_rejects_float_models() -> None:
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 4], "float32")
    y = b.add_tensor("y", [1, 4], "float32")
    b.add_operator("RELU", [x], [y])
    with pytest.raises(UnsupportedOpError, match="only int8 models"):
        import_tflite(b.finish([x], [y]))


def test_float_backbone_after_quantisation_matches_torch_prediction() -> None:
    model, shape = make("tiny_imu1d")
    calib = samples(shape, 64, seed=3)
    q = quantize(from_onnx(onnx_bytes(model, shape)), calib)
    data = export_tflite(q)
    agree = 0
    for i in range(16):
        y = run_tflite_ref(data, [quantize_input(q, calib[i:i + 1])])[0]
        agree += int(np.argmax(y) == np.argmax(torch_forward(model, calib[i:i + 1])))
    assert agree >= 14
