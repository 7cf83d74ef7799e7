"""The op registry: what every OpDef declares, and its numpy references against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mcutl.ir import Graph, Node, Tensor
from mcutl.ops import REGISTRY, OpDef, QuantRule, UnsupportedOpError, get_op, supported_ops
from mcutl.ops.conv import conv_kind
from mcutl.ops.validate import validate_graph

CANONICAL = {"conv2d", "batchnorm", "relu", "relu6", "add", "avgpool2d", "maxpool2d",
             "global_avgpool", "reshape", "linear", "concat", "pad"}


def test_registry_holds_exactly_the_canonical_ops() -> None:
    assert set(supported_ops()) == CANONICAL
    for name, op in REGISTRY.items():
        assert isinstance(op, OpDef) and op.name == name and op.family
        assert isinstance(op.quant_rule, QuantRule)
        assert op.backward is None  # slot for the training issue
        assert all(r in ("act", "weight", "bias", "param") for r in op.input_roles)


def test_quant_rules_follow_the_tflite_kernels() -> None:
    same = {n for n, op in REGISTRY.items() if op.quant_rule is QuantRule.SAME_AS_INPUT}
    # standalone relu/relu6 keep their input's params: tflite-runtime and TFLite Micro
    # requantise them differently, a clamp in one domain is what both compute alike
    # pad fills with the zero point (real 0), as TFLite's int8 PAD: it cannot rescale
    assert same == {"avgpool2d", "maxpool2d", "global_avgpool", "reshape", "relu", "relu6",
                    "pad"}
    assert REGISTRY["concat"].quant_rule is QuantRule.SHARED
    assert {n for n, op in REGISTRY.items() if op.accepts_act} == {"conv2d", "linear", "add"}
    assert REGISTRY["reshape"].c_alias


def test_get_op_unknown_names_node_and_lists_supported() -> None:
    with pytest.raises(UnsupportedOpError) as err:
        get_op("gelu", Node("blk.3", "gelu", ["x"], ["y"], {}))
    assert err.value.node == "blk.3" and err.value.supported == sorted(CANONICAL)
    assert "'gelu' at node 'blk.3'" in str(err.value)


def _run(op: str, attrs: dict, *arrays: np.ndarray) -> np.ndarray:
    node = Node("n", op, [f"i{k}" for k in range(len(arrays))], ["o"], attrs)
    return REGISTRY[op].reference_f32(node, list(arrays))[0]


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.numpy().transpose(0, 2, 3, 1)


@settings(max_examples=30, deadline=None)
@given(c_in_per_group=st.integers(1, 3), groups=st.integers(1, 3), mult=st.integers(1, 2),
       k=st.sampled_from([(1, 1), (3, 3), (1, 5), (3, 1)]), stride=st.integers(1, 2),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), hw=st.tuples(st.integers(5, 9),
                                                                          st.integers(5, 9)),
       act=st.sampled_from(["none", "relu", "relu6"]), seed=st.integers(0, 99))
def test_conv2d_reference_matches_torch(c_in_per_group, groups, mult, k, stride, pad, hw, act,
                                        seed) -> None:
    rng = np.random.default_rng(seed)
    c_in, c_out = c_in_per_group * groups, groups * mult
    x = rng.standard_normal((2, *hw, c_in)).astype(np.float32)
    w = rng.standard_normal((c_out, *k, c_in_per_group)).astype(np.float32) * 2
    b = rng.standard_normal(c_out).astype(np.float32)
    attrs = {"stride": (stride, stride), "pad": (pad[0], pad[1], pad[0], pad[1]),
             "groups": groups, "dilation": (1, 1), "act": act}
    got = _run("conv2d", attrs, x, w, b)
    want = F.conv2d(_nchw(x), torch.from_numpy(w.transpose(0, 3, 1, 2).copy()),
                    torch.from_numpy(b), stride, pad, groups=groups)
    want = {"none": want, "relu": F.relu(want), "relu6": F.relu6(want)}[act]
    np.testing.assert_allclose(got, _nhwc(want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_pools_match_torch(k: int, s: int, p: int) -> None:
    x = np.random.default_rng(k + s + p).standard_normal((2, 7, 6, 3)).astype(np.float32)
    attrs = {"kernel": (k, k), "stride": (s, s), "pad": (p, p, p, p)}
    np.testing.assert_allclose(_run("maxpool2d", attrs, x),
                               _nhwc(F.max_pool2d(_nchw(x), k, s, p)), rtol=1e-6)
    want = F.avg_pool2d(_nchw(x), k, s, p, count_include_pad=False)
    np.testing.assert_allclose(_run("avgpool2d", attrs, x), _nhwc(want), rtol=1e-5, atol=1e-6)
    gap = _run("global_avgpool", {}, x)
    np.testing.assert_allclose(gap, x.mean((1, 2), keepdims=True), rtol=1e-6)


def test_linear_add_concat_reshape_batchnorm() -> None:
    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (2, 4), (2,)))
    np.testing.assert_allclose(_run("linear", {"act": "relu"}, x, w, b),
                               np.maximum(x @ w.T + b, 0), rtol=1e-6)
    a, c = (rng.standard_normal((2, 3, 3, 4)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(_run("add", {"act": "relu6"}, a, c), np.clip(a + c, 0, 6))
    assert _run("concat", {"axis": 3}, a, c).shape == (2, 3, 3, 8)
    assert _run("reshape", {"shape": (1, 36)}, a).shape == (2, 36)
    g, be, m, v = (rng.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4))
    want = F.batch_norm(_nchw(a), torch.from_numpy(m), torch.from_numpy(v), torch.from_numpy(g),
                        torch.from_numpy(be), eps=1e-3)
    np.testing.assert_allclose(_run("batchnorm", {"eps": 1e-3}, a, g, be, m, v), _nhwc(want),
                               rtol=1e-5, atol=1e-6)


def _conv_graph(c_in: int, c_out: int, k: int, groups: int, stride: int = 1) -> Graph:
    w = np.zeros((c_out, k, k, c_in // groups), np.int8)
    t = {"x": Tensor("x", (1, 8, 8, c_in), "int8"),
         "w": Tensor("w", w.shape, "int8", w), "b": Tensor("b", (c_out,), "int32",
                                                             np.zeros(c_out, np.int32))}
    node = Node("c", "conv2d", ["x", "w", "b"], ["y"],
                {"stride": (stride, stride), "pad": (0, 0, 0, 0), "groups": groups,
                 "dilation": (1, 1), "act": "none"})
    shape = REGISTRY["conv2d"].infer_shape(node, [t["x"].shape, t["w"].shape, t["b"].shape])[0]
    t["y"] = Tensor("y", shape, "int8")
    return Graph(t, [node], ["x"], ["y"], "NHWC")


@pytest.mark.parametrize("c_in, c_out, k, groups, kind", [
    (4, 8, 1, 1, "pointwise"), (4, 8, 3, 1, "standard"), (4, 8, 3, 4, "depthwise"),
    (4, 8, 3, 2, "grouped")])
def test_conv_kind_and_memory(c_in, c_out, k, groups, kind) -> None:
    g = _conv_graph(c_in, c_out, k, groups)
    validate_graph(g)
    node = g.nodes[0]
    assert conv_kind(node, g) == kind
    op = REGISTRY["conv2d"]
    assert op.scratch_bytes(node, g) == 0  # the C kernels need no scratch (int8.h)
    assert op.output_bytes(node, g) == g.tensors["y"].size


def test_conv_rejects_groups_that_do_not_divide() -> None:
    g = _conv_graph(4, 6, 3, 2)
    g.nodes[0].attrs["groups"] = 3
    with pytest.raises(UnsupportedOpError, match="groups=3"):
        validate_graph(g)
