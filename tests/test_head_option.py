"""`mcutl compile --head`: the trained head starts from the model's own classifier when it
has --num-classes outputs (auto), always (classifier: an error naming the fix if there is
none) or never (new)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.verify.harness import load_trainable

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("head")
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(num_classes=4, seed=3))).eval()
    torch.onnx.export(model, torch.zeros(1, 6, 100), str(folder / "m.onnx"), dynamo=False)
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.standard_normal((16, 6, 100)).astype(np.float32))
    return folder / "m.onnx", folder / "calib.npz"


def _compile(model: Path, calib: Path, out: Path, classes: int, *extra: str) -> int:
    return main(["compile", str(model), "--method", "last", "--num-classes", str(classes),
                 "--target", "host", "--calib", str(calib), "-o", str(out), *extra])


def test_auto_starts_from_the_classifier_when_the_classes_match(
        onnx_model: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, calib = onnx_model
    assert _compile(model, calib, tmp_path / "a", 4) == 0
    assert "starts from the model's own 4-class classifier" in capsys.readouterr().out
    _, auto = load_trainable(tmp_path / "a")
    assert _compile(model, calib, tmp_path / "c", 4, "--head", "classifier") == 0
    _, forced = load_trainable(tmp_path / "c")
    assert _compile(model, calib, tmp_path / "n", 4, "--head", "new") == 0
    _, fresh = load_trainable(tmp_path / "n")
    head = auto.node("head").params
    for k in ("weight", "bias"):  # auto took the classifier, the same as --head classifier
        assert np.array_equal(head[k], forced.node("head").params[k])
    assert not np.array_equal(head["weight"], fresh.node("head").params["weight"])
    assert np.abs(head["bias"]).max() > 0  # a trained classifier's bias, not a fresh zero


def test_auto_falls_back_to_a_new_head_for_other_classes(
        onnx_model: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, calib = onnx_model
    assert _compile(model, calib, tmp_path / "b", 3) == 0
    assert "own" not in capsys.readouterr().out


def test_classifier_required_but_missing_is_a_clear_error(
        onnx_model: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    model, calib = onnx_model
    assert _compile(model, calib, tmp_path / "c", 3, "--head", "classifier") == 2
    err = capsys.readouterr().err
    assert "no 3-class linear classifier" in err and "--head new" in err
