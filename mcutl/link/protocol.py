"""Host-side codec for the mcutl serial protocol v1 (see docs/protocol.md).

Pure functions and data classes, no I/O. A frame before COBS is::

    u8 version | u8 type | u16 seq | u16 len | payload[len] | u32 crc32

(little-endian; crc32 = zlib.crc32 over version..payload). On the wire it is
COBS-encoded and terminated by one 0x00 byte.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from cobs import cobs

__all__ = [
    "CRC_SIZE",
    "FRAMING_CODES",
    "HEADER_SIZE",
    "HELLO_FIXED_SIZE",
    "LEN_MAX",
    "MAX_PAYLOAD",
    "MODEL_HASH_SIZE",
    "OVERHEAD",
    "PROTO_VERSION",
    "RESPONSE_BIT",
    "BadCobsError",
    "BadCrcError",
    "BadVersionError",
    "DeviceError",
    "ErrorCode",
    "Frame",
    "FrameError",
    "FrameReader",
    "Hello",
    "MsgType",
    "OversizeError",
    "PayloadError",
    "ProtocolError",
    "TruncatedError",
    "UnexpectedFrameError",
    "check_response",
    "cobs_max_encoded",
    "decode_frame",
    "encode_error_payload",
    "encode_frame",
    "max_wire_size",
    "pack_frame",
    "response_type",
    "unpack_frame",
]

PROTO_VERSION = 1
#: Default device MCUTL_PROTO_MAX_PAYLOAD; a device reports its own in HELLO.
MAX_PAYLOAD = 1024
HEADER_SIZE = 6
CRC_SIZE = 4
OVERHEAD = HEADER_SIZE + CRC_SIZE
#: Largest payload the u16 len field can describe.
LEN_MAX = 0xFFFF
RESPONSE_BIT = 0x80
MODEL_HASH_SIZE = 32
#: HELLO response bytes before the two length-prefixed strings.
HELLO_FIXED_SIZE = 2 + 2 + 4 + MODEL_HASH_SIZE + 1 + 1

_HEADER = struct.Struct("<BBHH")
_CRC = struct.Struct("<I")
_HELLO_HEAD = struct.Struct("<HHI")


class MsgType(IntEnum):
    """Request types. A response has type ``request | 0x80``; errors use ERROR."""

    HELLO = 0x01
    ECHO = 0x02
    EXIT = 0x03
    # Reserved for later work (framing unchanged; handlers added on the device).
    SAMPLE = 0x10
    STEP = 0x11
    INFER = 0x12
    GET_PARAMS = 0x13
    SET_PARAMS = 0x14
    DIGEST = 0x15
    STATS = 0x16
    RESET = 0x17
    RUN = 0x18
    PROBE = 0x19
    SAVE = 0x1A
    LOAD = 0x1B
    PROFILE = 0x1C  # profile builds only
    CONFIG = 0x1D
    FAULT = 0x7E  # unsolicited: the device's fault hook, seq 0xFFFF
    ERROR = 0x7F


class ErrorCode(IntEnum):
    """Error codes carried in ERROR frames (and in ProtocolError.code)."""

    BAD_COBS = 0x01
    TRUNCATED = 0x02
    OVERSIZE = 0x03
    BAD_CRC = 0x04
    BAD_VERSION = 0x05
    UNKNOWN_TYPE = 0x06
    BAD_PAYLOAD = 0x07
    INTERNAL = 0x08
    BAD_STATE = 0x09


#: Codes raised before the device trusts a frame's header: the seq in such an
#: ERROR is best-effort (copied from the damaged frame).
FRAMING_CODES = frozenset(
    {ErrorCode.BAD_COBS, ErrorCode.TRUNCATED, ErrorCode.OVERSIZE, ErrorCode.BAD_CRC}
)

_HINTS: dict[int, str] = {
    ErrorCode.BAD_COBS: "the frame was damaged in transit or joined mid-stream; resend it "
    "(send a lone 0x00 first to resync; check baud rate and wiring if it repeats)",
    ErrorCode.TRUNCATED: "bytes were lost or the frame was cut short; resend it "
    "(check baud rate, wiring and flow control if it repeats)",
    ErrorCode.OVERSIZE: "keep payloads within the device's max_payload (reported by HELLO) "
    "or rebuild the firmware with a larger MCUTL_PROTO_MAX_PAYLOAD",
    ErrorCode.BAD_CRC: "the frame was corrupted in transit; resend it "
    "(check baud rate, wiring and that no other program uses the port if it repeats)",
    ErrorCode.BAD_VERSION: "host and firmware speak different protocol versions; "
    "rebuild and reflash the firmware with this version of mcutl",
    ErrorCode.UNKNOWN_TYPE: "the firmware has no handler for this request; rebuild and "
    "reflash it with the feature enabled, or use a matching mcutl version",
    ErrorCode.BAD_PAYLOAD: "the request payload was rejected; fix the request as the reason says",
    ErrorCode.BAD_STATE: "the request came out of order for the session (docs/protocol.md, "
    "Session state); send what the reason says is missing first",
    ErrorCode.INTERNAL: "firmware bug: a handler overflowed its response buffer; "
    "report it with this message",
}


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"APP_ERROR_0x{code:02x}" if code >= 0x80 else f"ERROR_0x{code:02x}"


def _type_name(type_: int) -> str:
    base = type_ & ~RESPONSE_BIT if type_ != MsgType.ERROR else type_
    try:
        name = MsgType(base).name
    except ValueError:
        name = f"0x{base:02x}"
    return f"{name} response" if type_ & RESPONSE_BIT else name


def _hint(code: int) -> str:
    return _HINTS.get(code, "application-specific error; see the reason")


# --------------------------------------------------------------------------- errors


class ProtocolError(Exception):
    """Base class of all protocol errors. ``code`` is an ErrorCode/int, or None."""

    code: int | None = None

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class FrameError(ProtocolError):
    """A frame received by the host failed a framing check."""


class BadCobsError(FrameError):
    code = ErrorCode.BAD_COBS


class TruncatedError(FrameError):
    code = ErrorCode.TRUNCATED


class OversizeError(FrameError):
    code = ErrorCode.OVERSIZE


class BadCrcError(FrameError):
    code = ErrorCode.BAD_CRC


class BadVersionError(FrameError):
    code = ErrorCode.BAD_VERSION


class PayloadError(ProtocolError):
    """A response payload (e.g. HELLO, ERROR) does not have the expected layout."""

    code = ErrorCode.BAD_PAYLOAD


class UnexpectedFrameError(ProtocolError):
    """A valid frame arrived that does not answer the outstanding request."""

    def __init__(self, message: str, frame: Frame) -> None:
        super().__init__(message)
        self.frame = frame


class DeviceError(ProtocolError):
    """The device answered with an ERROR frame."""

    def __init__(self, code: int, request_type: int, reason: str, seq: int) -> None:
        self.code = code
        self.request_type = request_type
        self.reason = reason
        self.seq = seq
        super().__init__(
            f"device rejected {_type_name(request_type)} (seq {seq}) with "
            f"{_code_name(code)}: {reason or '(no reason given)'} -- {_hint(code)}",
            code,
        )

    @property
    def framing(self) -> bool:
        """True for framing errors, whose seq/request_type are only best-effort."""
        return self.code in FRAMING_CODES

    @classmethod
    def from_frame(cls, frame: Frame) -> DeviceError:
        """Build from an ERROR frame; raises PayloadError if its payload is malformed."""
        if frame.type != MsgType.ERROR:
            raise ValueError(f"not an ERROR frame: type 0x{frame.type:02x}")
        p = frame.payload
        if len(p) < 2:
            raise PayloadError(
                f"ERROR payload is {len(p)} bytes, need at least 2 (code, request_type); "
                "the firmware is broken or not mcutl protocol v1"
            )
        return cls(p[0], p[1], p[2:].decode("utf-8", errors="replace"), frame.seq)


# --------------------------------------------------------------------------- frames


def response_type(request_type: int) -> int:
    """Type of the normal response to ``request_type``."""
    return request_type | RESPONSE_BIT


def cobs_max_encoded(n: int) -> int:
    """Upper bound of the COBS encoding of n bytes (delimiter excluded)."""
    return n + n // 254 + 1


def max_wire_size(max_payload: int = MAX_PAYLOAD) -> int:
    """Upper bound of one wire frame (COBS + delimiter) for a payload limit."""
    return cobs_max_encoded(max_payload + OVERHEAD) + 1


@dataclass(frozen=True)
class Frame:
    """A decoded, validated frame."""

    version: int
    type: int
    seq: int
    payload: bytes = b""

    @property
    def is_error(self) -> bool:
        return self.type == MsgType.ERROR

    def encode(self) -> bytes:
        """Wire bytes of this frame (COBS + trailing 0x00)."""
        return encode_frame(self.type, self.seq, self.payload, self.version)


def pack_frame(type: int, seq: int, payload: bytes = b"", version: int = PROTO_VERSION) -> bytes:
    """Raw frame before COBS: header | payload | crc32. Raises ValueError on bad fields."""
    if not 0 <= type <= 0xFF:
        raise ValueError(f"type {type} out of range 0..255")
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq {seq} out of range 0..65535")
    if not 0 <= version <= 0xFF:
        raise ValueError(f"version {version} out of range 0..255")
    if len(payload) > LEN_MAX:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the u16 len field")
    body = _HEADER.pack(version, type, seq, len(payload)) + bytes(payload)
    return body + _CRC.pack(zlib.crc32(body))


def encode_frame(type: int, seq: int, payload: bytes = b"", version: int = PROTO_VERSION) -> bytes:
    """Wire bytes: COBS(pack_frame(...)) followed by one 0x00."""
    return cobs.encode(pack_frame(type, seq, payload, version)) + b"\x00"


def unpack_frame(data: bytes, max_payload: int | None = None) -> Frame:
    """Validate a raw (already COBS-decoded) frame; same check order as the device."""
    n = len(data)
    if max_payload is not None and n > max_payload + OVERHEAD:
        raise OversizeError(
            f"frame of {n} bytes exceeds max payload {max_payload} + {OVERHEAD}; "
            + _hint(ErrorCode.OVERSIZE)
        )
    if n < OVERHEAD:
        raise TruncatedError(
            f"frame is {n} bytes, minimum {OVERHEAD} (header {HEADER_SIZE} + crc {CRC_SIZE}); "
            + _hint(ErrorCode.TRUNCATED)
        )
    version, type_, seq, length = _HEADER.unpack_from(data)
    if length != n - OVERHEAD:
        raise TruncatedError(
            f"len field says {length} but frame carries {n - OVERHEAD} payload bytes; "
            + _hint(ErrorCode.TRUNCATED)
        )
    (got,) = _CRC.unpack_from(data, n - CRC_SIZE)
    want = zlib.crc32(data[: n - CRC_SIZE])
    if got != want:
        raise BadCrcError(
            f"crc mismatch: got 0x{got:08x} want 0x{want:08x}; " + _hint(ErrorCode.BAD_CRC)
        )
    if version != PROTO_VERSION:
        raise BadVersionError(
            f"version {version} unsupported, want {PROTO_VERSION}; " + _hint(ErrorCode.BAD_VERSION)
        )
    return Frame(version, type_, seq, bytes(data[HEADER_SIZE : n - CRC_SIZE]))


def decode_frame(raw: bytes, max_payload: int | None = None) -> Frame:
    """Decode one wire frame given without its 0x00 delimiter.

    Raises a FrameError subclass (BadCobsError, TruncatedError, OversizeError,
    BadCrcError, BadVersionError) on any failed check.
    """
    zero = bytes(raw).find(0)
    if zero >= 0:
        raise BadCobsError(
            f"bad cobs: 0x00 at offset {zero} inside a frame; split the stream at every "
            "0x00 before decoding (FrameReader does this)"
        )
    try:
        data = cobs.decode(raw)
    except cobs.DecodeError as e:
        raise BadCobsError(f"bad cobs: {e}; " + _hint(ErrorCode.BAD_COBS)) from e
    return unpack_frame(data, max_payload)


def encode_error_payload(code: int, request_type: int, reason: str = "") -> bytes:
    """ERROR payload: u8 code | u8 request_type | utf-8 reason."""
    return bytes([code & 0xFF, request_type & 0xFF]) + reason.encode("utf-8")


def check_response(frame: Frame, request_type: int, seq: int) -> bytes:
    """Return the payload of the response to (request_type, seq), or raise.

    An ERROR frame raises DeviceError (its seq is only best-effort for framing
    codes, see DeviceError.framing); any other mismatch raises
    UnexpectedFrameError.
    """
    if frame.is_error:
        raise DeviceError.from_frame(frame)
    want = response_type(request_type)
    if frame.type != want or frame.seq != seq:
        raise UnexpectedFrameError(
            f"expected {_type_name(want)} seq {seq}, got {_type_name(frame.type)} seq "
            f"{frame.seq}; the link is out of step: send a lone 0x00 and resync with HELLO",
            frame,
        )
    return frame.payload


# --------------------------------------------------------------------------- HELLO


def _short_str(data: bytes, off: int, what: str) -> tuple[str, int]:
    if off >= len(data):
        raise PayloadError(f"HELLO payload ends before the {what} length byte (offset {off})")
    n = data[off]
    end = off + 1 + n
    if end > len(data):
        raise PayloadError(
            f"HELLO {what} says {n} bytes but only {len(data) - off - 1} remain; "
            "the response was cut short or the firmware is broken"
        )
    try:
        return data[off + 1 : end].decode("utf-8"), end
    except UnicodeDecodeError as e:
        raise PayloadError(f"HELLO {what} is not valid utf-8: {e}") from e


def _pack_short_str(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFF:
        raise ValueError(f"{what} is {len(b)} bytes in utf-8, at most 255 fit")
    return bytes([len(b)]) + b


@dataclass(frozen=True)
class Hello:
    """HELLO response. Fields are append-only; unknown trailing bytes go to ``extra``."""

    proto_version: int
    max_payload: int
    arena_bytes: int
    model_hash: bytes = bytes(MODEL_HASH_SIZE)
    target: str = ""
    build_id: str = ""
    extra: bytes = b""

    @property
    def has_model(self) -> bool:
        """False when model_hash is all zero (no model in the firmware)."""
        return any(self.model_hash)

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        """Parse a HELLO response payload; raises PayloadError if malformed."""
        data = bytes(payload)
        if len(data) < HELLO_FIXED_SIZE:
            raise PayloadError(
                f"HELLO payload is {len(data)} bytes, need at least {HELLO_FIXED_SIZE}; "
                "the firmware is not mcutl protocol v1 or the response was cut short"
            )
        proto, max_payload, arena = _HELLO_HEAD.unpack_from(data)
        off = _HELLO_HEAD.size
        model_hash = data[off : off + MODEL_HASH_SIZE]
        off += MODEL_HASH_SIZE
        target, off = _short_str(data, off, "target")
        build_id, off = _short_str(data, off, "build_id")
        return cls(proto, max_payload, arena, model_hash, target, build_id, data[off:])

    def pack(self) -> bytes:
        """Inverse of parse (used by tests and fake devices)."""
        if len(self.model_hash) != MODEL_HASH_SIZE:
            raise ValueError(f"model_hash must be {MODEL_HASH_SIZE} bytes")
        return (
            _HELLO_HEAD.pack(self.proto_version, self.max_payload, self.arena_bytes)
            + bytes(self.model_hash)
            + _pack_short_str(self.target, "target")
            + _pack_short_str(self.build_id, "build_id")
            + bytes(self.extra)
        )


# --------------------------------------------------------------------------- reader


class FrameReader:
    """Accumulates received bytes and returns complete frames or frame errors.

    Empty frames (consecutive 0x00) are skipped silently. A frame longer than
    the limit is discarded up to the next 0x00 and reported as OversizeError.
    A damaged frame is returned as its FrameError, and decoding resumes at the
    next 0x00, so the reader resynchronises by itself after garbage.
    """

    def __init__(self, max_payload: int = LEN_MAX) -> None:
        self.max_payload = max_payload
        self.max_encoded = cobs_max_encoded(max_payload + OVERHEAD)
        self._buf = bytearray()
        self._discarded: int | None = None  # bytes dropped while over the limit

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held (or being discarded)."""
        return len(self._buf) if self._discarded is None else self._discarded

    def reset(self) -> None:
        """Drop any partial frame."""
        self._buf.clear()
        self._discarded = None

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Push received bytes; return the frames/errors they complete, in order."""
        out: list[Frame | FrameError] = []
        view = bytes(data)
        start = 0
        while start <= len(view):
            zero = view.find(0, start)
            chunk = view[start:] if zero < 0 else view[start:zero]
            if self._discarded is not None:
                self._discarded += len(chunk)
            else:
                self._buf += chunk
                if len(self._buf) > self.max_encoded:
                    self._discarded = len(self._buf)
                    self._buf.clear()
            if zero < 0:
                break
            if self._discarded is not None:
                out.append(
                    OversizeError(
                        f"frame of {self._discarded} wire bytes exceeds the limit of "
                        f"{self.max_encoded} (max payload {self.max_payload}); "
                        "it was discarded -- raise FrameReader max_payload if the device "
                        "really sends frames this large"
                    )
                )
                self._discarded = None
            elif self._buf:
                try:
                    out.append(decode_frame(bytes(self._buf), self.max_payload))
                except FrameError as e:
                    out.append(e)
                self._buf.clear()
            start = zero + 1
        return out
