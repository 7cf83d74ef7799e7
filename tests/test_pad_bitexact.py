"""Zero pads compiled end to end equal tflite-runtime's reference kernels bit for bit
(issue 11, item 0): the MLPerf Tiny DS-CNN KWS with Keras-style "same" padding from
torch .pt2, ONNX, mcutl's own .tflite and a hand-built .tflite (PAD + VALID conv); pads
before pools as the standalone int8 pad kernel on the host and in QEMU."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from examples.backbones import randomize_batchnorm_stats, spread_init
from examples.mlperf_tiny import DSCNNKWS
from mcutl.compile import BuildInfo, compile_model
from mcutl.frontend.tflite_import import import_tflite
from mcutl.frontend.tflite_reader import read_tflite
from mcutl.ir import Node, Tensor
from mcutl.ir.layout import from_ir_layout
from mcutl.run import prepare_inputs, run_build
from mcutl.tflite.export import export_tflite
from mcutl.tflite.oracle import run_tflite_ref
from tests.conftest import needs_qemu
from tests.test_frontend_cases import make, onnx_bytes, samples

pytestmark = pytest.mark.tflite
KWS = (1, 1, 49, 10)


def _ref(tfl: bytes, q: np.ndarray) -> np.ndarray:
    return np.concatenate([run_tflite_ref(tfl, [s[None]])[0] for s in q])


def _bitexact(out: Path, info: BuildInfo, x: np.ndarray, qemu: bool = False) -> np.ndarray:
    """The build's outputs for ``x``, asserted equal to tflite-runtime on its model.tflite."""
    q = prepare_inputs(info, x)
    ref = from_ir_layout(_ref((out / "model.tflite").read_bytes(), q), info.source_layout)
    y = run_build(out, x, qemu=qemu).y
    assert len({row.tobytes() for row in ref}) > len(x) // 2  # outputs depend on the input
    np.testing.assert_array_equal(y, ref)
    return y


@pytest.fixture(scope="module")
def kws(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, np.ndarray]:
    """DS-CNN as .pt2 and .onnx files, and its calibration batch."""
    d = tmp_path_factory.mktemp("kws")
    model = randomize_batchnorm_stats(spread_init(DSCNNKWS().eval(), seed=1), seed=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.zeros(KWS),)), d / "kws.pt2")
    (d / "kws.onnx").write_bytes(onnx_bytes(model, KWS))
    return model, d, samples(KWS, 32, seed=0)


def test_dscnn_keras_same_padding_is_bit_exact_from_pt2_onnx_and_tflite(kws) -> None:  # noqa: ANN001
    _, d, calib = kws
    x = samples(KWS, 100, seed=1)
    built = {}
    for route in ("pt2", "onnx"):
        out = d / f"build-{route}"
        c = compile_model(d / f"kws.{route}", "stm32f405", out, calib=calib)
        stem = c.graph.nodes[0]
        assert stem.op == "conv2d" and stem.attrs["pad"] == (4, 1, 5, 1)  # the ZeroPad2d
        assert c.graph.tensors[stem.outputs[0]].shape == (1, 25, 5, 64)
        assert "pad" not in {n.op for n in c.graph.nodes}
        built[route] = (c.info, _bitexact(out, c.info, x))
    m = read_tflite((d / "build-onnx" / "model.tflite").read_bytes())
    assert m.operators[0].op == "CONV_2D" and m.operators[0].options["padding"] == "SAME"
    assert "PAD" not in {op.op for op in m.operators}
    # the .tflite mcutl wrote compiles as it is (NHWC int8 input), to the same model
    info, _ = built["onnx"]
    info3 = compile_model(d / "build-onnx" / "model.tflite", "stm32f405",
                          d / "build-tflite").info
    assert info3.model_hash == info.model_hash
    q = prepare_inputs(info, x)
    np.testing.assert_array_equal(_bitexact(d / "build-tflite", info3, q), built["onnx"][1])
    # (the .pt2 and ONNX routes differ in the last float bit: the ONNX exporter folds
    # batchnorm itself, so their int8 models differ slightly; each equals its oracle)


def test_hand_built_tflite_pad_then_valid_conv_is_folded_and_bit_exact(kws, tmp_path: Path
                                                                         ) -> None:  # noqa: ANN001
    """A converter that writes the stem as PAD + VALID CONV_2D: the PAD folds into the
    conv (no copy of the padded map in the arena), outputs unchanged."""
    _, d, _ = kws
    src = (d / "build-onnx" / "model.tflite").read_bytes()
    g = import_tflite(src)
    stem = g.nodes[0]
    x = g.tensors[stem.inputs[0]]
    padded = Tensor("stem/padded", (1, 58, 12, 1), "int8", None, x.quant)
    g.add_tensor(padded)
    g.nodes.insert(0, Node("stem/pad", "pad", [x.name], [padded.name], {"pad": (4, 1, 5, 1)}))
    stem.inputs[0], stem.attrs["pad"] = padded.name, (0, 0, 0, 0)
    hand = export_tflite(g)
    m = read_tflite(hand)
    assert [op.op for op in m.operators[:2]] == ["PAD", "CONV_2D"]
    assert m.operators[1].options["padding"] == "VALID"
    q = prepare_inputs(BuildInfo.load(d / "build-onnx"), samples(KWS, 60, seed=2))
    np.testing.assert_array_equal(_ref(hand, q), _ref(src, q))  # the same function
    path = tmp_path / "hand.tflite"
    path.write_bytes(hand)
    c = compile_model(path, "stm32f405", tmp_path / "b")
    assert c.graph.nodes[0].attrs["pad"] == (4, 1, 5, 1)
    assert "pad" not in {n.op for n in c.graph.nodes}
    np.testing.assert_array_equal(run_build(tmp_path / "b", q).y, _ref(hand, q))


@pytest.fixture(scope="module")
def padnet(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    model, shape = make("pad")
    out = tmp_path_factory.mktemp("padnet")
    c = compile_model(model, "stm32f405", out, calib=samples(shape, 32, seed=3),
                      input_shape=shape)
    return out, c, shape


def test_pads_before_pools_run_as_the_int8_pad_kernel(padnet) -> None:  # noqa: ANN001
    out, c, shape = padnet
    ops = [(n.op, n.attrs.get("pad")) for n in c.graph.nodes]
    assert ops[:2] == [("conv2d", (4, 1, 5, 2)), ("conv2d", (2, 0, 1, 1))]  # both folded
    assert [o for o in ops if o[0] == "pad"] == [("pad", (0, 1, 1, 0)), ("pad", (1, 0, 0, 2))]
    assert (out / "model.c").read_text().count("mcutl_pad_s8(") == 2
    m = read_tflite((out / "model.tflite").read_bytes())  # TFLite has no asymmetric conv
    assert [op.op for op in m.operators][:6] == [  # padding but SAME: PAD + VALID conv
        "PAD", "CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "PAD", "MAX_POOL_2D"]
    _bitexact(out, c.info, samples(shape, 100, seed=4))


@needs_qemu
@pytest.mark.qemu
def test_pads_before_pools_in_qemu(padnet) -> None:  # noqa: ANN001
    out, c, shape = padnet
    _bitexact(out, c.info, samples(shape, 12, seed=5), qemu=True)


def test_pad1d_before_conv1d_and_maxpool(tmp_path: Path) -> None:
    model, shape = make("pad1d")
    c = compile_model(model, "stm32f405", tmp_path, calib=samples(shape, 32),
                      input_shape=shape)
    assert [(n.op, n.attrs.get("pad")) for n in c.graph.nodes][:3] == [
        ("conv2d", (0, 3, 0, 1)), ("pad", (0, 2, 0, 0)), ("maxpool2d", (0, 0, 0, 0))]
    _bitexact(tmp_path, c.info, samples(shape, 100, seed=6))


class _PadChain(nn.Module):
    """Pads of pads, and a pad wider than the 1x1 kernel that reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(F.pad(F.pad(x, (1, 0, 0, 0)), (3, 3, 3, 3)))
        return self.b(F.pad(F.pad(y, (0, 2, 0, 0)), (0, 0, 1, 0)))


def test_pad_chains_and_pads_wider_than_the_kernel_fold(tmp_path: Path) -> None:
    shape = (1, 2, 6, 5)
    c = compile_model(_PadChain().eval(), "host", tmp_path, calib=samples(shape, 16),
                      input_shape=shape)
    # the last column of (0, 2) is never read by the 3x3/2 windows of the 12x12 map
    assert [(n.op, n.attrs["pad"]) for n in c.graph.nodes] == [
        ("conv2d", (3, 4, 3, 3)), ("conv2d", (1, 0, 0, 1))]
    _bitexact(tmp_path, c.info, samples(shape, 40, seed=7))
