"""The defaults do not diverge: `mcutl compile --method M` and `mcutl train` with no
recipe option, on the example backbones and on MLPerf-Tiny-style residual and
depthwise-separable models (random weights, a learnable random task). The external
check that opened issue 13 saw losses of 11-181 in the first steps on a ResNet-8 and a
residual model with the old defaults (summed mini-batch gradients, no decay)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from examples.mlperf_tiny import ResNet8
from mcutl.cli import main

pytestmark = pytest.mark.host

MODELS: dict[str, tuple[type[nn.Module], tuple[int, ...], int]] = {
    "resnet8": (ResNet8, (1, 3, 32, 32), 10),
    "tiny_mbv2": (TinyMBV2, (1, 1, 28, 28), 10),
    "tiny_imu1d": (TinyIMU1D, (1, 6, 100), 4),
}
CASES = [("resnet8", "repnet"), ("resnet8", "bias"), ("resnet8", "last"),
         ("tiny_mbv2", "repnet"), ("tiny_mbv2", "adaptor"), ("tiny_imu1d", "bn-shift"),
         ("tiny_imu1d", "finetune-last-k")]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each model as ONNX, its calibration inputs, and a training set whose labels are
    the float model's own classes (a task the backbone's features can express)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("defaults")
    out = {}
    for name, (cls, shape, classes) in MODELS.items():
        model = randomize_batchnorm_stats(spread_init(cls(num_classes=classes, seed=1))).eval()
        torch.onnx.export(model, torch.zeros(shape), str(folder / f"{name}.onnx"), dynamo=False)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (64, *shape[1:])).astype(np.float32)
        with torch.no_grad():
            y = model(torch.from_numpy(x)).argmax(1).numpy()
        np.savez(folder / f"{name}_calib.npz", x=x[:16])
        np.savez(folder / f"{name}_data.npz", x=x, y=y)
        out[name] = (folder / f"{name}.onnx", folder)
    return out


@pytest.mark.parametrize(("model", "method"), CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_default_recipe_does_not_diverge(models: dict[str, tuple[Path, Path]], model: str,
                                         method: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    onnx, folder = models[model]
    classes = MODELS[model][2]
    assert main(["compile", str(onnx), "--method", method, "--num-classes", str(classes),
                 "--target", "host", "--calib", str(folder / f"{model}_calib.npz"),
                 "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["train", str(tmp_path / "b"), "--data", str(folder / f"{model}_data.npz"),
                 "--holdout", "0"]) == 0
    out = capsys.readouterr()
    assert "rejected" not in out.out + out.err, out  # the step guard never fired
    m = re.search(r"trained on (\d+) samples .* loss ([\d.]+) -> ([\d.]+)", out.out)
    assert m is not None, out.out
    samples, first, last = int(m[1]), float(m[2]), float(m[3])
    assert samples >= 1600
    assert last < first, out.out  # it learns (the mean loss of the last 10 samples is lower)
    losses = (tmp_path / "b" / "train_losses.json")
    assert not losses.exists()  # written only when a run stops early
