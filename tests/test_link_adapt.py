"""The link adapts without user tuning: timeouts follow the answers seen, frames shrink on
a damaged line and grow back on a clean one, a living device is retried, a silent one is
reported in seconds, QEMU is killed on silence (not after a total time), and `mcutl
train --qemu` completes through 2 % byte faults with default options, bit-identical to
the host build."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mcutl.link import protocol as proto
from mcutl.link.adapt import MIN_PAYLOAD, Latency, LinkQuality
from mcutl.link.client import LINK_RETRIES, Device, DeviceSilentError
from mcutl.link.trainer import TrainDevice
from tests.conftest import needs_qemu
from tests.test_noisy_link import FakeLink, train_build  # noqa: F401 - fixture


def _adaptive(script: list[str], silence: float = 1.0) -> Device:
    return Device(FakeLink(script), timeout=5.0, retries=LINK_RETRIES, backoff=1.5,
                  silence=silence, adaptive=True)


def test_silent_device_is_reported_within_seconds() -> None:
    d = _adaptive(["ok"] + ["lose"] * 1000)
    assert d.echo(b"hi") == b"hi"
    t0 = time.monotonic()
    with pytest.raises(DeviceSilentError, match="stopped answering") as info:
        d.echo(b"hi")
    took = time.monotonic() - t0
    assert 1.0 <= took < 3.0, took  # the silence, not 400 attempts x 5 s
    assert "mcutl ping" in str(info.value)


def test_a_living_device_is_retried_beyond_the_old_cap() -> None:
    # 30 damaged answers in a row: the device is alive, so the request goes on
    d = _adaptive(["corrupt"] * 30)
    assert d.echo(b"data") == b"data"
    assert d.stats.retries == 30


def test_timeout_follows_the_answers_seen() -> None:
    d = _adaptive(["ok", "lose"], silence=10.0)
    d.echo(b"a")  # answered in milliseconds: the next attempt waits well under a second
    t0 = time.monotonic()
    assert d.echo(b"b") == b"b"
    assert time.monotonic() - t0 < 1.0
    assert d.stats.timeouts == 1


def test_latency_caps_and_defaults() -> None:
    lat = Latency()
    assert lat.timeout(0x11, 30.0) == 30.0  # never seen: the configured wait
    lat.record(0x11, 0.01)
    lat.record(0x11, 0.5)
    assert lat.timeout(0x11, 30.0) == pytest.approx(4 * 0.5 + 0.3)
    lat.record(0x11, 20.0)
    assert lat.timeout(0x11, 30.0) == 30.0  # capped


def test_frames_shrink_under_damage_and_grow_back() -> None:
    q = LinkQuality()
    assert q.payload(1024) == 1024
    for _ in range(40):  # about 4 failed attempts per exchange of ~100 bytes
        q.record(4, 100)
    noisy = q.payload(1024)
    assert MIN_PAYLOAD <= noisy <= 64 and noisy % 16 == 0
    assert 0.01 < q.byte_error_rate() < 0.03  # 1 - 0.2^(1/100) = 0.016
    for _ in range(400):
        q.record(0, 100)
    assert q.payload(1024) == 1024


def test_train_device_chunks_follow_the_link() -> None:
    d = _adaptive([])
    dev = TrainDevice(d)
    assert dev._max_chunk() == proto.MAX_PAYLOAD - 16
    for _ in range(40):
        d.quality.record(4, 100)
    assert dev._max_chunk() < 64
    dev.chunk = 200  # set by hand: kept
    assert dev._max_chunk() == 200


@needs_qemu
@pytest.mark.qemu
def test_qemu_watchdog_is_on_silence_not_total_time(build_root: Path) -> None:
    from mcutl.link.qemu import QemuSession
    from mcutl.link.session import handshake
    from mcutl.targets import load_target
    from tests.test_link_qemu import _base

    target = load_target("stm32f405")
    fw = _base("stm32f405", build_root)
    with QemuSession(target, fw.elf, timeout=1.0) as q:
        dev = Device(q.transport, timeout=0.5, retries=2)
        handshake(dev)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:  # three times the watchdog, always answering
            assert dev.echo(b"alive") == b"alive"
            time.sleep(0.1)
        assert q.proc.poll() is None  # not killed while it keeps answering
        result = q.wait(timeout=10)  # now silent: killed about a second later
    assert result.timed_out


@needs_qemu
@pytest.mark.qemu
def test_cli_train_completes_through_two_percent_faults(train_build,  # noqa: F811, ANN001
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from mcutl.cli import main

    out, _, _ = train_build
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", x=rng.random((8, 6, 100), dtype=np.float32),
             y=rng.integers(0, 4, 8))
    base = ["train", str(out), "--data", str(tmp_path / "d.npz"), "--holdout", "0",
            "--epochs", "1", "--batch", "1"]
    assert main([*base, "--save", str(tmp_path / "host.pt")]) == 0
    capsys.readouterr()
    assert main([*base, "--qemu", "--link-faults", "0.02",
                 "--save", str(tmp_path / "qemu.pt")]) == 0
    printed = capsys.readouterr().out
    assert "resends, frames of" in printed
    host = torch.load(tmp_path / "host.pt")
    noisy = torch.load(tmp_path / "qemu.pt")
    assert host.keys() == noisy.keys()
    assert all(torch.equal(host[k], noisy[k]) for k in host)  # bit-identical through noise


class _SlowRunLink:
    """A device whose RUN chunks answer in a millisecond, except the one that completes
    the input, which runs a 1.5 s model first."""

    INPUT = 4000

    def __init__(self) -> None:
        import struct as _s

        self._s = _s
        self.buf = bytearray()
        self.pending: list[tuple[float, bytes]] = []

    def write(self, data: bytes) -> None:
        self.buf += data
        while (i := self.buf.find(0)) >= 0:
            raw = bytes(self.buf[:i])
            del self.buf[: i + 1]
            if not raw:
                continue
            f = proto.decode_frame(raw)
            (off,) = self._s.unpack_from("<I", f.payload)
            done = off + len(f.payload) - 4 == self.INPUT
            start = max([t for t, _ in self.pending] + [time.monotonic()])
            body = self._s.pack("<I", 7) + (b"\x01" * 10 if done else b"")
            self.pending.append((start + (1.5 if done else 0.001),
                                 proto.encode_frame(proto.response_type(f.type), f.seq, body)))

    def read_some(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            ready = [p for p in self.pending if p[0] <= now]
            if ready:
                self.pending = [p for p in self.pending if p[0] > now]
                return b"".join(b for _, b in ready)
            if now >= end:
                return b""
            time.sleep(0.005)

    def close(self) -> None:
        pass


def test_a_request_that_must_not_be_resent_keeps_the_full_wait() -> None:
    """RUN's fast chunks must not teach the link a timeout that ends the slow, completing
    chunk (which must not be resent)."""
    from types import SimpleNamespace

    from mcutl.run import infer_one

    dev = Device(_SlowRunLink(), timeout=5.0, retries=LINK_RETRIES, backoff=1.5,  # type: ignore[arg-type]
                 silence=10.0, adaptive=True)
    out, ticks = infer_one(SimpleNamespace(device=dev), np.zeros(_SlowRunLink.INPUT, np.int8))  # type: ignore[arg-type]
    assert ticks == 7 and out == b"\x01" * 10
    assert dev.stats.retries == 0


@pytest.mark.host
def test_host_firmware_runs_in_its_own_session(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to mcutl's process group only: the firmware lives on until
    mcutl has pulled and saved what it learned."""
    import os

    from mcutl.firmware import build_base
    from mcutl.link.transport import ProcessTransport
    from mcutl.targets import load_target

    fw = build_base(load_target("host"), tmp_path / "base")
    t = ProcessTransport([str(fw.elf)])
    try:
        assert os.getsid(t.proc.pid) != os.getsid(0)
        assert os.getpgid(t.proc.pid) != os.getpgid(0)
    finally:
        t.close()
