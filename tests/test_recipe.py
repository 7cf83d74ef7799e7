"""The training recipe runs on the device and changes at run time (CONFIG): learning-rate
schedules with warm-up computed from the update count, mean or sum of a mini-batch's
gradients, clipping of their norm; `verify` checks the learning rate and the gradient
factor of every update against the recipe and feeds them to its reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import BuildInfo, compile_training
from mcutl.link import protocol as proto
from mcutl.link.session import open_session
from mcutl.link.trainer import TrainDevice
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.train.recipe import Recipe
from mcutl.verify.harness import _apply_recipe, verify

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    out = tmp_path_factory.mktemp("recipe")
    compile_training(model, "host", out, num_classes=3, calib=calib, input_shape=(1, 6, 100),
                     options=TrainOptions(lr=0.02, autosave=0))
    return out


def test_schedules() -> None:
    r = Recipe(lr=1.0, schedule="cosine", period=10, gamma=0.1, warmup=4)
    assert r.lr_at(0) == pytest.approx(0.25 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0))))
    assert r.lr_at(10) == pytest.approx(0.1) and r.lr_at(50) == pytest.approx(0.1)
    assert r.lr_at(5) == pytest.approx(0.1 + 0.9 * 0.5)
    s = Recipe(lr=1.0, schedule="step", period=3, gamma=0.5)
    assert [s.lr_at(t) for t in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    assert Recipe(lr=1.0).grad_scale(4, 10.0) == 0.25
    assert Recipe(lr=1.0, clip_norm=1.0).grad_scale(4, 10.0) == pytest.approx(0.1)
    assert Recipe(lr=1.0, average=False, clip_norm=20.0).grad_scale(4, 10.0) == 1.0
    assert Recipe.unpack(r.pack()) == Recipe(lr=1.0, momentum=np.float32(0.9).item(),
                                             schedule="cosine", period=10,
                                             gamma=np.float32(0.1).item(), warmup=4)


@pytest.mark.parametrize("recipe", [
    Recipe(lr=0.05, schedule="cosine", warmup=2, period=6, gamma=0.1, clip_norm=0.5),
    Recipe(lr=0.01, momentum=0.5, weight_decay=1e-3, schedule="step", period=2, gamma=0.5,
           average=False),
], ids=["cosine-warmup-clip-mean", "step-sum-decay"])
def test_verify_follows_the_device_recipe(build: Path, recipe: Recipe) -> None:
    rep = verify(build, steps=18, batch=3, check_every=3, recipe=recipe)
    assert rep.passed, rep.first_mismatch


def test_config_round_trip_and_range(build: Path) -> None:
    info = BuildInfo.load(build)
    with open_session(load_target("host"), build / info.firmware["host"]) as s:
        dev = TrainDevice(s.device)
        dev.reset()
        default = dev.configure()
        assert default.lr == np.float32(0.02) and default.average and default.period == 1
        want = Recipe(lr=0.1, schedule="cosine", period=40, warmup=3, clip_norm=2.0)
        got = dev.configure(want)
        assert got == Recipe.unpack(want.pack())
        with pytest.raises(proto.DeviceError, match="CONFIG field out of range"):
            dev.device.request(proto.MsgType.CONFIG, want.pack()[:12] + bytes([7, 0, 0, 0])
                               + want.pack()[16:])  # schedule 7
        assert dev.configure() == got  # unchanged by the refused one
        dev.reset()
        assert dev.configure() == default  # RESET restores the build's recipe
        s.finish(0)


def test_a_wrong_learning_rate_is_named() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    opt = torch.optim.SGD([w], lr=0.1)
    problem = _apply_recipe(opt, lr=0.2, scale=1.0, recipe=Recipe(lr=0.1), t=0, samples=1,
                            step=4)
    assert problem is not None and "learning rate 0.2" in problem and "recipe's 0.1" in problem
    assert opt.param_groups[0]["lr"] == 0.2  # the reference follows the device regardless


def test_cli_train_sends_the_recipe(build: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 6, 100)).astype(np.float32),
             y=rng.integers(0, 3, 20))
    (build / "host" / "mcutl.store").unlink(missing_ok=True)
    assert main(["train", str(build), "--data", str(tmp_path / "d.npz"), "--holdout", "0",
                 "--epochs", "1", "--batch", "4", "--schedule", "cosine", "--warmup", "1",
                 "--clip", "1.0", "--lr", "0.05"]) == 0
    info = BuildInfo.load(build)
    with open_session(load_target("host"), build / info.firmware["host"]) as s:
        kept = TrainDevice(s.device).configure()  # booted from train's last checkpoint
        s.finish(0)
    assert (kept.schedule, kept.period, kept.warmup) == ("cosine", 5, 1)  # 20 / 4 updates
    assert kept.clip_norm == 1.0 and kept.lr == np.float32(0.05)
    assert main(["train", str(build), "--data", str(tmp_path / "d.npz"), "--clip", "-1"]) == 2
