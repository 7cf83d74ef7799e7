"""The compiled int8 backbone equals TFLite bit for bit: host build, QEMU, tflite-runtime
(reference kernels) and TFLite Micro, on the two example backbones and imported files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import BuildInfo, compile_backbone
from mcutl.run import ModelMismatchError, prepare_inputs, run_build
from mcutl.tflite.oracle import run_tflite_ref, run_tflm
from tests.conftest import needs_qemu

pytestmark = pytest.mark.tflite
N_INPUTS = 200

MODELS = {
    "mbv2": (TinyMBV2, (1, 1, 28, 28)),
    "imu1d": (TinyIMU1D, (1, 6, 100)),
}


def _inputs(name: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *MODELS[name][1][1:])
    if name == "mbv2":
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def _module(name: str) -> torch.nn.Module:
    cls, _ = MODELS[name]
    return randomize_batchnorm_stats(spread_init(cls(seed=3), seed=4), seed=5).eval()


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    name = request.param
    out = tmp_path_factory.mktemp(f"build-{name}")
    info, gen, _ = compile_backbone(
        _module(name), "stm32f405", out, calib=_inputs(name, 64, 0),
        input_shape=MODELS[name][1], source_name=name,
    )
    return name, out, info, gen


def _oracles(build: Path, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tfl = (build / "model.tflite").read_bytes()
    ref = np.concatenate([run_tflite_ref(tfl, [s[None]])[0] for s in q])
    micro = np.concatenate([run_tflm(tfl, [s[None]])[0][0] for s in q])
    return ref, micro


def test_host_build_equals_tflite_and_tflm(built) -> None:  # noqa: ANN001
    name, out, info, _ = built
    x = _inputs(name, N_INPUTS, 1)
    res = run_build(out, x)
    ref, micro = _oracles(out, prepare_inputs(info, x))
    assert res.y.dtype == np.int8 and res.y.shape == ref.shape
    # the comparison means something only if the outputs depend on the input
    assert len({row.tobytes() for row in ref}) > N_INPUTS // 2
    np.testing.assert_array_equal(micro, ref)
    np.testing.assert_array_equal(res.y, ref)


@needs_qemu
@pytest.mark.qemu
def test_qemu_equals_tflite(built) -> None:  # noqa: ANN001
    name, out, info, _ = built
    x = _inputs(name, N_INPUTS, 2)
    res = run_build(out, x, qemu=True)
    ref, _ = _oracles(out, prepare_inputs(info, x))
    np.testing.assert_array_equal(res.y, ref)
    assert all(t > 0 for t in res.ticks)


def test_flash_tables_are_the_raw_parameters(built) -> None:  # noqa: ANN001
    _, out, _, gen = built
    assert gen.weight_table_bytes <= 1.05 * gen.raw_param_bytes
    fw = (out / "report.json").read_text()
    assert '"weight_table_ratio"' in fw


def test_arena_plan_is_tight(built) -> None:  # noqa: ANN001
    _, _, _, gen = built
    gen.plan.check_no_overlap()
    assert gen.plan.arena_size() <= 1.02 * gen.plan.lower_bound()


def test_tflite_file_imports_without_requantisation(built, tmp_path: Path) -> None:  # noqa: ANN001
    """A user's int8 .tflite compiles as it is: same model, same outputs, NHWC input."""
    name, out, info, _ = built
    info2, _, _ = compile_backbone(out / "model.tflite", "stm32f405", tmp_path / "b")
    assert info2.model_hash == info.model_hash
    assert info2.source_layout == "NHWC"
    q = prepare_inputs(info, _inputs(name, 50, 3))  # int8 NHWC: the file's own layout
    res = run_build(tmp_path / "b", q)
    ref, _ = _oracles(tmp_path / "b", q)
    np.testing.assert_array_equal(res.y, ref)


def test_onnx_cli_compile_and_run(tmp_path: Path) -> None:
    """`mcutl compile model.onnx --calib` then `mcutl run --input` on the host build."""
    model = _module("mbv2")
    onnx_path = tmp_path / "mbv2.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(onnx_path), dynamo=False)
    np.savez(tmp_path / "calib.npz", x=_inputs("mbv2", 32, 0))
    build = tmp_path / "build"
    assert main(["compile", str(onnx_path), "--target", "stm32f405",
                 "--calib", str(tmp_path / "calib.npz"), "-o", str(build)]) == 0
    for f in ("model.tflite", "model.c", "firmware.elf", "firmware-qemu.elf", "report.md",
              "build.json", "host/firmware"):
        assert (build / f).exists(), f
    x = _inputs("mbv2", 20, 7)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(build), "--input", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        info = BuildInfo.load(build)
        ref, _ = _oracles(build, prepare_inputs(info, x))
        np.testing.assert_array_equal(out["y"], ref)
        assert out["y"].shape == (20, 10)
        assert float(out["scale"]) == pytest.approx(info.output_scale)
        assert int(out["zero_point"]) == info.output_zero_point


def test_run_refuses_firmware_of_another_model(built, tmp_path: Path) -> None:  # noqa: ANN001
    name, out, _, _ = built
    other = tmp_path / "other"
    other.mkdir()
    for f in ("build.json",):
        (other / f).write_text((out / f).read_text().replace('"model_hash": "', '"model_hash": "0'))
    (other / "host").symlink_to(out / "host")
    with pytest.raises(ModelMismatchError, match="the device runs model"):
        run_build(other, _inputs(name, 1, 0))


def test_wrong_input_shape_is_explained(built) -> None:  # noqa: ANN001
    _, out, _, _ = built
    with pytest.raises(Exception, match="expects"):
        run_build(out, np.zeros((2, 3, 5, 5), dtype=np.float32))
