"""Build the C protocol runtime natively and drive it (plain and ASan/UBSan builds).

* proto_host_main runs the server over stdin/stdout; the tests talk to it
  through pipes with the Python codec.
* A shared library of the same sources is loaded with ctypes to compare the C
  COBS/CRC/frame code with the Python codec on random inputs.
* The sources are compiled for Cortex-M4 with arm-none-eabi-gcc when present.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import selectors
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from mcutl.link import protocol as p

ROOT = Path(__file__).resolve().parents[1]
RT = ROOT / "runtime_c"
INCLUDE = RT / "include"
SOURCES = [RT / "src" / "proto" / f for f in ("cobs.c", "crc32.c", "frame.c", "server.c")]
HOST_MAIN = RT / "tests" / "proto_host_main.c"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = [
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
]
ARM_FLAGS = [
    "-mcpu=cortex-m4",
    "-mthumb",
    "-mfpu=fpv4-sp-d16",
    "-mfloat-abi=hard",
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Os",
]
GCC = shutil.which("gcc")
ARM_GCC = shutil.which("arm-none-eabi-gcc")
TIMEOUT = 20.0

pytestmark = [pytest.mark.host, pytest.mark.skipif(GCC is None, reason="gcc not found")]

BUILDS: dict[str, list[str]] = {
    "plain": ["-O2"],
    "asan": SANITIZE,
    "small": ["-O2", "-DMCUTL_PROTO_MAX_PAYLOAD=100"],
}


def _run_cc(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"compile failed: {' '.join(cmd)}\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Returns a function that builds (once) and returns the host program variant."""
    out_dir = tmp_path_factory.mktemp("proto_c")
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            exe = out_dir / f"proto_host_{variant}"
            assert GCC is not None
            _run_cc(
                [GCC, *STRICT, *BUILDS[variant], f"-I{INCLUDE}"]
                + [str(s) for s in SOURCES]
                + [str(HOST_MAIN), "-o", str(exe)]
            )
            cache[variant] = exe
        return cache[variant]

    return get


# ---------------------------------------------------------------------------- device driver


class Device:
    """proto_host_main over pipes."""

    def __init__(self, exe: Path) -> None:
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        env["UBSAN_OPTIONS"] = "print_stacktrace=1"
        self.proc = subprocess.Popen(
            [str(exe)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=env,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.reader = p.FrameReader()
        self.pending: list[p.Frame | p.FrameError] = []
        self.received = bytearray()  # every byte the device wrote
        self.eof = False
        self.seq = 0x1000

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _read_some(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            self.eof = True
            return False
        self.received += chunk
        self.pending += self.reader.feed(chunk)
        return True

    def recv(self, timeout: float = TIMEOUT) -> p.Frame:
        while not self.pending:
            if self.eof or not self._read_some(timeout):
                raise AssertionError(
                    f"no frame from device within {timeout}s (eof={self.eof}, "
                    f"rc={self.proc.poll()}, stderr={self._stderr_now()!r})"
                )
        item = self.pending.pop(0)
        assert isinstance(item, p.Frame), f"device sent a bad frame: {item}"
        return item

    def assert_silent(self, wait: float = 0.3) -> None:
        self._read_some(wait)
        assert not self.pending, f"unexpected output: {self.pending}"
        assert self.reader.pending == 0

    def request(self, type_: int, payload: bytes = b"") -> p.Frame:
        seq = self.next_seq()
        self.send(p.encode_frame(type_, seq, payload))
        frame = self.recv()
        assert frame.seq == seq, f"response seq {frame.seq} != request seq {seq}"
        return frame

    def call(self, type_: int, payload: bytes = b"") -> bytes:
        seq = self.next_seq()
        self.send(p.encode_frame(type_, seq, payload))
        return p.check_response(self.recv(), type_, seq)

    def expect_error(self) -> p.DeviceError:
        frame = self.recv()
        assert frame.is_error, f"expected an ERROR frame, got {frame}"
        return p.DeviceError.from_frame(frame)

    def counters(self) -> tuple[int, int]:
        data = self.call(0x40)
        return int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")

    def _stderr_now(self) -> bytes:
        if self.proc.poll() is None or self.proc.stderr is None:
            return b""
        return self.proc.stderr.read()

    def finish(self) -> tuple[int, bytes]:
        """Close stdin, wait for exit; returns (returncode, stderr)."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        if not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        while self._read_some(0.0):
            pass
        err = self.proc.stderr.read()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return rc, err


@pytest.fixture(params=["plain", "asan"])
def device(request: pytest.FixtureRequest, build: Callable[[str], Path]) -> Iterator[Device]:
    dev = Device(build(request.param))
    yield dev
    if dev.proc.returncode is None:
        rc, err = dev.finish()
        assert err == b"", f"sanitizer/stderr output:\n{err.decode(errors='replace')}"
        assert rc == 0, f"device exited {rc} on EOF"


# ---------------------------------------------------------------------------- basics


def test_hello(device: Device) -> None:
    hello = p.Hello.parse(device.call(p.MsgType.HELLO))
    assert hello == p.Hello(1, 1024, 65536, bytes(32), "host", "host-test", b"")
    assert not hello.has_model


def test_hello_ignores_request_payload(device: Device) -> None:
    hello = p.Hello.parse(device.call(p.MsgType.HELLO, b"future host info"))
    assert hello.target == "host"


def test_max_payload_override(build: Callable[[str], Path]) -> None:
    dev = Device(build("small"))
    try:
        assert p.Hello.parse(dev.call(p.MsgType.HELLO)).max_payload == 100
        assert dev.call(p.MsgType.ECHO, b"\x07" * 100) == b"\x07" * 100
        dev.send(p.encode_frame(p.MsgType.ECHO, 5, b"\x07" * 101))
        err = dev.expect_error()
        assert err.code == p.ErrorCode.OVERSIZE and "rx buffer of 110 bytes" in err.reason
        assert dev.call(p.MsgType.ECHO, b"ok") == b"ok"
    finally:
        rc, stderr = dev.finish()
    assert (rc, stderr) == (0, b"")


def _payloads(rng: random.Random) -> Iterator[bytes]:
    for n in (0, 1, 2, 253, 254, 255, 256, 507, 508, 509, 1014, 1023, 1024):
        yield bytes(rng.getrandbits(8) for _ in range(n))
        yield b"\x01" * n
        yield b"\x00" * n
    for _ in range(40):
        n = rng.randint(0, 1024)
        yield bytes(rng.choice((0, 0, 1, 0xFF, rng.getrandbits(8))) for _ in range(n))


def test_echo_random_payloads(device: Device) -> None:
    rng = random.Random(0x5EED)
    count = 0
    for payload in _payloads(rng):
        assert device.call(p.MsgType.ECHO, payload) == payload
        count += 1
    assert device.counters() == (count + 1, 0)


def test_echo_seq_edges(device: Device) -> None:
    for seq in (0, 1, 0x00FF, 0x0100, 0x7FFF, 0xFFFF):
        device.send(p.encode_frame(p.MsgType.ECHO, seq, b"s"))
        frame = device.recv()
        assert (frame.type, frame.seq, frame.payload) == (0x82, seq, b"s")


def test_pipelined_requests_answered_in_order(device: Device) -> None:
    rng = random.Random(7)
    sent = [(i, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))) for i in range(64)]
    device.send(b"".join(p.encode_frame(p.MsgType.ECHO, s, pl) for s, pl in sent))
    for seq, payload in sent:
        frame = device.recv()
        assert (frame.type, frame.seq, frame.payload) == (0x82, seq, payload)


def test_byte_at_a_time(device: Device) -> None:
    wire = p.encode_frame(p.MsgType.ECHO, 3, b"dribble\x00\x00x")
    for b in wire:
        device.send(bytes([b]))
    frame = device.recv()
    assert (frame.seq, frame.payload) == (3, b"dribble\x00\x00x")


# ---------------------------------------------------------------------------- resync


def test_empty_frames_are_ignored(device: Device) -> None:
    device.send(b"\x00")
    device.assert_silent()
    device.send(b"\x00\x00\x00" + p.encode_frame(p.MsgType.HELLO, 9) + b"\x00\x00")
    frame = device.recv()
    assert (frame.type, frame.seq) == (0x81, 9)
    device.assert_silent()


def test_lone_zero_flushes_partial_frame(device: Device) -> None:
    wire = p.encode_frame(p.MsgType.ECHO, 4, b"half a frame")
    device.send(wire[:8] + b"\x00")  # sender died mid-frame, host flushes
    err = device.expect_error()
    assert err.framing
    assert device.call(p.MsgType.ECHO, b"after") == b"after"
    device.assert_silent()


def test_garbage_with_its_own_delimiter(device: Device) -> None:
    device.send(b"boot noise \xff\xfe\x00" + p.encode_frame(p.MsgType.ECHO, 11, b"x"))
    err = device.expect_error()
    assert err.framing
    frame = device.recv()
    assert (frame.type, frame.seq, frame.payload) == (0x82, 11, b"x")


# ---------------------------------------------------------------------------- corruption

MARK = b"MARKER-must-not-be-echoed"


def _raw(seq: int, payload: bytes = MARK, type_: int = p.MsgType.ECHO, version: int = 1) -> bytes:
    return p.pack_frame(type_, seq, payload, version)


def _wire(raw: bytes) -> bytes:
    return cobs.encode(raw) + b"\x00"


def _flip(raw: bytes, index: int, mask: int = 0xFF) -> bytes:
    b = bytearray(raw)
    b[index] ^= mask
    return bytes(b)


def _cobs_cut(seq: int) -> bytes:
    pad = b""
    while (raw := _raw(seq, MARK + pad))[-1] == 0:
        pad += b"!"
    return cobs.encode(raw)[:-1] + b"\x00"  # last group one byte short


# name -> (wire builder, expected code, reason pattern, seq/type reported exactly)
CASES: dict[str, tuple[Callable[[int], bytes], int, str, bool]] = {
    "crc_byte_flipped": (
        lambda s: _wire(_flip(_raw(s), -1)),
        p.ErrorCode.BAD_CRC,
        r"^crc mismatch: got 0x[0-9a-f]{8} want 0x[0-9a-f]{8}$",
        True,
    ),
    "payload_bit_flipped": (
        lambda s: _wire(_flip(_raw(s), 10, 0x04)),
        p.ErrorCode.BAD_CRC,
        r"^crc mismatch",
        True,
    ),
    "truncated_tail": (
        lambda s: _wire(_raw(s)[:-1]),
        p.ErrorCode.TRUNCATED,
        rf"^len field says {len(MARK)} but frame carries {len(MARK) - 1} payload bytes$",
        True,
    ),
    "truncated_below_header": (
        lambda s: _wire(_raw(s)[:7]),
        p.ErrorCode.TRUNCATED,
        r"^frame is 7 bytes, minimum 10",
        True,
    ),
    "extra_byte": (
        lambda s: _wire(_raw(s) + b"\x01"),
        p.ErrorCode.TRUNCATED,
        rf"^len field says {len(MARK)} but frame carries {len(MARK) + 1}",
        True,
    ),
    "oversize": (
        lambda s: _wire(_raw(s, MARK * 42)),
        p.ErrorCode.OVERSIZE,
        r"^frame of \d+ wire bytes overflows rx buffer of 1034 bytes \(max payload 1024\)$",
        True,
    ),
    "oversize_huge": (
        lambda s: _wire(_raw(s, MARK * 800)),
        p.ErrorCode.OVERSIZE,
        r"^frame of \d{5} wire bytes overflows",
        True,
    ),
    "bad_cobs_group_cut": (
        _cobs_cut,
        p.ErrorCode.BAD_COBS,
        r"^bad cobs: delimiter after \d+ wire bytes, 1 bytes short of the group end$",
        True,
    ),
    "bad_version_2": (
        lambda s: _wire(_raw(s, version=2)),
        p.ErrorCode.BAD_VERSION,
        r"^version 2 unsupported, want 1$",
        True,
    ),
    "bad_version_0": (
        lambda s: _wire(_raw(s, version=0)),
        p.ErrorCode.BAD_VERSION,
        r"^version 0 unsupported",
        True,
    ),
    "garbage_glued_to_frame": (
        lambda s: b"\x13\x37line noise" + _wire(_raw(s)),
        -1,  # any framing code: which one depends on how the noise parses
        r".",
        False,
    ),
}
UNKNOWN_TYPES = [0x00, 0x04, 0x10, 0x11, 0x18, 0x55, 0x7E, 0x7F, 0x81, 0x82, 0xFF]


def _check_error(err: p.DeviceError, code: int, pattern: str) -> None:
    if code == -1:
        assert err.framing, err
    else:
        assert err.code == code, err
    assert re.search(pattern, err.reason), err.reason


@pytest.mark.parametrize("case", list(CASES))
def test_corruption_reported_then_recovers(device: Device, case: str) -> None:
    builder, code, pattern, exact = CASES[case]
    seq = device.next_seq()
    device.send(builder(seq))
    err = device.expect_error()
    _check_error(err, code, pattern)
    if exact:
        assert (err.seq, err.request_type) == (seq, p.MsgType.ECHO)
    assert device.call(p.MsgType.ECHO, b"next frame works") == b"next frame works"
    device.assert_silent()


@pytest.mark.parametrize("type_", UNKNOWN_TYPES)
def test_unknown_type(device: Device, type_: int) -> None:
    seq = device.next_seq()
    device.send(p.encode_frame(type_, seq, b"abc"))
    err = device.expect_error()
    assert (err.code, err.request_type, err.seq) == (p.ErrorCode.UNKNOWN_TYPE, type_, seq)
    assert err.reason == f"no handler for type 0x{type_:02x}"
    assert device.call(p.MsgType.ECHO, b"ok") == b"ok"


def test_corrupted_echo_never_acted_on(device: Device) -> None:
    requests0, errors0 = device.counters()
    start = len(device.received)
    names = list(CASES)
    for name in names:
        builder, code, pattern, _ = CASES[name]
        device.send(builder(device.next_seq()))
        _check_error(device.expect_error(), code, pattern)
    requests1, errors1 = device.counters()
    # only the COUNTERS request itself ran a handler; every corruption got an ERROR
    assert requests1 - requests0 == 1
    assert errors1 - errors0 == len(names)
    out = bytes(device.received[start:])
    assert MARK not in out and cobs.encode(MARK) not in out
    assert 0x82 not in [f.type for f in p.FrameReader().feed(out) if isinstance(f, p.Frame)]


# ---------------------------------------------------------------------------- handlers


def test_handler_reject_reason(device: Device) -> None:
    device.send(p.encode_frame(0x41, 77, b"xyz"))
    err = device.expect_error()
    assert (err.code, err.request_type, err.seq) == (p.ErrorCode.BAD_PAYLOAD, 0x41, 77)
    assert err.reason == "test reject: got 3 bytes"


def test_handler_overflow_is_internal(device: Device) -> None:
    device.send(p.encode_frame(0x42, 78))
    err = device.expect_error()
    assert (err.code, err.request_type) == (p.ErrorCode.INTERNAL, 0x42)
    assert err.reason == "handler for type 0x42 overflowed the response buffer (max payload 1024)"


def test_handler_app_error_default_reason(device: Device) -> None:
    device.send(p.encode_frame(0x43, 79))
    err = device.expect_error()
    assert (err.code, err.request_type) == (0x80, 0x43)
    assert err.reason == "handler for type 0x43 rejected the request"
    assert "APP_ERROR_0x80" in str(err)


@pytest.mark.parametrize("payload", [b"", b"\x01\x02"])
def test_exit_bad_payload(device: Device, payload: bytes) -> None:
    device.send(p.encode_frame(p.MsgType.EXIT, 5, payload))
    err = device.expect_error()
    assert err.code == p.ErrorCode.BAD_PAYLOAD
    assert err.reason == f"EXIT wants 1 payload byte (exit code), got {len(payload)}"
    assert device.call(p.MsgType.ECHO, b"alive") == b"alive"


@pytest.mark.parametrize("code", [0, 42, 255])
def test_exit(device: Device, code: int) -> None:
    device.send(p.encode_frame(p.MsgType.EXIT, 0xBEEF, bytes([code])))
    frame = device.recv()
    assert (frame.type, frame.seq, frame.payload) == (0x83, 0xBEEF, b"")
    rc, err = device.finish()
    assert err == b"", err.decode(errors="replace")
    assert rc == code
    assert device.eof


def test_exit_stops_processing(device: Device) -> None:
    device.send(
        p.encode_frame(p.MsgType.EXIT, 1, b"\x07") + p.encode_frame(p.MsgType.ECHO, 2, b"late")
    )
    rc, err = device.finish()
    assert (rc, err) == (7, b"")
    frames = p.FrameReader().feed(bytes(device.received))
    assert frames == [p.Frame(1, 0x83, 1, b"")]


# ---------------------------------------------------------------------------- ctypes: C vs Python


class CFrame(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint8),
        ("type", ctypes.c_uint8),
        ("seq", ctypes.c_uint16),
        ("len", ctypes.c_uint16),
        ("payload", ctypes.c_void_p),
    ]


class CBuf(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("cap", ctypes.c_size_t),
        ("len", ctypes.c_size_t),
        ("overflow", ctypes.c_uint8),
    ]


class CRx(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("cap", ctypes.c_size_t),
        ("len", ctypes.c_size_t),
        ("wire_len", ctypes.c_size_t),
        ("code", ctypes.c_uint8),
        ("left", ctypes.c_uint8),
        ("state", ctypes.c_uint8),
        ("err", ctypes.c_uint8),
    ]


MIRRORS: dict[str, type[ctypes.Structure]] = {
    "mcutl_frame_t": CFrame,
    "mcutl_buf_t": CBuf,
    "mcutl_rx_t": CRx,
}


def _layout_probe_source() -> str:
    """C that exports sizeof/offsetof of every struct mirrored with ctypes."""
    lines = ["#include <stddef.h>", '#include "mcutl/proto.h"', ""]
    for cname, mirror in MIRRORS.items():
        lines.append(f"size_t probe_size_{cname}(void);")
        lines.append(f"size_t probe_size_{cname}(void) {{ return sizeof({cname}); }}")
        for field, _ in mirror._fields_:
            fn = f"probe_off_{cname}_{field}"
            lines.append(f"size_t {fn}(void);")
            lines.append(f"size_t {fn}(void) {{ return offsetof({cname}, {field}); }}")
    return "\n".join(lines) + "\n"


def _check_layouts(lib: ctypes.CDLL) -> None:
    """Fail loudly if a header change is not reflected in the ctypes mirrors."""
    for cname, mirror in MIRRORS.items():
        fn = getattr(lib, f"probe_size_{cname}")
        fn.restype = ctypes.c_size_t
        assert fn() == ctypes.sizeof(mirror), f"sizeof({cname}) differs from its mirror"
        for field, _ in mirror._fields_:
            fn = getattr(lib, f"probe_off_{cname}_{field}")
            fn.restype = ctypes.c_size_t
            assert fn() == getattr(mirror, field).offset, f"offsetof({cname}, {field}) differs"


@pytest.fixture(scope="session")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    assert GCC is not None
    out_dir = tmp_path_factory.mktemp("proto_lib")
    so = out_dir / "libmcutl_proto.so"
    probe = out_dir / "layout_probe.c"
    probe.write_text(_layout_probe_source())
    _run_cc(
        [GCC, *STRICT, "-O2", "-shared", "-fPIC", f"-I{INCLUDE}"]
        + [str(s) for s in (*SOURCES, probe)]
        + ["-o", str(so)]
    )
    lib = ctypes.CDLL(str(so))
    _check_layouts(lib)
    sz, u8p = ctypes.c_size_t, ctypes.c_char_p
    lib.mcutl_crc32.argtypes = [ctypes.c_uint32, u8p, sz]
    lib.mcutl_crc32.restype = ctypes.c_uint32
    lib.mcutl_cobs_encode.argtypes = [ctypes.c_void_p, sz, ctypes.c_void_p, sz]
    lib.mcutl_cobs_encode.restype = sz
    lib.mcutl_cobs_decode.argtypes = [u8p, sz, ctypes.c_void_p, sz, ctypes.POINTER(sz)]
    lib.mcutl_cobs_decode.restype = ctypes.c_uint8
    lib.mcutl_frame_encode.argtypes = [
        ctypes.c_uint8,
        ctypes.c_uint16,
        u8p,
        sz,
        ctypes.c_void_p,
        sz,
    ]
    lib.mcutl_frame_encode.restype = sz
    lib.mcutl_frame_decode.argtypes = [u8p, sz, ctypes.POINTER(CFrame), ctypes.POINTER(CBuf)]
    lib.mcutl_frame_decode.restype = ctypes.c_uint8
    lib.mcutl_buf_init.argtypes = [ctypes.POINTER(CBuf), ctypes.c_void_p, sz]
    lib.mcutl_rx_init.argtypes = [ctypes.POINTER(CRx), ctypes.c_void_p, sz]
    lib.mcutl_rx_push.argtypes = [ctypes.POINTER(CRx), ctypes.c_uint8]
    lib.mcutl_rx_push.restype = ctypes.c_int
    return lib


data_st = st.one_of(
    st.binary(max_size=700),
    st.lists(st.sampled_from([0, 1, 0xFF]), max_size=700).map(bytes),
    st.integers(0, 1100).map(lambda n: b"\x01" * n),
)


@given(a=data_st, b=data_st)
@settings(max_examples=200)
def test_c_crc32_matches_zlib(lib: ctypes.CDLL, a: bytes, b: bytes) -> None:
    assert lib.mcutl_crc32(0, a, len(a)) == zlib.crc32(a)
    assert lib.mcutl_crc32(lib.mcutl_crc32(0, a, len(a)), b, len(b)) == zlib.crc32(a + b)


@given(data=data_st)
@settings(max_examples=300)
def test_c_cobs_matches_python(lib: ctypes.CDLL, data: bytes) -> None:
    want = cobs.encode(data)
    cap = len(data) + len(data) // 254 + 1
    out = ctypes.create_string_buffer(cap)
    n = lib.mcutl_cobs_encode(data, len(data), out, cap)
    assert out.raw[:n] == want
    if n > 1:
        assert lib.mcutl_cobs_encode(data, len(data), out, n - 1) == 0  # too small: refused
    # in place: input placed n/254 + 1 bytes after the output start
    off = len(data) // 254 + 1
    buf = ctypes.create_string_buffer(off + len(data))
    ctypes.memmove(ctypes.addressof(buf) + off, data, len(data))
    m = lib.mcutl_cobs_encode(ctypes.addressof(buf) + off, len(data), buf, off + len(data))
    assert buf.raw[:m] == want
    # decode (in place as well)
    dec = ctypes.create_string_buffer(want, len(want))
    out_len = ctypes.c_size_t()
    assert lib.mcutl_cobs_decode(want, len(want), dec, len(want), ctypes.byref(out_len)) == 0
    assert dec.raw[: out_len.value] == data
    if data:
        small = ctypes.create_string_buffer(len(data) - 1 or 1)
        rc = lib.mcutl_cobs_decode(want, len(want), small, len(data) - 1, ctypes.byref(out_len))
        assert rc == p.ErrorCode.OVERSIZE


@pytest.mark.parametrize("bad", [b"\x05\x01\x02", b"\x02", b"\x03\x01\x00\x02", b"\xff\x01"])
def test_c_cobs_decode_rejects(lib: ctypes.CDLL, bad: bytes) -> None:
    out = ctypes.create_string_buffer(64)
    n = ctypes.c_size_t()
    assert lib.mcutl_cobs_decode(bad, len(bad), out, 64, ctypes.byref(n)) == p.ErrorCode.BAD_COBS


@given(type_=st.integers(0, 255), seq=st.integers(0, 0xFFFF), payload=data_st)
@settings(max_examples=200)
def test_c_frame_encode_matches_python(
    lib: ctypes.CDLL, type_: int, seq: int, payload: bytes
) -> None:
    want = p.encode_frame(type_, seq, payload)
    out = ctypes.create_string_buffer(len(want))
    n = lib.mcutl_frame_encode(type_, seq, payload, len(payload), out, len(want))
    assert out.raw[:n] == want
    assert lib.mcutl_frame_encode(type_, seq, payload, len(payload), out, len(want) - 1) == 0


def _c_decode(lib: ctypes.CDLL, raw: bytes) -> tuple[int, CFrame, str]:
    frame = CFrame()
    store = ctypes.create_string_buffer(200)
    reason = CBuf()
    lib.mcutl_buf_init(ctypes.byref(reason), store, 200)
    rc = lib.mcutl_frame_decode(raw, len(raw), ctypes.byref(frame), ctypes.byref(reason))
    return rc, frame, store.raw[: reason.len].decode()


mutations = st.sampled_from(["none", "flip", "cut", "extend", "version", "len"])


@given(
    type_=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
    how=mutations,
    data=st.data(),
)
@settings(max_examples=400)
def test_c_frame_decode_agrees_with_python(
    lib: ctypes.CDLL, type_: int, seq: int, payload: bytes, how: str, data: st.DataObject
) -> None:
    raw = bytearray(p.pack_frame(type_, seq, payload))
    if how == "flip":
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=5))
    elif how == "version":
        raw = bytearray(p.pack_frame(type_, seq, payload, data.draw(st.integers(0, 255))))
    elif how == "len":
        raw[4:6] = data.draw(st.integers(0, 0xFFFF)).to_bytes(2, "little")
    raw_b = bytes(raw)  # keep alive: frame.payload points into it
    rc, frame, reason = _c_decode(lib, raw_b)
    try:
        want = p.unpack_frame(raw_b)
    except p.FrameError as e:
        assert rc == e.code
        # the device reason is the first clause of the host message
        assert str(e).startswith(reason + ";"), (reason, str(e))
        return
    assert rc == 0, reason
    fields = (frame.version, frame.type, frame.seq, frame.len)
    assert fields == (1, want.type, want.seq, len(want.payload))
    assert ctypes.string_at(frame.payload, frame.len) == want.payload


@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=60).map(lambda b: b.replace(b"\x00", b"")),
            st.binary(max_size=50).map(cobs.encode),
            st.just(b""),
        ),
        max_size=8,
    ),
    cap=st.integers(0, 48),
)
@settings(max_examples=300)
def test_c_rx_agrees_with_cobs(lib: ctypes.CDLL, chunks: list[bytes], cap: int) -> None:
    """Incremental receiver == split at 0x00 + cobs.decode + size limit."""
    buf = ctypes.create_string_buffer(max(cap, 1))
    rx = CRx()
    lib.mcutl_rx_init(ctypes.byref(rx), buf, cap)
    got: list[object] = []
    for byte in b"\x00".join(chunks) + b"\x00":
        st_ = lib.mcutl_rx_push(ctypes.byref(rx), byte)
        if st_ == 1:
            got.append(buf.raw[: rx.len])
        elif st_ == 2:
            got.append(int(rx.err))
    want: list[object] = []
    for chunk in chunks:
        if not chunk:
            continue
        try:
            dec = cobs.decode(chunk)
        except cobs.DecodeError:
            dec = None
        # the receiver gives up as soon as the buffer would overflow
        if dec is None:
            # a bad-COBS frame may still overflow before its broken group is seen
            want.append((p.ErrorCode.BAD_COBS, p.ErrorCode.OVERSIZE))
        elif len(dec) > cap:
            want.append(int(p.ErrorCode.OVERSIZE))
        else:
            want.append(dec)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, tuple):
            assert g in w
        else:
            assert g == w


# ---------------------------------------------------------------------------- build checks


@pytest.mark.parametrize(("value", "ok"), [("64", True), ("65535", True), ("63", False)])
def test_max_payload_bounds(tmp_path: Path, value: str, ok: bool) -> None:
    assert GCC is not None
    cmd = [GCC, *STRICT, f"-DMCUTL_PROTO_MAX_PAYLOAD={value}", f"-I{INCLUDE}", "-c"]
    for src in SOURCES:
        res = subprocess.run(
            [*cmd, str(src), "-o", str(tmp_path / f"{src.stem}.o")], capture_output=True, text=True
        )
        assert (res.returncode == 0) == ok, res.stderr
        if not ok:
            assert "MCUTL_PROTO_MAX_PAYLOAD must be within 64..65535" in res.stderr


STRING_H = {"memcpy", "memmove", "memset", "memcmp", "strlen"}


def _symbols(nm: str, obj: Path) -> tuple[set[str], set[str]]:
    out = subprocess.run([nm, "-g", str(obj)], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3:
            defined.add(parts[2])
    return defined, undefined


@pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc not found")
def test_arm_cortex_m4_build(tmp_path: Path) -> None:
    assert ARM_GCC is not None
    nm = shutil.which("arm-none-eabi-nm") or "arm-none-eabi-nm"
    defined: set[str] = set()
    undefined: set[str] = set()
    for src in SOURCES:
        obj = tmp_path / f"{src.stem}.o"
        _run_cc([ARM_GCC, *ARM_FLAGS, f"-I{INCLUDE}", "-c", str(src), "-o", str(obj)])
        d, u = _symbols(nm, obj)
        defined |= d
        undefined |= u
    assert all(s.startswith("mcutl_") for s in defined), sorted(defined)
    # nothing from libc beyond <string.h>
    assert undefined - defined <= STRING_H, sorted(undefined - defined)


def test_host_symbols_prefixed(tmp_path: Path) -> None:
    assert GCC is not None
    for src in SOURCES:
        obj = tmp_path / f"{src.stem}.o"
        _run_cc([GCC, *STRICT, "-O2", f"-I{INCLUDE}", "-c", str(src), "-o", str(obj)])
        defined, undefined = _symbols("nm", obj)
        assert all(s.startswith("mcutl_") for s in defined), sorted(defined)
        assert {s for s in undefined if not s.startswith("mcutl_")} <= STRING_H
