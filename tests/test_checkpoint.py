"""Learned weights survive a reset: the device saves checkpoints (SAVE, every --autosave
updates, at the end of `mcutl train`) into a double-buffered store and loads the newest
valid one at boot; a power cut in the middle of a write never loses more than the updates
since the last save; `verify --reset-at` and `train --resume` continue from it."""

from __future__ import annotations

import random
import struct
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
from mcutl.link.transport import LinkClosedError
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.verify.harness import random_samples, verify
from tests.conftest import needs_qemu

KILLS = 30  # power cuts at random points of a checkpoint write


def _compile(out: Path, target: str, autosave: int) -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    compile_training(model, target, out, num_classes=3, calib=calib, input_shape=(1, 6, 100),
                     options=TrainOptions(lr=0.01, autosave=autosave))
    return out


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("ckpt-host"), "host", autosave=0)


@pytest.fixture(scope="module")
def f405_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("ckpt-f405"), "stm32f405", autosave=4)


def _firmware(build: Path) -> Path:
    return build / BuildInfo.load(build).firmware["host"]


def _train_steps(dev: TrainDevice, xq: np.ndarray, y: np.ndarray) -> None:
    for x, label in zip(xq, y, strict=True):
        dev.sample(x, int(label))
        dev.step()


@pytest.mark.host
def test_a_power_cut_during_a_write_leaves_a_valid_checkpoint(host_build: Path,
                                                                tmp_path: Path) -> None:
    fw = _firmware(host_build)
    info = BuildInfo.load(host_build)
    xq, y = random_samples(info, 6, seed=4)
    # params, momentum, the two counters, the 36-byte recipe
    payload = 4 * (2 * int(info.training["param_count"])) + 8 + 36
    save_bytes = 2 * (32 + payload)  # erase (0xFF) + payload + header
    rng = random.Random(7)
    outcomes = {"old": 0, "new": 0}
    # the boundaries (nothing written, before the header, one header byte short, all
    # written) and random points, some past the end (the save completes)
    cuts = [0, save_bytes - 32, save_bytes - 1, save_bytes]
    cuts += [rng.randrange(0, save_bytes + save_bytes // 4) for _ in range(KILLS - len(cuts))]
    for k, cut in enumerate(cuts):
        store = tmp_path / f"store{k}"
        env = {"MCUTL_STORE_FILE": str(store)}
        with open_session(load_target("host"), fw, host_env=env) as s:
            dev = TrainDevice(s.device)
            dev.reset()
            _train_steps(dev, xq[:3], y[:3])
            old = dev.save()
            d_old = dev.digest().crc32
            s.finish(0)
        with open_session(load_target("host"), fw,
                          host_env={**env, "MCUTL_STORE_CRASH_AFTER": str(cut)}) as s:
            dev = TrainDevice(s.device)
            assert dev.digest().crc32 == d_old  # booted from the checkpoint
            _train_steps(dev, xq[3:], y[3:])
            d_new = dev.digest().crc32
            try:
                dev.save()
                completed = True
            except LinkClosedError:
                completed = False  # the power failed in the middle of the write
            assert s.host is not None
            code = s.host.close()
        assert completed == (cut >= save_bytes) and code == (0 if completed else 3)
        with open_session(load_target("host"), fw, host_env=env) as s:
            dev = TrainDevice(s.device)
            st = dev.stats()
            got = dev.digest().crc32
            s.finish(0)
        assert got in (d_old, d_new), f"cut at byte {cut}: no valid checkpoint came back"
        if got == d_new:
            assert st.checkpoint_seq == old.seq + 1
            outcomes["new"] += 1
        else:
            assert st.checkpoint_seq == old.seq and not completed
            outcomes["old"] += 1
    assert outcomes["old"] > 0 and outcomes["new"] > 0  # cuts before and after the commit


@pytest.mark.host
def test_boot_loads_the_newest_checkpoint_and_reset_does_not_erase_it(host_build: Path,
                                                                      tmp_path: Path) -> None:
    fw = _firmware(host_build)
    info = BuildInfo.load(host_build)
    xq, y = random_samples(info, 4, seed=5)
    env = {"MCUTL_STORE_FILE": str(tmp_path / "s")}
    with open_session(load_target("host"), fw, host_env=env) as s:
        dev = TrainDevice(s.device)
        with pytest.raises(proto.DeviceError, match="no valid checkpoint"):
            dev.load()
        dev.reset()
        initial = dev.digest().crc32
        _train_steps(dev, xq[:2], y[:2])
        first = dev.save()
        _train_steps(dev, xq[2:], y[2:])
        second = dev.save()
        trained = dev.digest()
        dev.reset()
        assert dev.digest().crc32 == initial
        s.finish(0)
    assert (first.seq, second.seq) == (1, 2) and second.updates == 4
    with open_session(load_target("host"), fw, host_env=env) as s:
        dev = TrainDevice(s.device)
        assert dev.digest() == trained  # parameters, steps and updates all back
        st = dev.stats()
        s.finish(0)
    assert (st.checkpoint_seq, st.checkpoint_updates) == (2, 4)


@pytest.mark.host
def test_a_firmware_without_a_store_says_so(host_build: Path) -> None:
    with open_session(load_target("host"), _firmware(host_build),
                      host_env={"MCUTL_STORE_FILE": ""}) as s:
        with pytest.raises(proto.DeviceError, match="has no store") as info:
            TrainDevice(s.device).save()
        s.finish(0)
    assert info.value.code == proto.ErrorCode.BAD_STATE


@pytest.mark.host
def test_verify_reset_at_resumes_from_the_checkpoint_on_host(f405_build: Path) -> None:
    rep = verify(f405_build, steps=20, reset_at=11)
    assert rep.passed, rep.first_mismatch
    assert rep.resumed is not None and "came back with checkpoint" in rep.resumed
    assert "steps 8..10 replayed" in rep.resumed  # autosave every 4 updates: update 8


@needs_qemu
@pytest.mark.qemu
def test_verify_reset_at_resumes_from_the_checkpoint_in_qemu(f405_build: Path) -> None:
    rep = verify(f405_build, steps=14, reset_at=6, qemu=True)
    assert rep.passed, rep.first_mismatch
    assert rep.resumed is not None and "steps 4..5 replayed" in rep.resumed
    assert (f405_build / "mcutl.store").stat().st_size > 0  # semihosting kept it


@pytest.mark.host
def test_train_resume_continues_from_the_device(host_build: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((12, 6, 100)).astype(np.float32),
             y=rng.integers(0, 3, 12))
    (host_build / "host" / "mcutl.store").unlink(missing_ok=True)
    base = ["train", str(host_build), "--data", str(tmp_path / "d.npz"), "--holdout", "0",
            "--epochs", "1", "--batch", "1"]
    assert main([*base, "--resume"]) == 2
    assert "nothing to continue from" in capsys.readouterr().err
    assert main([*base, "--save", str(tmp_path / "a.pt")]) == 0
    # checkpoint 1: this run's start (a reset before the first autosave comes back to it,
    # not to an earlier run's state); 2: its end
    assert "saved on the device as checkpoint 2" in capsys.readouterr().out
    with open_session(load_target("host"), _firmware(host_build)) as s:
        d = TrainDevice(s.device).digest()
        s.finish(0)
    assert (d.steps, d.updates) == (12, 12)  # the boot loaded what train saved
    assert main([*base, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "continued from the device's checkpoint 2" in out and "checkpoint 3" in out
    with open_session(load_target("host"), _firmware(host_build)) as s:
        resp = s.device.request(proto.MsgType.DIGEST)
        s.finish(0)
    assert struct.unpack("<IIII", resp[:16])[2:] == (24, 24)


@pytest.mark.host
def test_board_firmware_keeps_code_out_of_the_store_sectors(f405_build: Path) -> None:
    ld = (f405_build / "firmware.gen" / "linker.ld").read_text()
    assert "LENGTH = 786432" in ld  # 0x080C0000 - 0x08000000: sectors 10 and 11 stay free
    config = (f405_build / "firmware.gen" / "target_config.h").read_text()
    assert "#define MCUTL_STORE_SLOT1_ADDR 0x080E0000u" in config
    qemu_ld = (f405_build / "firmware-qemu.gen" / "linker.ld").read_text()
    assert "LENGTH = 1048576" in qemu_ld  # QEMU keeps its slots in a file


@pytest.mark.host
def test_verify_reset_at_ignores_an_earlier_run_s_checkpoint(f405_build: Path) -> None:
    """A kill before this run's first autosave comes back to this run's start, not to the
    newest checkpoint an earlier run left in the store."""
    assert verify(f405_build, steps=12).passed  # leaves checkpoints of 12 updates
    rep = verify(f405_build, steps=8, reset_at=3)
    assert rep.passed, rep.first_mismatch
    assert rep.resumed is not None and "steps 0..2 replayed" in rep.resumed


@pytest.mark.host
def test_reset_at_must_fall_inside_the_run(f405_build: Path) -> None:
    from mcutl.errors import McutlError

    with pytest.raises(McutlError, match="--reset-at 10: give a step between 1 and 4"):
        verify(f405_build, steps=5, reset_at=10)
