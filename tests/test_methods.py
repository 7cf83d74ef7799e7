"""The baseline training methods compiled by the same pipeline as Rep-Net: each builds a
trainable graph that the generic step compiler and reference walk; gradient parity with
autograd on the host build, 50 steps bit-identical between QEMU and the host build, on
both example models (TinyMBV2 has residual adds). Rep-Net itself: tests/test_train.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import compile_training, load_and_quantize
from mcutl.methods import METHODS, get_method
from mcutl.methods.registry import UnknownMethodError
from mcutl.train.codegen import TrainOptions
from mcutl.verify.harness import verify
from mcutl.verify.reference import TorchReference
from tests.conftest import HAVE_ARM, HAVE_QEMU, needs_qemu

MODELS = {"mbv2": (TinyMBV2, (1, 1, 28, 28), 10), "imu1d": (TinyIMU1D, (1, 6, 100), 4)}
BASELINES = ["last", "bias", "bn-shift", "adaptor", "finetune-last-k"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _model(name: str) -> tuple[torch.nn.Module, np.ndarray, tuple[int, ...], int]:
    cls, shape, classes = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=1), seed=2), seed=3).eval()
    calib = np.random.default_rng(0).random((32, *shape[1:]), dtype=np.float32)
    return model, calib, shape, classes


@pytest.fixture(scope="module", params=[(m, n) for m in BASELINES for n in sorted(MODELS)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    method, name = request.param
    model, calib, shape, classes = _model(name)
    out = tmp_path_factory.mktemp(f"{method}-{name}")
    # lr 0.01: at the default 0.03 the adaptor on random labels diverges within 50 steps
    info, tm, gen, _ = compile_training(model, "stm32f405", out, num_classes=classes,
                                        calib=calib, input_shape=shape, method=method,
                                        options=TrainOptions(lr=0.01))
    return method, out, tm, gen


def test_registry_lists_every_method() -> None:
    assert set(METHODS) == {"repnet", "last", "bias", "bn-shift", "adaptor", "finetune-last-k"}
    with pytest.raises(UnknownMethodError, match="known methods are"):
        get_method("nosuch")


def test_host_build_matches_autograd(built) -> None:  # noqa: ANN001
    method, out, tm, gen = built
    rep = verify(out, steps=20, check_every=5)
    assert rep.passed, rep.first_mismatch
    assert sum(bool(r.grad_rel_err) for r in rep.steps) >= 4
    assert len({r.digest for r in rep.steps}) == 20  # every step changed the parameters
    names = {n for n, _, _ in gen.param_layout}
    assert {"head.weight", "head.bias"} <= names
    if method != "last":
        assert len(names) > 2 and tm.info  # the method trains more than the head


@pytest.mark.parametrize("method", ["bias", "bn-shift", "adaptor"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_trainable_tensor_gets_a_gradient(method: str, name: str) -> None:
    """Through the frozen int8 backbone (straight-through, 1-bit masks) a gradient
    reaches every trainable tensor (zero-initialised scales set to 1 first)."""
    model, calib, shape, classes = _model(name)
    g = load_and_quantize(model, calib, shape)
    m = get_method(method)
    tm = m.build(g, classes, m.spec(), None)
    for n in tm.nodes:
        if "gamma" in n.params:
            n.params["gamma"][:] = 1.0
    ref = TorchReference(tm)
    x = np.random.default_rng(3).integers(-128, 128, tm.backbone.tensors[
        tm.backbone.inputs[0]].shape).astype(np.int8)
    ref.loss(x, 1).backward()
    for pname, p in ref.named_trainable():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, pname


@needs_qemu
@pytest.mark.qemu
def test_qemu_is_bit_identical_to_host(built) -> None:  # noqa: ANN001
    _, out, _, _ = built
    host = verify(out, steps=50, check_every=1000)
    dev = verify(out, steps=50, check_every=25, qemu=True, against=host.steps)
    assert dev.passed, dev.first_mismatch
    assert [r.digest for r in dev.steps] == [r.digest for r in host.steps]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trained_biases_start_at_the_frozen_int32_biases(name: str) -> None:
    """bias: the float parameters requantise to exactly the int32 biases the backbone had,
    so the first forward is the frozen model's."""
    from mcutl.ops._ste import dequant_const
    from mcutl.quant.bias import quantize_bias

    model, calib, shape, classes = _model(name)
    g = load_and_quantize(model, calib, shape)
    tm = get_method("bias").build(g, classes, get_method("bias").spec(), None)
    convs = {n.outputs[0]: n for n in tm.backbone.nodes if n.op == "conv2d"}
    assert len(tm.info["convs"]) >= 2
    for n in tm.nodes:
        if n.op == "int8_bias":
            b = tm.backbone.tensors[convs[n.attrs["tensor"]].inputs[2]]
            assert b.quant is not None and b.data is not None
            np.testing.assert_array_equal(
                quantize_bias(dequant_const(b), np.asarray(b.quant.scale, np.float32)), b.data)


def test_finetune_through_a_residual_block(tmp_path: Path) -> None:
    """k = 2 on TinyMBV2: the last inverted residual block (expand, depthwise, project,
    residual add) in float, trained in full: parity with autograd, QEMU bit-identical."""
    from mcutl.methods.finetune import FinetuneSpec

    model, calib, shape, classes = _model("mbv2")
    _, tm, _, _ = compile_training(model, "stm32f405", tmp_path, num_classes=classes,
                                   calib=calib, input_shape=shape, method="finetune-last-k",
                                   spec=FinetuneSpec(k=2), options=TrainOptions(lr=0.01))
    assert [n.op for n in tm.nodes].count("add") == 1
    host = verify(tmp_path, steps=12, check_every=3)
    assert host.passed, host.first_mismatch
    if HAVE_QEMU and HAVE_ARM:
        dev = verify(tmp_path, steps=12, check_every=100, qemu=True, against=host.steps)
        assert dev.passed, dev.first_mismatch


def test_cli_lists_a_method_s_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compile", "m.onnx", "--method", "bn-shift", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--method bn-shift options" in text and "--k K" in text
    assert main(["compile", "m.onnx", "--target", "stm32f405", "--method", "nosuch",
                 "--num-classes", "2", "-o", "/tmp/x"]) == 2
    assert "known methods are" in capsys.readouterr().err


def test_cli_compiles_a_baseline_with_its_options(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    model, calib, shape, _ = _model("imu1d")
    onnx_path = tmp_path / "imu.onnx"
    torch.onnx.export(model, torch.zeros(shape), str(onnx_path), dynamo=False)
    np.savez(tmp_path / "calib.npz", x=calib)
    assert main(["compile", str(onnx_path), "--method", "adaptor", "--k", "1",
                 "--reduction", "2", "--num-classes", "3", "--calib",
                 str(tmp_path / "calib.npz"), "--target", "stm32f405",
                 "-o", str(tmp_path / "b")]) == 0
    assert "adaptor: branches beside the top 1 blocks" in capsys.readouterr().out
    assert main(["compile", str(onnx_path), "--method", "bn-shift", "--k", "0",
                 "--num-classes", "3", "--calib", str(tmp_path / "calib.npz"),
                 "--target", "stm32f405", "-o", str(tmp_path / "c")]) == 2
    assert "k must be >= 1" in capsys.readouterr().err


class _PoolBeforeConnector(torch.nn.Module):
    """conv -> max pool -> mean -> linear: a side module reads the pooled map and no
    gradient flows back through the pool (an average pool's backward has nothing to do)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 5, stride=2, padding=2)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.max_pool1d(self.conv(x), 3).mean(2))


@pytest.mark.host
def test_no_unused_dims_in_the_step(tmp_path: Path) -> None:
    """A gradient nothing asks for declares no dims struct (an unused one failed the
    -Werror build of this model's train.c); the step then verifies."""
    calib = np.random.default_rng(0).standard_normal((16, 4, 21)).astype(np.float32)
    compile_training(_PoolBeforeConnector().eval(), "host", tmp_path, num_classes=3,
                     calib=calib, input_shape=(1, 4, 21), method="repnet")
    rep = verify(tmp_path, steps=6, check_every=2)
    assert rep.passed, rep.first_mismatch
