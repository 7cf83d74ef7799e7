"""Pure-Python tests of the protocol v1 host codec (mcutl.link.protocol)."""

from __future__ import annotations

import struct
import zlib

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from mcutl.link import protocol as p

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
# payloads biased towards the COBS edge cases: zero runs and 254-byte blocks
payloads = st.one_of(
    st.binary(max_size=600),
    st.binary(min_size=250, max_size=1100),
    st.lists(st.sampled_from([0, 1, 0xFF]), max_size=800).map(bytes),
    st.integers(0, 1100).map(lambda n: b"\x01" * n),
    st.integers(0, 600).map(lambda n: b"\x00" * n),
)
short_text = st.text(max_size=80).filter(lambda s: len(s.encode()) <= 255)


def wire_to_raw(wire: bytes) -> bytes:
    assert wire.endswith(b"\x00")
    return cobs.decode(wire[:-1])


# ------------------------------------------------------------------ constants / layout


def test_constants_match_spec() -> None:
    assert p.PROTO_VERSION == 1
    assert p.MAX_PAYLOAD == 1024
    assert (p.HEADER_SIZE, p.CRC_SIZE, p.OVERHEAD) == (6, 4, 10)
    assert p.HELLO_FIXED_SIZE == 42
    assert [int(t) for t in (p.MsgType.HELLO, p.MsgType.ECHO, p.MsgType.EXIT)] == [1, 2, 3]
    assert [int(t) for t in p.MsgType if 0x10 <= t <= 0x18] == list(range(0x10, 0x19))
    assert p.MsgType.ERROR == 0x7F
    assert [int(c) for c in p.ErrorCode] == list(range(1, 10))  # ... BAD_STATE = 9
    assert p.response_type(p.MsgType.ECHO) == 0x82


def test_golden_vector() -> None:
    """Pins the byte layout: HELLO, seq 5, empty payload."""
    raw = p.pack_frame(p.MsgType.HELLO, 5)
    body = bytes([1, 1, 5, 0, 0, 0])
    assert raw == body + struct.pack("<I", zlib.crc32(body))
    assert raw.hex() == "0101050000008" + "4ab2070"
    assert p.encode_frame(p.MsgType.HELLO, 5) == bytes.fromhex("0401010501010584ab207000")


def test_layout_little_endian() -> None:
    raw = p.pack_frame(0x42, 0x1234, b"abc")
    assert raw[:6] == bytes([1, 0x42, 0x34, 0x12, 3, 0])
    assert raw[6:9] == b"abc"
    assert raw[9:] == struct.pack("<I", zlib.crc32(raw[:9]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"type": 256, "seq": 0},
        {"type": -1, "seq": 0},
        {"type": 1, "seq": 0x10000},
        {"type": 1, "seq": 0, "version": 256},
        {"type": 1, "seq": 0, "payload": bytes(0x10000)},
    ],
)
def test_pack_rejects_out_of_range(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        p.pack_frame(**kwargs)


# ------------------------------------------------------------------ round trips


@given(type_=u8, seq=u16, payload=payloads)
@settings(max_examples=300)
def test_frame_round_trip(type_: int, seq: int, payload: bytes) -> None:
    wire = p.encode_frame(type_, seq, payload)
    assert wire.count(0) == 1 and wire[-1] == 0
    assert len(wire) <= p.max_wire_size(len(payload))
    frame = p.decode_frame(wire[:-1])
    assert frame == p.Frame(1, type_, seq, payload)
    assert frame.encode() == wire


@given(
    proto=u16,
    max_payload=u16,
    arena=u32,
    model_hash=st.binary(min_size=32, max_size=32),
    target=short_text,
    build_id=short_text,
    extra=st.binary(max_size=40),
)
def test_hello_round_trip(
    proto: int,
    max_payload: int,
    arena: int,
    model_hash: bytes,
    target: str,
    build_id: str,
    extra: bytes,
) -> None:
    hello = p.Hello(proto, max_payload, arena, model_hash, target, build_id, extra)
    packed = hello.pack()
    assert len(packed) == 42 + len(target.encode()) + len(build_id.encode()) + len(extra)
    assert p.Hello.parse(packed) == hello
    assert hello.has_model == any(model_hash)


def test_hello_layout() -> None:
    h = p.Hello(1, 1024, 0x01020304, bytes(32), "host", "b1")
    assert h.pack() == (b"\x01\x00\x00\x04\x04\x03\x02\x01" + bytes(32) + b"\x04host\x02b1")
    assert not h.has_model


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (bytes(41), "need at least 42"),
        (bytes(40) + b"\x05\x00", "target says 5 bytes"),
        (bytes(40) + b"\x01x\x03ab", "build_id says 3 bytes"),
        (bytes(40) + b"\x01x", "before the build_id length"),
        (bytes(40) + b"\x01\xff\x00", "not valid utf-8"),
    ],
)
def test_hello_parse_rejects(payload: bytes, match: str) -> None:
    with pytest.raises(p.PayloadError, match=match) as ei:
        p.Hello.parse(payload)
    assert ei.value.code == p.ErrorCode.BAD_PAYLOAD


def test_hello_pack_rejects_long_strings() -> None:
    with pytest.raises(ValueError, match="at most 255"):
        p.Hello(1, 1024, 0, bytes(32), "x" * 256).pack()


# ------------------------------------------------------------------ corruption


def _good_raw(seq: int = 7, payload: bytes = b"payload") -> bytes:
    return p.pack_frame(p.MsgType.ECHO, seq, payload)


def _flip(raw: bytes, index: int, mask: int = 0xFF) -> bytes:
    b = bytearray(raw)
    b[index] ^= mask
    return bytes(b)


@pytest.mark.parametrize(
    ("raw", "exc", "match"),
    [
        (_flip(_good_raw(), -1), p.BadCrcError, r"crc mismatch: got 0x[0-9a-f]{8} want 0x"),
        (_flip(_good_raw(), 8, 0x01), p.BadCrcError, "crc mismatch"),
        (_flip(_good_raw(), 1), p.BadCrcError, "crc mismatch"),
        (_good_raw()[:-1], p.TruncatedError, "len field says 7 but frame carries 6"),
        (_good_raw() + b"x", p.TruncatedError, "len field says 7 but frame carries 8"),
        (_good_raw()[:9], p.TruncatedError, "frame is 9 bytes, minimum 10"),
        (b"", p.TruncatedError, "frame is 0 bytes"),
        (p.pack_frame(2, 7, b"x", version=2), p.BadVersionError, "version 2 unsupported"),
        (p.pack_frame(2, 7, b"x", version=0), p.BadVersionError, "version 0 unsupported"),
    ],
)
def test_unpack_rejects(raw: bytes, exc: type[p.FrameError], match: str) -> None:
    with pytest.raises(exc, match=match) as ei:
        p.decode_frame(cobs.encode(raw))
    err = ei.value
    assert isinstance(err, p.FrameError) and isinstance(err, p.ProtocolError)
    assert err.code == exc.code
    assert "resend" in str(err) or "reflash" in str(err)


def test_version_checked_after_crc() -> None:
    # a corrupted version byte is a transmission error, not a version mismatch
    with pytest.raises(p.BadCrcError):
        p.decode_frame(cobs.encode(_flip(_good_raw(), 0, 0x02)))


def test_len_checked_before_crc() -> None:
    with pytest.raises(p.TruncatedError):
        p.decode_frame(cobs.encode(_flip(_good_raw(), 4, 0x01)))


@pytest.mark.parametrize(
    "wire",
    [
        b"\x05\x01\x02",  # group of 4 data bytes cut short
        cobs.encode(_good_raw())[:-1],  # last group cut short
        b"\x03\x01\x00\x02",  # zero inside a frame
    ],
)
def test_bad_cobs(wire: bytes) -> None:
    assert _good_raw()[-1] != 0  # so dropping the last wire byte breaks a group
    with pytest.raises(p.BadCobsError, match="bad cobs") as ei:
        p.decode_frame(wire)
    assert ei.value.code == p.ErrorCode.BAD_COBS


def test_oversize_with_limit() -> None:
    wire = p.encode_frame(p.MsgType.ECHO, 1, bytes(1025))
    with pytest.raises(p.OversizeError, match="max payload 1024") as ei:
        p.decode_frame(wire[:-1], max_payload=1024)
    assert ei.value.code == p.ErrorCode.OVERSIZE
    assert p.decode_frame(wire[:-1]).payload == bytes(1025)


@given(
    type_=u8,
    seq=u16,
    payload=st.binary(max_size=300),
    data=st.data(),
)
@settings(max_examples=300)
def test_any_single_byte_corruption_is_rejected(
    type_: int, seq: int, payload: bytes, data: st.DataObject
) -> None:
    raw = p.pack_frame(type_, seq, payload)
    index = data.draw(st.integers(0, len(raw) - 1))
    mask = data.draw(st.integers(1, 0xFF))
    with pytest.raises(p.FrameError):
        p.unpack_frame(_flip(raw, index, mask))


# ------------------------------------------------------------------ ERROR frames / responses


def test_device_error_from_frame() -> None:
    payload = p.encode_error_payload(p.ErrorCode.BAD_CRC, p.MsgType.ECHO, "crc mismatch: x")
    frame = p.Frame(1, p.MsgType.ERROR, 9, payload)
    err = p.DeviceError.from_frame(frame)
    assert (err.code, err.request_type, err.reason, err.seq) == (4, 2, "crc mismatch: x", 9)
    assert err.framing
    msg = str(err)
    assert "ECHO" in msg and "BAD_CRC" in msg and "crc mismatch: x" in msg and "resend" in msg
    app = p.DeviceError.from_frame(p.Frame(1, 0x7F, 1, bytes([0x80, 0x41])))
    assert "APP_ERROR_0x80" in str(app) and "(no reason given)" in str(app)
    assert not app.framing


def test_device_error_rejects_bad_payload() -> None:
    with pytest.raises(p.PayloadError, match="at least 2"):
        p.DeviceError.from_frame(p.Frame(1, p.MsgType.ERROR, 1, b"\x01"))
    with pytest.raises(ValueError):
        p.DeviceError.from_frame(p.Frame(1, 0x82, 1, b""))


def test_check_response() -> None:
    assert p.check_response(p.Frame(1, 0x82, 3, b"hi"), p.MsgType.ECHO, 3) == b"hi"
    with pytest.raises(p.UnexpectedFrameError, match="expected ECHO response seq 3"):
        p.check_response(p.Frame(1, 0x82, 4, b"hi"), p.MsgType.ECHO, 3)
    with pytest.raises(p.UnexpectedFrameError, match="got HELLO response"):
        p.check_response(p.Frame(1, 0x81, 3, b""), p.MsgType.ECHO, 3)
    err = p.encode_error_payload(p.ErrorCode.UNKNOWN_TYPE, 0x55, "no handler for type 0x55")
    with pytest.raises(p.DeviceError, match="UNKNOWN_TYPE") as ei:
        p.check_response(p.Frame(1, 0x7F, 3, err), 0x55, 3)
    assert ei.value.code == p.ErrorCode.UNKNOWN_TYPE


# ------------------------------------------------------------------ FrameReader


@given(
    frames=st.lists(st.tuples(u8, u16, st.binary(max_size=300)), max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
    empties=st.integers(0, 3),
)
def test_reader_any_chunking(
    frames: list[tuple[int, int, bytes]], cuts: list[int], empties: int
) -> None:
    stream = b"\x00" * empties + b"".join(p.encode_frame(*f) + b"\x00" * empties for f in frames)
    bounds = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    reader = p.FrameReader()
    got: list[p.Frame | p.FrameError] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        got += reader.feed(stream[a:b])
    assert got == [p.Frame(1, t, s, pl) for t, s, pl in frames]
    assert reader.pending == 0


def test_reader_resyncs_after_garbage() -> None:
    reader = p.FrameReader()
    good = p.encode_frame(2, 1, b"ok")
    out = reader.feed(b"\x00\x00\x13\x37garbage" + good[:4])
    assert out == []
    assert reader.pending > 0
    out = reader.feed(good[4:] + good)
    # garbage glued to the first frame spoils it; the next frame decodes
    assert len(out) == 2 and isinstance(out[0], p.FrameError)
    assert out[1] == p.Frame(1, 2, 1, b"ok")


def test_reader_oversize_discards_until_delimiter() -> None:
    reader = p.FrameReader(max_payload=64)
    big = p.encode_frame(2, 1, b"\x01" * 500)
    out = reader.feed(big[:200])
    assert out == [] and reader.pending == 200
    out = reader.feed(big[200:] + p.encode_frame(2, 2, b"small"))
    assert isinstance(out[0], p.OversizeError) and out[0].code == p.ErrorCode.OVERSIZE
    assert f"{len(big) - 1} wire bytes" in str(out[0])
    assert out[1] == p.Frame(1, 2, 2, b"small")
    # decoded size is enforced too (COBS bound is slightly looser)
    out = reader.feed(p.encode_frame(2, 3, bytes(65)))
    assert isinstance(out[0], p.OversizeError)


def test_reader_reset() -> None:
    reader = p.FrameReader()
    reader.feed(b"\x05\x01")
    reader.reset()
    assert reader.pending == 0
    assert reader.feed(p.encode_frame(1, 1)) == [p.Frame(1, 1, 1, b"")]
