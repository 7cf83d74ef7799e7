"""IR data structures: lookups, validation, copy, printer, passes."""

from __future__ import annotations

import numpy as np
import pytest

from mcutl.ir import Graph, GraphError, Node, QuantParams, Tensor, from_ir_layout, to_ir_layout
from mcutl.ir.interp import run_f32
from mcutl.ir.passes import legalize, simplify
from mcutl.ops import UnsupportedOpError
from mcutl.ops.validate import validate_graph


def small_graph() -> Graph:
    """x -> conv(3x3, pad 1) -> batchnorm -> relu6 -> global_avgpool -> reshape -> linear."""
    rng = np.random.default_rng(0)
    t = {
        "x": Tensor("x", (1, 5, 5, 2), "float32"),
        "w": Tensor("w", (4, 3, 3, 2), "float32", rng.standard_normal((4, 3, 3, 2), np.float32)),
        "b": Tensor("b", (4,), "float32", rng.standard_normal(4).astype(np.float32)),
        "c": Tensor("c", (1, 5, 5, 4), "float32"),
        "bn": Tensor("bn", (1, 5, 5, 4), "float32"),
        "r": Tensor("r", (1, 5, 5, 4), "float32"),
        "p": Tensor("p", (1, 1, 1, 4), "float32"),
        "f": Tensor("f", (1, 4), "float32"),
        "fw": Tensor("fw", (3, 4), "float32", rng.standard_normal((3, 4)).astype(np.float32)),
        "fb": Tensor("fb", (3,), "float32", np.zeros(3, np.float32)),
        "y": Tensor("y", (1, 3), "float32"),
    }
    for k in ("gamma", "beta", "mean", "var"):
        t[k] = Tensor(k, (4,), "float32", rng.uniform(0.5, 1.5, 4).astype(np.float32))
    nodes = [
        Node("conv", "conv2d", ["x", "w", "b"], ["c"],
             {"stride": (1, 1), "pad": (1, 1, 1, 1), "groups": 1, "dilation": (1, 1),
              "act": "none"}),
        Node("bn", "batchnorm", ["c", "gamma", "beta", "mean", "var"], ["bn"], {"eps": 1e-5}),
        Node("relu6", "relu6", ["bn"], ["r"], {}),
        Node("gap", "global_avgpool", ["r"], ["p"], {}),
        Node("flat", "reshape", ["p"], ["f"], {"shape": (1, 4)}),
        Node("fc", "linear", ["f", "fw", "fb"], ["y"], {"act": "none"}),
    ]
    return Graph(t, nodes, ["x"], ["y"], "NHWC")


def test_lookups_and_activations() -> None:
    g = small_graph()
    validate_graph(g)
    assert g.producer("c").name == "conv" and g.producer("x") is None
    assert [n.name for n in g.consumers("c")] == ["bn"]
    assert g.activations() == ["x", "c", "bn", "r", "p", "f", "y"]
    assert set(g.constants()) >= {"w", "b", "fw", "fb"}
    assert not g.is_quantized


def test_copy_is_deep_and_tensors_compare_by_value() -> None:
    g = small_graph()
    h = g.copy()
    assert h.tensors == g.tensors and h.tensors["w"] is not g.tensors["w"]
    h.tensors["w"].data[...] = 0
    h.nodes[0].attrs["act"] = "relu"
    assert g.tensors["w"].data.any() and g.nodes[0].attrs["act"] == "none"
    assert h.tensors["w"] != g.tensors["w"] and h.tensors["b"] == g.tensors["b"]


def test_printer_shows_ops_shapes_dtypes_and_quant() -> None:
    g = small_graph()
    g.tensors["y"].quant = QuantParams(np.array([0.5]), np.array([-3]))
    text = str(g)
    assert "conv: conv2d {stride=(1,1) pad=(1,1,1,1)" in text
    assert "c:float32[1x5x5x4]" in text and "y:float32[1x3](s=0.5,zp=-3)" in text


@pytest.mark.parametrize("breakage, match", [
    (lambda g: g.nodes.reverse(), "before it is written"),
    (lambda g: g.nodes[0].inputs.__setitem__(0, "nope"), "unknown tensor 'nope'"),
    (lambda g: setattr(g.tensors["c"], "shape", (1, 4, 4, 4)), "the op infers"),
    (lambda g: setattr(g, "source_layout", "CHW"), "source_layout"),
    (lambda g: g.outputs.append("w"), "never written"),
    (lambda g: setattr(g.tensors["w"], "quant", QuantParams([1.0, 2.0], [0, 0], axis=0)),
     "2 scales for axis 0"),
])
def test_validate_reports_broken_invariants(breakage, match) -> None:
    g = small_graph()
    breakage(g)
    with pytest.raises(GraphError, match=match):
        validate_graph(g)


def test_validate_rejects_unknown_op_and_bad_attrs() -> None:
    g = small_graph()
    g.nodes[3].op = "softmax"
    with pytest.raises(UnsupportedOpError, match="'softmax' at node 'gap'.*Supported ops: add"):
        validate_graph(g)
    g = small_graph()
    g.nodes[0].attrs["dilation"] = (2, 2)
    with pytest.raises(UnsupportedOpError, match=r"dilation \(2, 2\)"):
        validate_graph(g)


def test_simplify_folds_batchnorm_and_fuses_relu6_preserving_results() -> None:
    g = small_graph()
    x = np.random.default_rng(1).standard_normal((3, 5, 5, 2)).astype(np.float32)
    before = run_f32(g, x)["y"]
    simplify(g)
    validate_graph(g)
    assert [n.op for n in g.nodes] == ["conv2d", "global_avgpool", "reshape", "linear"]
    assert g.nodes[0].attrs["act"] == "relu6"
    np.testing.assert_allclose(run_f32(g, x)["y"], before, rtol=1e-5, atol=1e-6)


def test_legalize_turns_standalone_batchnorm_into_depthwise_conv() -> None:
    g = small_graph()
    g.nodes[0].attrs["act"] = "relu"  # the conv can no longer absorb the batchnorm
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 2)).astype(np.float32)
    before = run_f32(g, x)["y"]
    simplify(g)
    assert "batchnorm" in [n.op for n in g.nodes]
    legalize(g)
    validate_graph(g)
    ops = [n.op for n in g.nodes]
    assert "batchnorm" not in ops and ops.count("conv2d") == 2
    assert g.nodes[1].attrs["groups"] == 4 and g.nodes[1].attrs["act"] == "relu6"
    np.testing.assert_allclose(run_f32(g, x)["y"], before, rtol=1e-5, atol=1e-6)


def test_relu_is_not_fused_into_a_shared_output() -> None:
    g = small_graph()
    g.outputs.append("bn")  # bn's output is read outside the relu6
    simplify(g)
    assert [n.op for n in g.nodes][:2] == ["conv2d", "relu6"]


def test_prune_drops_dead_nodes_and_tensors() -> None:
    g = small_graph()
    g.outputs = ["p"]
    g.prune()
    assert [n.name for n in g.nodes] == ["conv", "bn", "relu6", "gap"]
    assert "fw" not in g.tensors


def test_layout_round_trips() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert to_ir_layout(x, "NCHW").shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(from_ir_layout(to_ir_layout(x, "NCHW"), "NCHW"), x)
    s = x[:, :, 0]
    assert to_ir_layout(s, "NCL").shape == (2, 1, 5, 3)
    np.testing.assert_array_equal(from_ir_layout(to_ir_layout(s, "NCL"), "NCL"), s)
