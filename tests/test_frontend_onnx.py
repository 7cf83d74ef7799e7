"""ONNX frontend: real exports of the example backbones and odd modules, and hand-built
graphs for the op variants PyTorch's exporter does not emit by default."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from mcutl.frontend import load_model
from mcutl.frontend.onnx_import import from_onnx
from mcutl.ir.interp import run_f32
from mcutl.ops import UnsupportedOpError
from tests.test_frontend_cases import (
    CASES,
    DilatedNet,
    SigmoidNet,
    make,
    onnx_bytes,
    samples,
    torch_forward,
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_import_matches_torch(name: str) -> None:
    model, shape = make(name)
    graph = from_onnx(onnx_bytes(model, shape))
    x = samples(shape, 8)
    got = run_f32(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(got, torch_forward(model, x), rtol=1e-5, atol=1e-5)


def test_backbone_ir_shape_and_layout() -> None:
    model, shape = make("tiny_mbv2")
    g = from_onnx(onnx_bytes(model, shape))
    assert g.source_layout == "NCHW"
    assert g.tensors[g.inputs[0]].shape == (1, 28, 28, 1)
    assert [n.op for n in g.nodes].count("batchnorm") == 0  # folded into the convs
    assert {n.op for n in g.nodes} == {"conv2d", "add", "global_avgpool", "reshape", "linear"}
    stem = g.nodes[0]
    assert stem.attrs["act"] == "relu6" and g.tensors[stem.inputs[1]].shape == (16, 3, 3, 1)
    text = str(g)
    assert "conv2d" in text and "float32[1x28x28x1]" in text


def test_imu_is_ncl_with_height_one() -> None:
    model, shape = make("tiny_imu1d")
    g = from_onnx(onnx_bytes(model, shape))
    assert g.source_layout == "NCL"
    assert g.tensors[g.inputs[0]].shape == (1, 1, 100, 6)
    dw = g.nodes[2]
    assert dw.attrs["groups"] == 32 and g.tensors[dw.inputs[1]].shape == (32, 1, 5, 1)


def test_standalone_batchnorm_stays_a_node() -> None:
    model, shape = make("odd")
    g = from_onnx(onnx_bytes(model, shape))
    assert [n.op for n in g.nodes].count("batchnorm") == 1  # after concat: nothing to fold into
    assert g.nodes[0].attrs["act"] == "relu6"  # Clip(0, 6) with Constant min/max


def test_load_model_by_suffix(tmp_path) -> None:
    model, shape = make("flatten1d")
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_bytes(model, shape))
    g = load_model(path)
    assert g.source_layout == "NCL" and g.nodes[-1].op == "linear"
    with pytest.raises(ValueError, match="must end in one of"):
        load_model(tmp_path / "m.bin")


# ---- hand-built graphs -----------------------------------------------------------


def _model(nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def test_clip_attributes_reduce_mean_attr_and_matmul_add() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4, 2)).astype(np.float32)
    bias = rng.standard_normal(2).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c"], ["r"], name="clip", min=0.0, max=6.0),
        helper.make_node("Identity", ["r"], ["i"], name="id"),
        helper.make_node("ReduceMean", ["i"], ["m"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["m", "fc"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["y"], name="bias"),
    ]
    model = _model(nodes, [_vi("x", [1, 3, 5, 5])], [_vi("y", [1, 2])],
                   [_init("w", w), _init("fc", fc), _init("b", bias)], opset=10)
    g = from_onnx(model)
    assert [n.op for n in g.nodes] == ["conv2d", "global_avgpool", "reshape", "linear"]
    x = rng.standard_normal((3, 3, 5, 5)).astype(np.float32)
    conv = np.zeros((3, 4, 5, 5), np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i in range(5):
        for j in range(5):
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], w)
    want = np.clip(conv, 0, 6).mean((2, 3)) @ fc + bias
    np.testing.assert_allclose(run_f32(g, x)[g.outputs[0]], want, rtol=1e-5, atol=1e-5)


def test_clip_initializers_reduce_mean_axes_input_squeeze_and_gemm() -> None:
    rng = np.random.default_rng(2)
    wt = rng.standard_normal((3, 6)).astype(np.float32)  # Gemm B without transB: (in, out)
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["r"], name="clip"),  # [0, inf): relu
        helper.make_node("ReduceMean", ["r", "axes"], ["m"], name="mean", keepdims=1),
        helper.make_node("Squeeze", ["m", "sq"], ["s"], name="squeeze"),
        helper.make_node("Unsqueeze", ["s", "us"], ["u"], name="unsqueeze"),
        helper.make_node("Flatten", ["u"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w"], ["y"], name="gemm", alpha=0.5),
    ]
    inits = [_init("axes", np.array([-2, -1])), _init("sq", np.array([2, 3])),
             _init("us", np.array([2])), _init("w", wt),
             _init("lo", np.array(0.0, np.float32)), _init("hi", np.array(np.inf, np.float32))]
    model = _model(nodes, [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 6])], inits, opset=18)
    g = from_onnx(model)
    assert [n.op for n in g.nodes] == ["relu", "global_avgpool", "reshape", "linear"]
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    want = 0.5 * (np.maximum(x, 0).mean((2, 3)) @ wt)
    np.testing.assert_allclose(run_f32(g, x)[g.outputs[0]], want, rtol=1e-5, atol=1e-5)


def test_shape_arithmetic_is_folded_at_import() -> None:
    """x.view(x.size(0), -1) as the exporter writes it without constant folding."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    inits = [_init("zero", np.array(0)), _init("ax0", np.array([0])),
             _init("minus1", np.array([-1]))]
    g = from_onnx(_model(nodes, [_vi("x", [1, 2, 1, 1])], [_vi("y", [1, 2])], inits))
    assert [n.op for n in g.nodes] == ["reshape"]


def test_unsupported_ops_name_node_problem_and_supported_list() -> None:
    model, shape = SigmoidNet().eval(), (1, 1, 6, 6)
    with pytest.raises(UnsupportedOpError) as err:
        from_onnx(onnx_bytes(model, shape))
    msg = str(err.value)
    assert "'Sigmoid'" in msg and "/Sigmoid" in msg and "Supported ops:" in msg
    assert "Conv" in err.value.supported and "Gemm" in err.value.supported

    with pytest.raises(UnsupportedOpError, match=r"dilation \(2, 2\)") as err:
        from_onnx(onnx_bytes(DilatedNet().eval(), (1, 1, 9, 9)))
    assert err.value.node == "/conv/Conv" and "Conv" in err.value.supported


def test_clip_to_other_range_is_unsupported() -> None:
    nodes = [helper.make_node("Clip", ["x"], ["y"], name="clip", min=-1.0, max=1.0)]
    model = _model(nodes, [_vi("x", [1, 2])], [_vi("y", [1, 2])], opset=10)
    with pytest.raises(UnsupportedOpError, match=r"clip to \[-1.0, 1.0\]"):
        from_onnx(model)


def test_exported_pad_arithmetic_folds_into_the_conv() -> None:
    """ZeroPad2d exports as ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast -> Pad:
    the arithmetic folds to constants, the zero pad into the conv (asymmetric, Keras
    "same" of the DS-CNN: rows 4/5, columns 1/1)."""
    model, shape = make("dscnn_kws")
    proto = onnx.load_from_string(onnx_bytes(model, shape))
    assert {"ConstantOfShape", "Slice", "Transpose", "Pad"} <= {n.op_type for n in
                                                                proto.graph.node}
    g = from_onnx(proto)
    stem = g.nodes[0]
    assert stem.op == "conv2d" and stem.attrs["pad"] == (4, 1, 5, 1)
    assert g.tensors[stem.outputs[0]].shape == (1, 25, 5, 64)
    assert "pad" not in {n.op for n in g.nodes}


def test_pads_before_pools_stay_standalone() -> None:
    model, shape = make("pad")
    g = from_onnx(onnx_bytes(model, shape))
    ops = [(n.op, n.attrs.get("pad")) for n in g.nodes]
    # (1, 2, 4, 5) on 13x11 before a 6x4/2 conv: the second right column is read
    assert ops[:2] == [("conv2d", (4, 1, 5, 2)), ("conv2d", (2, 0, 1, 1))]
    assert ops[2:6] == [("pad", (0, 1, 1, 0)), ("maxpool2d", (0, 0, 0, 0)),
                        ("pad", (1, 0, 0, 2)), ("avgpool2d", (0, 0, 0, 0))]


def test_pad_attribute_form_and_axes_input() -> None:
    """Pad of opset 2..10 (pads and value attributes) and of opset 18 (axes input)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 3)))
    old = _model([helper.make_node("Pad", ["x"], ["y"], name="pad", pads=[0, 0, 1, 0, 0, 0, 2, 3],
                                   value=0.0)],
                 [_vi("x", [1, 3, 4, 5])], [_vi("y", [1, 3, 7, 8])], opset=10)
    new = _model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")],
                 [_vi("x", [1, 3, 4, 5])], [_vi("y", [1, 3, 7, 8])],
                 [_init("pads", np.array([1, 0, 2, 3])), _init("axes", np.array([2, -1]))],
                 opset=18)
    for model in (old, new):
        g = from_onnx(model)
        assert [(n.op, n.attrs["pad"]) for n in g.nodes] == [("pad", (1, 0, 2, 3))]
        np.testing.assert_array_equal(run_f32(g, x)[g.outputs[0]], want)


@pytest.mark.parametrize(("module", "mode"), [(nn.ReflectionPad2d((1, 2, 4, 5)), "reflect"),
                                              (nn.ReplicationPad2d(1), "edge")])
def test_repeating_pad_error_names_the_mode_not_the_pad_arithmetic(module: nn.Module,
                                                                   mode: str) -> None:
    with pytest.raises(UnsupportedOpError) as err:
        from_onnx(onnx_bytes(nn.Sequential(module, nn.Conv2d(1, 2, 3)).eval(), (1, 1, 9, 9)))
    assert err.value.op == "Pad" and f"Pad with mode {mode}:" in err.value.problem
    assert "ConstantOfShape" not in str(err.value).split("Supported ops")[0]
