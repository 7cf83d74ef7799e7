"""Guarded training: with a learning rate that blows up, the device rejects the steps
that would make its parameters non-finite (or whose loss is past the bound), counts them,
keeps finite parameters; `verify` checks every decision against the reference, and
`mcutl train` stops with a clear error and saves what the host has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import compile_training
from mcutl.link.session import open_session
from mcutl.link.trainer import PARAMS, TrainDevice
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.train.guard import RejectionCounter, TrainingDivergedError, guarded_step
from mcutl.train.loop import TrainingStopped, load_state_file, train
from mcutl.verify.harness import load_trainable, verify

pytestmark = pytest.mark.host


def _compile(out: Path, lr: float, optimizer: str = "sgd") -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    compile_training(model, "host", out, num_classes=3, calib=calib, input_shape=(1, 6, 100),
                     options=TrainOptions(optimizer=optimizer, lr=lr))
    return out


@pytest.fixture(scope="module", params=[1e6, 1e30])
def wild(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp(f"lr{request.param:g}"), request.param)


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 100)).astype(np.float32), rng.integers(0, 3, n)


def test_device_keeps_finite_parameters_and_counts_rejections(wild: Path) -> None:
    x, y = _data(24)
    res = train(wild, x, y, max_rejected=0)  # never stop: see every step's outcome
    assert all(np.isfinite(v).all() for v in res.params.values())
    assert res.rejected_samples + res.rejected_updates >= 10
    assert res.stats["rejected_samples"] == res.rejected_samples
    # a rejected sample adds no gradient: samples trained + rejected = samples sent
    assert res.stats["steps"] + res.rejected_samples == 24
    assert res.stats["updates"] + res.rejected_updates <= 24


@pytest.fixture(scope="module")
def exploding(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lr 1e30: the first update drives every later forward pass past float32's range.
    (At lr 1e6 the weights stay finite but huge, and verify's int8 check can see float32
    cancellation in the side network as a wrong connector value: not used here.)"""
    return _compile(tmp_path_factory.mktemp("exploding"), 1e30)


def test_verify_agrees_with_every_guard_decision(exploding: Path) -> None:
    rep = verify(exploding, steps=16, check_every=4, max_rejected=0)
    assert rep.passed, rep.first_mismatch
    assert rep.rejected_samples + rep.rejected_updates >= 5
    assert any(r.rejected for r in rep.steps)
    assert rep.stopped is None


def test_train_stops_after_rejections_in_a_row_and_saves(wild: Path) -> None:
    x, y = _data(40)
    with pytest.raises(TrainingStopped) as info:
        train(wild, x, y, max_rejected=4, checkpoint_every=0.0)
    msg = str(info.value)
    assert "training diverged" in msg and "rejected 4 steps in a row" in msg
    assert "--init-from" in msg and "Lower the learning rate" in msg
    saved = wild / "train_interrupted.pt"
    theta = load_state_file(wild, saved)  # finite, and in the build's layout
    assert np.isfinite(theta).all()
    assert (wild / "train_losses.json").exists()


def test_cli_train_reports_divergence_with_exit_2(wild: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = main(["train", str(wild), "--data", str(tmp_path / "d.npz"), "--max-rejected", "3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "training diverged" in err and "Traceback" not in err


def test_verify_stops_after_rejections_in_a_row(exploding: Path) -> None:
    rep = verify(exploding, steps=30, max_rejected=3)
    assert rep.stopped is not None and "3 steps in a row" in rep.stopped
    assert len(rep.steps) < 30


def test_init_from_restarts_from_saved_parameters(tmp_path: Path) -> None:
    out = _compile(tmp_path / "b", 0.01)
    x, y = _data(12)
    res = train(out, x, y)
    torch.save({k: torch.from_numpy(v) for k, v in res.params.items()}, tmp_path / "s.pt")
    theta = load_state_file(out, tmp_path / "s.pt")
    info, _ = load_trainable(out)
    with open_session(load_target("host"), out / info.firmware["host"]) as s:
        dev = TrainDevice(s.device)
        dev.reset()
        dev.set_block(PARAMS, theta)
        assert np.array_equal(dev.get_block(PARAMS, theta.size), theta)
        s.finish(0)
    torch.save({"nope": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="has no parameter"):
        load_state_file(out, tmp_path / "bad.pt")


def test_adam_guard_and_reference_agree(tmp_path: Path) -> None:
    out = _compile(tmp_path / "adam", 1e30, optimizer="adam")
    rep = verify(out, steps=12, check_every=4, max_rejected=0)
    assert rep.passed, rep.first_mismatch


def test_guarded_step_puts_everything_back() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=1.0, momentum=0.9)
    w.grad = torch.tensor([0.5, 0.5])
    assert guarded_step(opt)
    before = w.detach().clone()
    buf = opt.state[w]["momentum_buffer"].clone()
    w.grad = torch.tensor([float("inf"), 0.0])
    assert not guarded_step(opt)
    assert torch.equal(w.detach(), before)
    assert torch.equal(opt.state[w]["momentum_buffer"], buf)


def test_rejection_counter_resets_on_an_applied_update() -> None:
    c = RejectionCounter(limit=3)
    c.sample_rejected(1e9)
    c.update_rejected()
    c.update_applied()
    c.sample_rejected(float("nan"))
    c.sample_rejected(float("nan"))
    with pytest.raises(TrainingDivergedError, match="3 steps in a row"):
        c.update_rejected()


def test_the_bound_is_in_the_build_and_in_the_c(wild: Path) -> None:
    info, _ = load_trainable(wild)
    assert info.training["options"]["max_loss"] == 100.0
    assert "#define MCUTL_MAX_LOSS 100.0f" in (wild / "train.c").read_text()


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("calm"), 0.01)


def test_ctrl_c_saves_the_newest_parameters_and_the_losses(calm: Path) -> None:
    x, y = _data(30)

    def interrupt(done: int, total: int, loss: float) -> None:
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(TrainingStopped) as info:
        train(calm, x, y, progress=interrupt, checkpoint_every=1e9)
    assert info.value.interrupted and "interrupted (Ctrl-C)" in str(info.value)
    assert "after sample 7" in str(info.value)  # pulled from the device as it stopped
    assert np.isfinite(load_state_file(calm, calm / "train_interrupted.pt")).all()
    import json

    assert len(json.loads((calm / "train_losses.json").read_text())) == 7


def test_a_lost_device_keeps_the_last_checkpoint(calm: Path) -> None:
    import os
    import signal

    x, y = _data(30)
    fw = str((calm / "host").resolve())

    def kill_device(done: int, total: int, loss: float) -> None:
        if done != 9:
            return
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if cmd.startswith(fw):
                os.kill(int(pid), signal.SIGKILL)

    with pytest.raises(TrainingStopped) as info:
        train(calm, x, y, progress=kill_device, checkpoint_every=0.0)
    msg = str(info.value)
    assert not info.value.interrupted
    assert "after 9 of 30 samples" in msg and "after sample 8" in msg  # the last pull
    assert "--init-from" in msg
