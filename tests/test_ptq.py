"""Post-training quantisation: TFLite's int8 arithmetic and the quantised graph's shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcutl.frontend.onnx_import import from_onnx
from mcutl.ir.interp import run_f32
from mcutl.quant.calibrate import calibrate
from mcutl.quant.ptq import quantize, tie_groups
from mcutl.quant.qparams import (
    activation_params,
    quantize_bias,
    quantize_weight,
    round_half_away,
)
from tests.test_frontend_cases import make, onnx_bytes, samples, torch_forward


def test_round_half_away_from_zero() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, -0.51], np.float32)
    np.testing.assert_array_equal(round_half_away(x), [1, 2, 3, -1, -2, -3, 0, -1])


def test_activation_params_formula() -> None:
    q = activation_params(-1.0, 3.0)
    assert q.axis is None and q.scale.dtype == np.float32 and q.zero_point.dtype == np.int32
    assert q.scale[0] == np.float32(4.0 / 255)
    assert q.zero_point[0] == round(-128 + 1.0 / (4.0 / 255))  # -64.25 -> -64
    relu6 = activation_params(0.0, 6.0)
    assert relu6.zero_point[0] == -128 and relu6.scale[0] == np.float32(6 / 255)
    pos = activation_params(2.0, 5.0)  # range widened to include 0
    assert pos.zero_point[0] == -128 and pos.scale[0] == np.float32(5 / 255)
    neg = activation_params(-4.0, -1.0)
    assert neg.zero_point[0] == 127
    empty = activation_params(0.0, 0.0)
    assert empty.scale[0] == 1.0 and empty.zero_point[0] == 0


@settings(max_examples=50, deadline=None)
@given(lo=st.floats(-100, 0), width=st.floats(1e-3, 200))
def test_activation_params_represent_zero_and_the_range(lo: float, width: float) -> None:
    q = activation_params(lo, lo + width)
    s, zp = float(q.scale[0]), int(q.zero_point[0])
    assert -128 <= zp <= 127
    assert abs((-128 - zp) * s - min(lo, 0.0)) <= s * 0.5 + 1e-6
    assert abs((127 - zp) * s - max(lo + width, 0.0)) <= s * 0.5 + 1e-5 * width


def test_weights_per_channel_symmetric_like_tflite() -> None:
    w = np.array([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.0078740157]], np.float32)
    q, params = quantize_weight(w)
    assert q.dtype == np.int8 and params.axis == 0
    np.testing.assert_array_equal(params.zero_point, [0, 0, 0])
    np.testing.assert_allclose(params.scale, [1 / 127, 1.0, 2 / 127], rtol=1e-7)
    # 127 * -0.5 = -63.5 -> -64 (half away from zero); all-zero channel stays 0
    np.testing.assert_array_equal(q, [[127, -64, 32], [0, 0, 0], [-127, 64, 1]])
    assert q.min() >= -127


def test_bias_int32_with_input_times_weight_scale() -> None:
    q, params = quantize_bias(np.array([1.0, -2.0]), 0.5, np.array([0.01, 0.1], np.float32))
    assert q.dtype == np.int32 and params.axis == 0
    np.testing.assert_allclose(params.scale, [0.005, 0.05], rtol=1e-7)
    np.testing.assert_array_equal(q, [200, -40])


@pytest.fixture(scope="module")
def odd():
    model, shape = make("odd")
    graph = from_onnx(onnx_bytes(model, shape))
    calib = samples(shape, 48)
    return model, graph, calib, quantize(graph, calib)


def test_quantised_graph_dtypes_and_params(odd) -> None:
    _, graph, _, q = odd
    assert q.is_quantized and not graph.is_quantized  # the float graph is left alone
    assert "batchnorm" not in [n.op for n in q.nodes]
    for name in q.activations():
        t = q.tensors[name]
        assert t.dtype == "int8" and t.quant is not None and t.quant.axis is None
    for node in q.nodes:
        if node.op in ("conv2d", "linear"):
            w, b = q.tensors[node.inputs[1]], q.tensors[node.inputs[2]]
            x = q.tensors[node.inputs[0]]
            assert w.dtype == "int8" and w.quant.axis == 0 and not w.quant.zero_point.any()
            assert b.dtype == "int32" and b.quant.axis == 0
            np.testing.assert_array_equal(b.quant.scale,
                                          (x.quant.scale[0] * w.quant.scale).astype(np.float32))


def test_pools_reshape_and_concat_share_params(odd) -> None:
    _, _, _, q = odd
    for node in q.nodes:
        if node.op in ("maxpool2d", "avgpool2d", "global_avgpool", "reshape", "concat"):
            out = q.tensors[node.outputs[0]].quant
            for i in node.inputs:
                assert q.tensors[i].quant == out, node.name
    groups = tie_groups(q)
    cat = next(n for n in q.nodes if n.op == "concat")
    assert len({groups[i] for i in cat.inputs + cat.outputs}) == 1


def test_fused_relu6_output_range_starts_at_zero(odd) -> None:
    _, _, _, q = odd
    stem = q.nodes[0]
    assert stem.attrs["act"] == "relu6"
    out = q.tensors[stem.outputs[0]].quant
    assert out.zero_point[0] == -128 and out.scale[0] <= np.float32(6 / 255)


def test_calibration_ranges_cover_the_float_run(odd) -> None:
    _, graph, calib, _ = odd
    ranges = calibrate(graph, calib, batch=7)
    values = run_f32(graph, calib, source_layout=True, keep_all=True)
    out = graph.outputs[0]
    assert ranges[out] == (float(values[out].min()), float(values[out].max()))
    assert ranges[graph.inputs[0]] == (float(calib.min()), float(calib.max()))


def test_dequantised_reference_stays_close_to_torch(odd) -> None:
    model, _, calib, q = odd
    got = run_f32(q, calib[:8])[q.outputs[0]]  # float run with dequantised weights
    want = torch_forward(model, calib[:8])
    cos = (got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want)
    assert cos > 0.99


def test_quantize_accepts_one_sample_and_rejects_bad_shapes(odd) -> None:
    _, graph, calib, _ = odd
    assert quantize(graph, calib[0]).is_quantized
    with pytest.raises(ValueError, match="does not match the model input"):
        quantize(graph, calib[0, 0])


def test_requantising_a_quantised_graph_is_refused(odd) -> None:
    _, _, calib, q = odd
    with pytest.raises(ValueError, match="already"):
        quantize(q, calib)
