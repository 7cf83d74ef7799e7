"""The host side of a conversation with a device: requests, responses, timeouts.

`Device.request()` sends one frame and waits for the response with the same
sequence number. Responses to earlier (timed-out) requests are discarded by
sequence number; a frame that fails its check is counted and skipped (the
device's own check rejects corrupted requests with an ERROR frame).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from mcutl.errors import McutlError
from mcutl.link import protocol as proto
from mcutl.link.transport import Transport


class LinkTimeoutError(McutlError):
    """No valid response within the timeout (after all retries)."""


class DeviceFaultError(McutlError):
    """The device reported a fault exception and stopped."""

    def __init__(self, registers: dict[str, int]) -> None:
        self.registers = registers
        regs = " ".join(f"{k}=0x{v:08x}" for k, v in registers.items())
        super().__init__(f"device fault: {regs}")


_FAULT_FIELDS = ("exc", "pc", "lr", "psr", "cfsr", "hfsr", "mmfar", "bfar", "sp")


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    bad_frames: int = 0  # received frames that failed their check
    stale_frames: int = 0  # responses to earlier requests
    bytes_out: int = 0
    bytes_in: int = 0
    errors: list[str] = field(default_factory=list)


class Device:
    """A device (board, QEMU or host process) that speaks protocol v1."""

    def __init__(self, transport: Transport, timeout: float = 5.0, retries: int = 0) -> None:
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        self._rxbuf = bytearray()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        if self._seq == 0xFFFF:  # reserved for unsolicited frames (FAULT)
            self._seq = 0
        return self._seq

    def _read_frame(self, deadline: float) -> proto.Frame | None:
        """Next frame that passes its checks, or None at the deadline."""
        while True:
            idx = self._rxbuf.find(0)
            if idx >= 0:
                raw = bytes(self._rxbuf[:idx])
                del self._rxbuf[: idx + 1]
                if not raw:
                    continue
                try:
                    return proto.decode_frame(raw)
                except proto.ProtocolError as exc:
                    self.stats.bad_frames += 1
                    self.stats.errors.append(str(exc))
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            chunk = self.transport.read_some(min(left, 0.2))
            self.stats.bytes_in += len(chunk)
            self._rxbuf += chunk

    def request(self, msg_type: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send one request; return the response payload.

        Raises DeviceError (an ERROR frame: the device says why), DeviceFaultError,
        LinkTimeoutError, or LinkClosedError.
        """
        timeout = self.timeout if timeout is None else timeout
        self.stats.requests += 1
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            seq = self._next_seq()
            wire = proto.encode_frame(msg_type, seq, payload)
            self.transport.write(wire)
            self.stats.bytes_out += len(wire)
            deadline = time.monotonic() + timeout
            while (frame := self._read_frame(deadline)) is not None:
                if frame.type == proto.MsgType.FAULT:
                    values = struct.unpack("<9I", frame.payload[:36])
                    raise DeviceFaultError(dict(zip(_FAULT_FIELDS, values, strict=True)))
                if frame.seq != seq:
                    self.stats.stale_frames += 1
                    continue
                if frame.type == proto.MsgType.ERROR:
                    raise proto.DeviceError.from_frame(frame)
                if frame.type != proto.response_type(msg_type):
                    raise proto.UnexpectedFrameError(
                        f"response type 0x{frame.type:02x} does not answer request "
                        f"type 0x{msg_type:02x}",
                        frame,
                    )
                return frame.payload
        raise LinkTimeoutError(
            f"no response to request type 0x{msg_type:02x} within {timeout:.1f} s "
            f"({self.retries + 1} attempt(s)). Is the firmware running and is this the right "
            "port? For QEMU check that the firmware booted (`mcutl ping --qemu`)."
        )

    def hello(self, timeout: float | None = None) -> proto.Hello:
        return proto.Hello.parse(self.request(proto.MsgType.HELLO, b"", timeout))

    def echo(self, data: bytes) -> bytes:
        return self.request(proto.MsgType.ECHO, data)

    def exit(self, code: int = 0) -> None:
        """Ask the firmware to exit with code (QEMU and host builds end; boards reset)."""
        self.request(proto.MsgType.EXIT, bytes([code & 0xFF]))
