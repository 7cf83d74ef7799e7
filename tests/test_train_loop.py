"""`mcutl train`: the device trains on a dataset, accuracy is measured on the device, the
trained parameters come back as a state dict that loads into the PyTorch reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import compile_training
from mcutl.link.session import open_session
from mcutl.link.trainer import TrainDevice
from mcutl.run import prepare_inputs
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.train.loop import load_state
from mcutl.verify.harness import load_trainable
from mcutl.verify.reference import TorchReference


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    out = tmp_path_factory.mktemp("loop")
    compile_training(model, "stm32f405", out, num_classes=3, calib=calib,
                     input_shape=(1, 6, 100), options=TrainOptions(lr=0.01))
    return out


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes that differ in which axis carries a slow sine."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = 0.3 * rng.standard_normal((n, 6, 100)).astype(np.float32)
    t = np.linspace(0, 4 * np.pi, 100, dtype=np.float32)
    for i, c in enumerate(y):
        x[i, c] += 1.5 * np.sin(t)
    return x, y


def test_train_learns_and_state_dict_round_trips(build: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _toy(90, 0)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    state_path = tmp_path / "trained.pt"
    # the defaults: batch 8, a cosine decay over as many epochs as make 1600 samples
    assert main(["train", str(build), "--data", str(tmp_path / "data.npz"),
                 "--holdout", "0.33", "--save", str(state_path)]) == 0
    out = capsys.readouterr().out
    assert "trained on 1620 samples (27 epochs of 60, batch 8)" in out
    before, after = (float(v.split(" %")[0]) for v in out.split("device ")[1].split("->"))
    assert after > before and after >= 80.0, out
    assert (build / "train.png").stat().st_size > 5_000
    # the state dict loads into the reference module, which then computes what the
    # device computes with the same parameters
    state = torch.load(state_path, weights_only=True)
    info, tm = load_trainable(build)
    ref = TorchReference(tm)
    load_state(ref, state)
    xq = prepare_inputs(info, x[:4])
    with open_session(load_target("host"), build / info.firmware["host"]) as s:
        dev = TrainDevice(s.device)
        layout = json.loads((build / "plan.json").read_text())["params"]
        theta = np.zeros(sum(p["count"] for p in layout), np.float32)
        for p in layout:
            theta[p["offset"]: p["offset"] + p["count"]] = state[p["name"]].numpy().reshape(-1)
        dev.set_block(0, theta)
        for xi in xq:
            dev.sample(xi, 0)
            logits = dev.infer(tm.num_classes)
            with torch.no_grad():
                want = ref(xi[None]).numpy().reshape(-1)
            np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
        s.finish(0)
