"""torch frontend: nn.Module (via torch.export) and saved .pt2 programs -> IR."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from torch import nn

from mcutl.frontend import load_model
from mcutl.frontend.onnx_import import from_onnx
from mcutl.frontend.torch_import import from_exported, from_module
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


@lru_cache
def imported(name: str):
    """(module, input shape, IR graph) per case; torch.export takes a second or two."""
    model, shape = make(name)
    return model, shape, from_module(model, shape)


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_import_matches_torch(name: str) -> None:
    model, shape, graph = imported(name)
    x = samples(shape, 8)
    got = run_f32(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(got, torch_forward(model, x), rtol=1e-5, atol=1e-5)


def test_pt2_round_trip_through_load_model(tmp_path) -> None:
    model, shape = make("tiny_imu1d")
    path = tmp_path / "imu.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(shape),)), str(path))
    graph = load_model(path)
    x = samples(shape, 4)
    np.testing.assert_allclose(run_f32(graph, x)[graph.outputs[0]], torch_forward(model, x),
                               rtol=1e-5, atol=1e-5)
    assert graph.source_layout == "NCL"
    # node names come from module paths, weights are named after them
    assert graph.nodes[0].name == "features.0.0"
    assert graph.nodes[0].inputs[1] == "features.0.0.weight"


@pytest.mark.parametrize("name", ["tiny_mbv2", "pad", "dscnn_kws"])
def test_torch_and_onnx_routes_give_the_same_graph(name: str) -> None:
    model, shape, a = imported(name)
    b = from_onnx(onnx_bytes(model, shape))
    assert [(n.op, n.attrs) for n in a.nodes] == [(n.op, n.attrs) for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes, strict=True):
        for ia, ib in zip(na.inputs, nb.inputs, strict=True):
            ta, tb = a.tensors[ia], b.tensors[ib]
            assert ta.shape == tb.shape
            if ta.data is not None:
                np.testing.assert_allclose(ta.data, tb.data, rtol=1e-5, atol=1e-6)


def test_load_model_dispatches_modules_and_programs() -> None:
    model, shape = make("flatten2d")
    with pytest.raises(ValueError, match="input_shape"):
        load_model(model)
    g1 = load_model(model, input_shape=shape)
    g2 = load_model(torch.export.export(model, (torch.zeros(shape),)))
    assert [n.op for n in g1.nodes] == [n.op for n in g2.nodes] == [
        "conv2d", "reshape", "linear", "linear"]
    with pytest.raises(TypeError, match="cannot load"):
        load_model(42)


def test_unsupported_aten_ops_are_reported() -> None:
    with pytest.raises(UnsupportedOpError) as err:
        from_module(SigmoidNet(), (1, 1, 6, 6))
    msg = str(err.value)
    assert "aten.sigmoid" in msg and "sigmoid" in err.value.node and "Supported ops:" in msg
    assert "aten::convolution" in err.value.supported
    with pytest.raises(UnsupportedOpError, match=r"dilation \(2, 2\)") as err:
        from_module(DilatedNet(), (1, 1, 9, 9))
    assert "conv" in err.value.node


def test_module_is_left_in_its_training_mode() -> None:
    model, shape = make("flatten1d")
    model.train()
    from_module(model, shape)
    assert model.training


def test_exported_program_in_training_dialect_is_decomposed() -> None:
    model, shape, g = imported("odd")
    ep = torch.export.export(model, (torch.zeros(shape),))  # aten.conv2d, batch_norm ...
    assert [n.op for n in from_exported(ep).nodes] == [n.op for n in g.nodes]


def test_constant_pad_nd_folds_into_the_conv() -> None:
    _, _, g = imported("dscnn_kws")
    stem = g.nodes[0]
    assert stem.name == "stem.1" and stem.attrs["pad"] == (4, 1, 5, 1)
    assert g.tensors[stem.outputs[0]].shape == (1, 25, 5, 64)
    assert "pad" not in {n.op for n in g.nodes}


@pytest.mark.parametrize(("module", "mode"), [(nn.ReflectionPad2d((1, 2, 4, 5)), "reflect"),
                                              (nn.ReplicationPad2d(1), "replicate"),
                                              (nn.CircularPad2d(1), "circular")])
def test_repeating_pads_are_named_before_decomposition(module: nn.Module, mode: str) -> None:
    """They decompose into arange/abs/index or slice_scatter: the error names the pad."""
    with pytest.raises(UnsupportedOpError) as err:
        from_module(nn.Sequential(module, nn.Conv2d(1, 2, 3)), (1, 1, 9, 9))
    assert err.value.op == "aten.pad.default" and type(module).__name__ in err.value.node
    assert f"Pad with mode {mode}:" in err.value.problem
