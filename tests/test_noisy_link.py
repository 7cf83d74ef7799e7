"""The link on a noisy line: retransmission, resync and idempotent requests.

Pure Python: `Device` against a scripted in-memory device that damages, loses, delays
or cuts frames exactly where told; the FaultProxy on its own and in front of a Python
device. QEMU (`-m qemu`): the real firmware behind a FaultProxy at 1 % damaged bytes,
ECHO and a training run compared bit for bit with the host build.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mcutl.link import protocol as proto
from mcutl.link.client import (
    Device,
    DeviceFaultError,
    LinkStats,
    LinkTimeoutError,
    RepeatUnsafeError,
)
from mcutl.link.fault_proxy import FaultProxy, Faults, _Mangler, open_noisy_session
from mcutl.link.session import handshake
from mcutl.link.transport import LinkClosedError, SerialTransport, Transport
from tests.conftest import needs_qemu

BAD_TYPE = 0x40  # the fake device rejects it with BAD_PAYLOAD


# ---------------------------------------------------------------- a scripted fake device


class FakeDevice:
    """Protocol v1 device logic in Python, like the C server: splits its input at 0x00,
    answers framing errors with ERROR, handles HELLO, ECHO, EXIT and STEP (with the
    firmware's step_id cache). `script` says what happens to each successive request
    frame (default "ok"):

    ok            process, answer
    corrupt       process, answer with one byte damaged
    lose          process, send nothing
    unterminated  process, answer without its 0x00
    garbage       process, answer with bytes glued in front (no 0x00 between)
    stale         process, send a valid frame with an old seq first, then the answer
    late          process, hold the answer back until the next bytes arrive
    damaged       do not process: answer BAD_CRC (a request damaged on the way)
    cut           the request's last bytes and its 0x00 are lost: a partial frame stays
    nodelim       only the request's 0x00 is lost (the next 0x00 completes the frame)
    """

    def __init__(self, script: list[str] | None = None) -> None:
        self.script = list(script or [])
        self.reader = proto.FrameReader(proto.MAX_PAYLOAD)
        self.out = bytearray()
        self.held: bytes | None = None
        self.handled: list[proto.Frame] = []
        self.steps = 0
        self.last_step_id: int | None = None
        self.last_step_resp = b""
        self.exited = False
        self.runs = 0
        self.rng = random.Random(7)

    def receive(self, data: bytes) -> None:
        if self.exited:
            return
        if self.held is not None:
            self.out += self.held
            self.held = None
        if self.script and self.script[0] in ("cut", "nodelim") and data.endswith(b"\x00"):
            data = data[:-4] if self.script.pop(0) == "cut" else data[:-1]
        for item in self.reader.feed(data):
            if isinstance(item, proto.FrameError):
                code = item.code or proto.ErrorCode.BAD_COBS
                self.out += proto.encode_frame(
                    proto.MsgType.ERROR, 0, proto.encode_error_payload(code, 0, str(item)[:60]))
            else:
                self._request(item)

    def _request(self, req: proto.Frame) -> None:
        action = self.script.pop(0) if self.script else "ok"
        if action == "damaged":
            self.out += proto.encode_frame(
                proto.MsgType.ERROR, req.seq,
                proto.encode_error_payload(proto.ErrorCode.BAD_CRC, req.type, "crc mismatch"))
            return
        self.handled.append(req)
        wire = self._answer(req)
        if action == "corrupt":
            b = bytearray(wire)
            i = len(b) // 2
            b[i] = b[i] ^ 0x04 or 0x01
            wire = bytes(b)
        elif action == "lose":
            wire = b""
        elif action == "unterminated":
            wire = wire[:-1]
        elif action == "garbage":
            wire = bytes(self.rng.randrange(1, 256) for _ in range(23)) + wire
        elif action == "stale":
            wire = proto.encode_frame(req.type | 0x80, (req.seq - 100) & 0xFFFF, b"old") + wire
        elif action == "late":
            self.held, wire = wire, b""
        self.out += wire
        if req.type == proto.MsgType.EXIT:
            self.exited = True

    def _answer(self, req: proto.Frame) -> bytes:
        t, p = req.type, req.payload
        if t == proto.MsgType.HELLO:
            body = proto.Hello(1, proto.MAX_PAYLOAD, 0, target="fake", build_id="t").pack()
        elif t in (proto.MsgType.ECHO, proto.MsgType.EXIT):
            body = p if t == proto.MsgType.ECHO else b""
        elif t == proto.MsgType.RUN:
            self.runs += 1
            body = struct.pack("<I", self.runs) + p[4:]
        elif t == proto.MsgType.STEP:
            step_id, flags = struct.unpack("<IB", p)
            if step_id != self.last_step_id:
                self.steps += 1
                self.last_step_id = step_id
                self.last_step_resp = struct.pack("<IIIB", self.steps, self.steps, 0, flags & 1)
            body = self.last_step_resp
        else:
            code = proto.ErrorCode.BAD_PAYLOAD if t == BAD_TYPE else proto.ErrorCode.UNKNOWN_TYPE
            return proto.encode_frame(proto.MsgType.ERROR, req.seq,
                                      proto.encode_error_payload(code, t, "no such thing"))
        return proto.encode_frame(proto.response_type(t), req.seq, body)

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


class FakeLink(Transport):
    """A Transport straight into a FakeDevice (no threads, no sockets)."""

    def __init__(self, script: list[str] | None = None) -> None:
        self.dev = FakeDevice(script)
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        if self.dev.exited:
            raise LinkClosedError("fake device exited")
        self.written += data
        self.dev.receive(data)

    def read_some(self, timeout: float) -> bytes:
        data = self.dev.take()
        if data:
            return data
        if self.dev.exited:
            raise LinkClosedError("fake device exited")
        time.sleep(min(timeout, 0.005))
        return b""

    def close(self) -> None:
        pass


def _dev(script: list[str] | None = None, retries: int = 4, **kw: float) -> Device:
    return Device(FakeLink(script), timeout=kw.pop("timeout", 0.05), retries=retries, **kw)


def _fake(d: Device) -> FakeDevice:
    assert isinstance(d.transport, FakeLink)
    return d.transport.dev


def _step(d: Device, step_id: int, flags: int = 1) -> int:
    return int(struct.unpack("<IIIB", d.request(proto.MsgType.STEP,
                                                 struct.pack("<IB", step_id, flags)))[1])


def _clean(st: LinkStats) -> bool:
    return st.retries == st.bad_frames == st.timeouts == st.framing_errors == 0


# ---------------------------------------------------------------- retransmission


def test_clean_link_sends_each_request_once() -> None:
    d = _dev()
    for i in range(5):
        assert d.echo(bytes([i]) * 10) == bytes([i]) * 10
    assert _clean(d.stats) and d.stats.frames_out == 5 and d.stats.requests == 5
    assert bytes(d.transport.written).count(0) == 5  # type: ignore[attr-defined]


def test_corrupted_answer_is_retransmitted_at_once() -> None:
    d = _dev(["corrupt"], timeout=5.0)
    t0 = time.monotonic()
    assert d.echo(b"hello") == b"hello"
    assert time.monotonic() - t0 < 1.0  # no timeout waited for
    assert (d.stats.retries, d.stats.bad_frames, d.stats.timeouts) == (1, 1, 0)
    assert len(_fake(d).handled) == 2
    assert d.stats.retries_by_type == {proto.MsgType.ECHO: 1}


def test_lost_answer_times_out_then_retransmits() -> None:
    d = _dev(["lose"])
    assert d.echo(b"x") == b"x"
    assert (d.stats.retries, d.stats.timeouts, d.stats.bad_frames) == (1, 1, 0)


def test_retransmission_starts_with_a_lone_zero() -> None:
    d = _dev(["lose"])
    d.echo(b"x")
    written = bytes(d.transport.written)  # type: ignore[attr-defined]
    first_end = written.index(0) + 1
    assert written[first_end] == 0  # the retransmission: 0x00, then the frame


def test_unterminated_answer_is_recovered_from_the_glued_chunk() -> None:
    # the answer's 0x00 is lost: it is glued to the retransmission's answer
    d = _dev(["unterminated"])
    assert d.echo(b"abc") == b"abc"
    assert d.stats.timeouts == 1 and d.stats.bad_frames == 1 and d.stats.resynced == 1


def test_garbage_before_an_answer_is_skipped_without_a_retry() -> None:
    d = _dev(["garbage"], timeout=5.0)
    assert d.echo(b"payload") == b"payload"
    assert d.stats.retries == 0 and d.stats.bad_frames == 1 and d.stats.resynced == 1


def test_framing_error_means_retransmit_not_raise() -> None:
    d = _dev(["damaged", "damaged"], timeout=5.0)
    assert d.echo(b"ok?") == b"ok?"
    assert (d.stats.retries, d.stats.framing_errors, d.stats.timeouts) == (2, 2, 0)
    assert len(_fake(d).handled) == 1


def test_cut_request_is_flushed_by_the_lone_zero() -> None:
    """The request's 0x00 is lost: the device holds a partial frame and says nothing; the
    retransmission's leading 0x00 ends it (one framing ERROR) and the copy is answered."""
    d = _dev(["cut"])
    assert d.echo(b"cut me") == b"cut me"
    assert d.stats.timeouts == 1 and d.stats.retries == 1 and d.stats.framing_errors == 1
    assert [f.payload for f in _fake(d).handled] == [b"cut me"]


def test_lost_request_delimiter_completed_by_the_lone_zero() -> None:
    """Only the 0x00 is lost: the retransmission's leading 0x00 completes the first copy,
    so the device answers both (the second answer is stale by the next request)."""
    d = _dev(["nodelim"])
    assert d.echo(b"twice") == b"twice"
    assert d.echo(b"next") == b"next"
    assert [f.payload for f in _fake(d).handled] == [b"twice", b"twice", b"next"]
    assert d.stats.stale_frames == 1 and d.stats.framing_errors == 0


def test_stale_answer_is_discarded() -> None:
    d = _dev(["stale"], timeout=5.0)
    assert d.echo(b"new") == b"new"
    assert d.stats.stale_frames == 1 and d.stats.retries == 0


def test_late_answer_to_an_earlier_attempt_is_accepted() -> None:
    """Attempt 1's answer arrives after attempt 2 went out: it answers the same request.
    Attempt 2's answer then arrives during the next request and is discarded as stale."""
    d = _dev(["late"])
    assert _step(d, 1) == 1
    assert _step(d, 2) == 2
    assert d.stats.retries == 1 and d.stats.stale_frames == 1
    assert _fake(d).steps == 2


def test_retransmitted_step_is_not_trained_twice() -> None:
    d = _dev(["corrupt", "lose", "unterminated"])
    assert _step(d, 1) == 1
    assert d.stats.retries == 3
    assert len(_fake(d).handled) == 4 and _fake(d).steps == 1
    assert _step(d, 2) == 2


def test_device_error_raises_at_once_with_the_reason() -> None:
    d = _dev(timeout=5.0)
    with pytest.raises(proto.DeviceError, match="BAD_PAYLOAD: no such thing") as info:
        d.request(BAD_TYPE, b"?")
    assert not info.value.framing and d.stats.retries == 0


def test_retries_exhausted_by_timeouts() -> None:
    d = _dev(["lose"] * 3, retries=2)
    with pytest.raises(LinkTimeoutError, match="after 3 attempt"):
        d.echo(b"x")
    assert d.stats.frames_out == 3 and d.stats.timeouts == 3 and d.stats.retries == 2
    assert d.echo(b"y") == b"y"  # the link still works


def test_retries_exhausted_by_framing_errors_raises_the_device_error() -> None:
    d = _dev(["damaged"] * 3, retries=2)
    with pytest.raises(proto.DeviceError) as info:
        d.echo(b"x")
    assert info.value.framing and info.value.code == proto.ErrorCode.BAD_CRC


def test_no_retries_keeps_one_attempt() -> None:
    d = _dev(["damaged"], retries=0, timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(proto.DeviceError):
        d.echo(b"x")
    assert d.stats.frames_out == 1 and time.monotonic() - t0 < 1.0


def test_oversize_request_raises_at_once() -> None:
    d = _dev(timeout=5.0)
    d.transport.dev.reader = proto.FrameReader(100)  # type: ignore[attr-defined]
    d.max_payload = 100  # as HELLO would report
    with pytest.raises(proto.DeviceError, match="OVERSIZE"):
        d.echo(bytes(101))
    assert d.stats.retries == 0 and d.echo(bytes(100)) == bytes(100)


def test_backoff_lengthens_each_timeout() -> None:
    d = _dev(["lose", "lose"], timeout=0.05, backoff=2.0)
    t0 = time.monotonic()
    d.echo(b"x")
    assert time.monotonic() - t0 >= 0.05 + 0.1
    with pytest.raises(ValueError):
        Device(FakeLink(), backoff=0.5)


def test_run_is_not_repeated_once_the_device_may_have_acted() -> None:
    """RUN's completing chunk overwrites the input: after a lost or damaged answer the
    client raises instead of repeating it; after a framing ERROR it resends."""
    run = struct.pack("<I", 0) + b"input"
    d = _dev(["damaged"])
    assert d.request(proto.MsgType.RUN, run)[4:] == b"input"
    assert d.stats.retries == 1 and _fake(d).runs == 1
    for script in (["lose"], ["corrupt"]):
        d = _dev(script)
        with pytest.raises(RepeatUnsafeError, match="Send the whole input again"):
            d.request(proto.MsgType.RUN, run)
        assert d.stats.frames_out == 1 and _fake(d).runs == 1
        assert d.request(proto.MsgType.RUN, run)[:4] == struct.pack("<I", 2)
    # resent after a framing ERROR, but the first copy was acted on too (the ERROR came
    # from other garbage) and its answer was damaged: the second answer is not trusted
    d = _dev(["corrupt"])
    link = d.transport
    assert isinstance(link, FakeLink)
    link.dev.out += proto.encode_frame(proto.MsgType.ERROR, 0, proto.encode_error_payload(
        proto.ErrorCode.BAD_COBS, 0, "flushed garbage"))
    with pytest.raises(RepeatUnsafeError, match="acted on it twice"):
        d.request(proto.MsgType.RUN, run)
    assert _fake(d).runs == 2


def test_fault_frame_raises() -> None:
    link = FakeLink()
    d = Device(link, timeout=1.0)
    link.dev.out += proto.encode_frame(proto.MsgType.FAULT, 0xFFFF, struct.pack("<9I", *range(9)))
    with pytest.raises(DeviceFaultError) as info:
        d.echo(b"x")
    assert info.value.registers["pc"] == 1


def test_exit_whose_answer_is_lost_counts_as_exited() -> None:
    d = _dev(["lose"])
    d.exit(3)  # waiting for the answer finds the link closed: the device has gone
    assert _fake(d).exited
    with pytest.raises(LinkClosedError):
        d.echo(b"x")


def test_handshake_through_noise() -> None:
    d = _dev(["lose", "corrupt", "damaged"], retries=0)
    h = handshake(d, attempts=5, timeout=0.05)
    assert h.target == "fake" and d.max_payload == proto.MAX_PAYLOAD
    assert d.stats.retries == 3


def test_errors_list_is_bounded() -> None:
    d = _dev(["damaged"] * 80, retries=100, timeout=5.0)
    d.echo(b"x")
    assert d.stats.framing_errors == 80 and len(d.stats.errors) == 50


# ---------------------------------------------------------------- the proxy on its own


def test_faults_validation() -> None:
    assert Faults.rate(0.03).total == pytest.approx(0.03)
    with pytest.raises(ValueError):
        Faults(flip=0.8, drop=0.3)
    with pytest.raises(ValueError):
        Faults(dup=-0.1)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(1, 0.0, upstream_host="10.1.2.3")


def test_mangler_is_seeded_and_counts() -> None:
    data = random.Random(0).randbytes(100_000)
    a, b, c = (_Mangler(Faults.rate(0.01), s) for s in ("1", "1", "2"))
    out_a, out_b, out_c = a(data), b(data), c(data)
    assert out_a == out_b and out_a != out_c
    st = a.stats
    assert st.bytes_out == len(out_a) == st.bytes_in - st.dropped + st.duplicated
    assert 700 < st.faults < 1300
    assert min(st.flipped, st.dropped, st.duplicated) > 200
    clean = _Mangler(Faults(), "x")
    assert clean(data) == data and clean.stats.faults == 0


def _tcp_server(handler: object) -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn:
            handler(conn)  # type: ignore[operator]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, t


def _echo_server(conn: socket.socket) -> None:
    while data := conn.recv(4096):
        conn.sendall(data)


def test_proxy_relays_and_damages_both_directions() -> None:
    srv, t = _tcp_server(_echo_server)
    port = srv.getsockname()[1]
    data = random.Random(1).randbytes(10_000)
    with FaultProxy(port, 0.0) as clean:
        ser = SerialTransport(clean.url)
        ser.write(data)
        got = b""
        while len(got) < len(data):
            got += ser.read_some(2.0)
        assert got == data
        ser.close()
    t.join(2)
    srv.close()
    assert not clean.running

    srv, t = _tcp_server(_echo_server)
    proxy = FaultProxy(srv.getsockname()[1], Faults(drop=0.02), Faults(dup=0.03), seed=9)
    ser = SerialTransport(proxy.url)
    ser.write(data)
    want = len(data) - 0.02 * len(data) + 0.03 * len(data)
    got = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proxy.to_host.stats.bytes_in < len(data) * 0.97:
        got += ser.read_some(0.1)
    got += ser.read_some(0.2)
    st = proxy.stats()
    assert st["to_device"]["dropped"] > 0 and st["to_device"]["duplicated"] == 0
    assert st["to_host"]["duplicated"] > 0 and st["to_host"]["dropped"] == 0
    assert abs(len(got) - want) < 0.02 * len(data)
    assert proxy.faults_injected == st["to_device"]["faults"] + st["to_host"]["faults"]
    ser.close()
    proxy.close()
    t.join(2)
    srv.close()
    assert not proxy.running


def test_proxy_passes_the_end_of_the_stream_on() -> None:
    def say_bye(conn: socket.socket) -> None:
        conn.sendall(b"bye\x00")

    srv, t = _tcp_server(say_bye)
    proxy = FaultProxy(srv.getsockname()[1], 0.0, lifetime=10)
    ser = SerialTransport(proxy.url)
    got = b""
    with pytest.raises(LinkClosedError):
        for _ in range(50):
            got += ser.read_some(0.2)
    assert got == b"bye\x00"
    ser.close()
    deadline = time.monotonic() + 3
    while proxy.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not proxy.running  # stopped by itself
    proxy.close()
    srv.close()


def test_device_over_the_proxy_at_two_percent() -> None:
    """The whole chain without QEMU: Device -> pyserial socket -> FaultProxy -> FakeDevice."""

    def serve(conn: socket.socket) -> None:
        fake = FakeDevice()
        while data := conn.recv(4096):
            fake.receive(data)
            conn.sendall(fake.take())
            if fake.exited:
                return

    srv, t = _tcp_server(serve)
    proxy = FaultProxy(srv.getsockname()[1], 0.02, seed=4)
    d = Device(SerialTransport(proxy.url), timeout=0.1, retries=40)
    handshake(d)
    data = random.Random(2).randbytes(4096)
    for off in range(0, len(data), 32):
        assert d.echo(data[off: off + 32]) == data[off: off + 32]
    steps = [_step(d, i) for i in range(1, 21)]
    assert steps == list(range(1, 21))  # every step trained exactly once
    d.exit(0)
    d.transport.close()
    proxy.close()
    t.join(2)
    srv.close()
    assert proxy.faults_injected > 50 and d.stats.retries > 20 and d.stats.bad_frames > 0


# ---------------------------------------------------------------- QEMU: the real firmware

RATE = 0.01
CHUNK = 48  # payload bytes per frame: at 1 % per byte a 1 KiB frame would never get through


@pytest.fixture(scope="module")
def base_fw(build_root: Path):  # noqa: ANN201
    from mcutl.firmware import base_spec
    from mcutl.targets import load_target
    from mcutl.toolchain import build_firmware

    return build_firmware(load_target("stm32f405"), base_spec(), build_root / "base-stm32f405")


@pytest.fixture(scope="module")
def train_build(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    import torch

    from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
    from mcutl.compile import compile_training

    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=1), seed=2), seed=3).eval()
    calib = np.random.default_rng(0).random((32, 6, 100), dtype=np.float32)
    out = tmp_path_factory.mktemp("noisy-train")
    info, _, gen, _ = compile_training(model, "stm32f405", out, num_classes=4, calib=calib,
                                       input_shape=(1, 6, 100), source_name="imu1d")
    return out, info, gen.param_count


@needs_qemu
@pytest.mark.qemu
def test_echo_16k_through_one_percent_noise(base_fw) -> None:  # noqa: ANN001
    from mcutl.targets import load_target

    data = random.Random(16).randbytes(16 * 1024)
    with open_noisy_session(load_target("stm32f405"), base_fw.elf, RATE, seed=1,
                            timeout=0.2, retries=40, backoff=1.5) as s:
        for off in range(0, len(data), CHUNK):
            part = data[off: off + CHUNK]
            assert s.device.echo(part) == part, f"echo differs at offset {off}"
        result = s.finish(0)
        proxy = s.qemu.proxy  # type: ignore[union-attr]
    st = s.device.stats
    assert result.exit_code == 0  # type: ignore[union-attr]
    assert st.retries > 0 and st.bad_frames + st.framing_errors > 0
    assert proxy is not None
    faults = proxy.stats()
    assert faults["to_device"]["faults"] > 0 and faults["to_host"]["faults"] > 0


def _train_stream(dev, xq: np.ndarray, y: np.ndarray, n_params: int):  # noqa: ANN001, ANN202
    """RESET, then per sample SAMPLE + STEP (update every 2nd) + DIGEST; one repeated STEP
    (same step_id: must be answered from the cache); finally the parameters read back."""
    from mcutl.link.trainer import PARAMS, params_crc

    dev.reset()
    records = []
    for i in range(len(xq)):
        dev.sample(xq[i], int(y[i]))
        r = dev.step(update=i % 2 == 1)
        d = dev.digest()
        records.append((r.loss_bits, r.steps, r.updated, d.crc32, d.steps, d.updates))
        if i == 10:  # retransmit the last STEP by hand: same answer, nothing trained
            again = dev.device.request(proto.MsgType.STEP, struct.pack("<IB", i + 1, 1))
            records.append(("repeat", struct.unpack("<IIIB", again[:13])[:2],
                            dev.digest().crc32))
    theta = dev.get_block(PARAMS, n_params)
    return records, params_crc(theta)


@needs_qemu
@pytest.mark.qemu
def test_training_through_one_percent_noise_matches_the_host_bit_for_bit(train_build) -> None:  # noqa: ANN001
    from mcutl.link.session import open_session
    from mcutl.link.trainer import TrainDevice
    from mcutl.targets import load_target
    from mcutl.verify.harness import random_samples

    out, info, n_params = train_build
    xq, y = random_samples(info, 30, seed=0)
    with open_session(load_target("host"), out / info.firmware["host"]) as s:
        host_records, host_crc = _train_stream(TrainDevice(s.device), xq, y, n_params)
        s.finish(0)
    with open_noisy_session(load_target(info.target), out / info.firmware["qemu"], RATE,
                            seed=2, timeout=0.2, retries=40, backoff=1.5) as s:
        dev = TrainDevice(s.device)
        dev.chunk = CHUNK
        records, crc = _train_stream(dev, xq, y, n_params)
        stats = dev.stats()
        result = s.finish(0)
        proxy = s.qemu.proxy  # type: ignore[union-attr]
    st = s.device.stats
    assert records == host_records  # every loss bit and every digest, after every step
    assert crc == host_crc == records[-1][3]  # the parameters read back through the noise
    assert [r[1] for r in records if r[0] != "repeat"] == list(range(1, 31))
    assert stats.steps == 30 and stats.updates == 15  # nothing trained twice
    assert result.exit_code == 0  # type: ignore[union-attr]
    assert proxy is not None and proxy.faults_injected > 100
    assert st.retries > 0 and st.retries_by_type.get(proto.MsgType.STEP, 0) > 0
    assert st.retries_by_type.get(proto.MsgType.SAMPLE, 0) > 0
