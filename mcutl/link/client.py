"""The host side of a conversation with a device: requests, responses, timeouts, retransmits.

`Device.request()` sends one frame and waits for the answer. On a noisy line it
retransmits (up to `retries` extra attempts):

- every attempt carries a fresh sequence number; the answer to *any* attempt of the
  outstanding request is accepted (all attempts carry the same bytes), frames with
  other sequence numbers are stale (answers to earlier requests) and are discarded;
- a received chunk that fails its checks is counted and skipped; if a valid frame is
  glued to the end of the garbage (a delimiter was lost) it is recovered;
- a damaged answer, an ERROR frame with a framing code (the device got a damaged
  request: BAD_COBS, TRUNCATED, OVERSIZE, BAD_CRC; their seq is only best-effort and is
  not looked at) or no answer within the timeout triggers a retransmission; only when
  all attempts are used up does it raise;
- other ERROR codes (UNKNOWN_TYPE, BAD_PAYLOAD, ...) raise DeviceError at once;
- a retransmission (and the request after one) starts with a lone 0x00, which ends any
  partial frame the device may hold (a request whose tail or delimiter was lost).

Retransmitting is safe only for idempotent requests: the device may act on a request
more than once (its answer was lost, or a late copy arrives). In protocol v1:

- HELLO, ECHO, DIGEST, STATS, INFER, GET_PARAMS, PROBE: read-only;
- SAMPLE (`i32 label | u32 offset | chunk`), SET_PARAMS (`u8 which | u32 offset |
  data`): write the same bytes to the same place again;
- RESET: resets to the same initial state again (and forgets the last step_id);
- STEP: carries a u32 step_id; a repeated id is answered from the device's cached
  response without training again. The device keeps only the *last* id, which is
  enough with one request in flight (copies of a request always arrive before the
  next request);

Not idempotent:

- EXIT: once the device has acted on it nothing answers a retransmission (QEMU/host:
  the link closes; a board resets and would exit again). It is still retransmitted
  (a damaged EXIT is answered with a framing ERROR), and `Device.exit()` treats a link
  that closes after the EXIT went out as done.
- RUN (inference builds, `u32 offset | chunk`): the chunk that completes the input runs
  the backbone, whose activations may overwrite the input in the arena; a repeated
  completing chunk computes on a damaged input (a different output). RUN is in
  `Device.repeat_unsafe`: it is retransmitted only after a framing ERROR (the device
  did not act on it); a lost or damaged answer raises RepeatUnsafeError (a
  LinkTimeoutError), and the caller must send the whole input again.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from mcutl.errors import McutlError
from mcutl.link import protocol as proto
from mcutl.link.adapt import Latency, LinkQuality
from mcutl.link.transport import LinkClosedError, Transport

__all__ = [
    "DEFAULT_RETRIES",
    "Device",
    "DeviceFaultError",
    "DeviceSilentError",
    "LinkStats",
    "LinkTimeoutError",
    "RepeatUnsafeError",
]

#: Retransmissions per request (a Device without `silence`). The host build's pipe is
#: lossless: open_session() uses 0 there.
DEFAULT_RETRIES = 8
#: Serial links (QEMU, boards) as open_session() sets them up: resend while the device
#: shows signs of life (any byte received) up to this many times, waiting longer after
#: each timeout; give up when it has been silent for LINK_SILENCE seconds.
LINK_RETRIES = 400
LINK_BACKOFF = 1.5
LINK_SILENCE = 10.0
#: How many problem descriptions LinkStats.errors keeps (the newest).
ERRORS_KEPT = 50
#: Longest wait for one attempt, as a multiple of the first attempt's timeout (backoff cap).
MAX_BACKOFF = 8.0
#: Requests that must not reach the device twice (module docstring): retransmitted only
#: after a framing ERROR, never after a lost or damaged answer.
REPEAT_UNSAFE: frozenset[int] = frozenset({proto.MsgType.RUN})


class LinkTimeoutError(McutlError):
    """No valid response within the timeout (after all retries)."""


class DeviceSilentError(LinkTimeoutError):
    """Nothing at all came from the device for `Device.silence` seconds."""


class RepeatUnsafeError(LinkTimeoutError):
    """A request in Device.repeat_unsafe lost its answer: it cannot be retransmitted, as
    the device may already have acted on it (RUN: send the whole input again)."""


class DeviceFaultError(McutlError):
    """The device reported a fault exception and stopped."""

    def __init__(self, registers: dict[str, int]) -> None:
        self.registers = registers
        regs = " ".join(f"{k}=0x{v:08x}" for k, v in registers.items())
        super().__init__(f"device fault: {regs}")


_REPEAT_UNSAFE_HINT = (
    "(RUN: the chunk that completes the input runs the model, which may overwrite the "
    "input in the arena.) Send the whole input again."
)
_FAULT_FIELDS = ("exc", "pc", "lr", "psr", "cfsr", "hfsr", "mmfar", "bfar", "sp")


@dataclass
class LinkStats:
    """Counters of one Device (cumulative over its requests)."""

    requests: int = 0  # calls of request()
    retries: int = 0  # retransmissions (attempts beyond the first), whatever the cause
    frames_out: int = 0  # request frames written, retransmissions included
    frames_in: int = 0  # frames received that passed their checks
    bad_frames: int = 0  # received chunks that failed their checks (skipped)
    resynced: int = 0  # valid frames recovered from the end of a damaged chunk
    stale_frames: int = 0  # valid frames answering an earlier request (discarded)
    timeouts: int = 0  # attempts that got no usable answer within their timeout
    framing_errors: int = 0  # device ERRORs with a framing code (it got a damaged request)
    bytes_out: int = 0
    bytes_in: int = 0
    retries_by_type: dict[int, int] = field(default_factory=dict)  # request type -> retries
    errors: list[str] = field(default_factory=list)  # the newest ERRORS_KEPT problems

    def note(self, what: str) -> None:
        self.errors.append(what)
        if len(self.errors) > ERRORS_KEPT:
            del self.errors[: len(self.errors) - ERRORS_KEPT]


def _cobs_starts(raw: bytes) -> list[int]:
    """Offsets > 0 in a delimiter-free chunk where a COBS encoding could start and end
    exactly at the chunk's end (its code-byte chain lands on len(raw)), ascending."""
    n = len(raw)
    ends = [False] * (n + 1)
    ends[n] = True
    for i in range(n - 1, 0, -1):
        nxt = i + raw[i]
        ends[i] = nxt <= n and ends[nxt]
    return [i for i in range(1, n - proto.OVERHEAD + 1) if ends[i]]


class Device:
    """A device (board, QEMU or host process) that speaks protocol v1.

    `timeout` is the wait for one attempt's answer; `retries` the extra attempts per
    request; after each timeout the next attempt waits `backoff` times longer (at most
    MAX_BACKOFF x timeout). `max_payload` is the device's (HELLO sets it): it bounds the
    resync search, and an OVERSIZE answer to a longer request is raised at once.
    `repeat_unsafe`: request types only retransmitted after a framing ERROR.

    With ``silence`` (seconds) a request also gives up as soon as nothing at all has
    come from the device for that long (and at least twice the first attempt's wait):
    a dead device is reported in seconds, a noisy but living one is retried up to
    ``retries`` times. With ``adaptive`` an attempt waits a few times the slowest answer
    seen for its request type (`adapt.Latency`) instead of ``timeout``, which stays the
    wait for a type not seen yet and the cap. `quality` estimates the line's damage rate;
    `payload()` is the chunk size for chunked transfers that it suggests.
    """

    def __init__(
        self,
        transport: Transport,
        timeout: float = 5.0,
        retries: int = DEFAULT_RETRIES,
        *,
        backoff: float = 1.0,
        max_payload: int = proto.MAX_PAYLOAD,
        silence: float | None = None,
        adaptive: bool = False,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if backoff < 1.0:
            raise ValueError(f"backoff must be >= 1.0, got {backoff}")
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_payload = max_payload
        self.repeat_unsafe = REPEAT_UNSAFE
        self.silence = silence
        self.adaptive = adaptive
        self.latency = Latency()
        self.quality = LinkQuality()
        self.stats = LinkStats()
        self._last_rx = 0.0  # time.monotonic() of the last byte received
        self._seq = 0
        self._rxbuf = bytearray()
        self._flush_next = False  # the device may hold a partial frame: send 0x00 first

    # ------------------------------------------------------------------ receiving

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        if self._seq == 0xFFFF:  # reserved for unsolicited frames (FAULT)
            self._seq = 0
        return self._seq

    def _decode(self, raw: bytes) -> proto.Frame | proto.FrameError:
        """Decode one delimiter-free chunk; on failure look for a valid frame at its end
        (garbage glued in front of a good frame: the delimiter before it was lost)."""
        try:
            return proto.decode_frame(raw)
        except proto.FrameError as exc:
            self.stats.bad_frames += 1
            self.stats.note(str(exc))
            window = proto.max_wire_size(self.max_payload)
            base = max(0, len(raw) - window)
            tail = raw[base:]
            for start in _cobs_starts(tail) if base == 0 else [0, *_cobs_starts(tail)]:
                try:
                    frame = proto.decode_frame(tail[start:])
                except proto.FrameError:
                    continue
                self.stats.resynced += 1
                return frame
            return exc

    def _pop_frame(self) -> proto.Frame | proto.FrameError | None:
        """The next complete chunk in the receive buffer, decoded; None if there is none."""
        while (idx := self._rxbuf.find(0)) >= 0:
            raw = bytes(self._rxbuf[:idx])
            del self._rxbuf[: idx + 1]
            if raw:
                return self._decode(raw)
        # no delimiter for longer than any frame: keep only what could still end one
        limit = proto.max_wire_size(proto.LEN_MAX)
        if len(self._rxbuf) > limit:
            del self._rxbuf[: len(self._rxbuf) - limit]
        return None

    def _next_frame(self, deadline: float) -> proto.Frame | proto.FrameError | None:
        """Next frame (or damaged chunk) received, or None at the deadline. Bytes that are
        already waiting are always looked at, even when the deadline has passed."""
        polled = False
        while True:
            item = self._pop_frame()
            if item is not None:
                return item
            left = deadline - time.monotonic()
            if left <= 0 and polled:
                return None
            chunk = self.transport.read_some(min(max(left, 0.0), 0.2))
            polled = True
            if chunk:
                self._last_rx = time.monotonic()
            self.stats.bytes_in += len(chunk)
            self._rxbuf += chunk

    # ------------------------------------------------------------------ requests

    def payload(self) -> int:
        """Payload bytes per frame for chunked transfers: the device's maximum on a clean
        line, less when frames get damaged (`adapt.LinkQuality`)."""
        return self.quality.payload(self.max_payload)

    def _send(self, wire: bytes) -> None:
        if self._flush_next:
            wire = b"\x00" + wire
            self._flush_next = False
        self.transport.write(wire)
        self.stats.frames_out += 1
        self.stats.bytes_out += len(wire)

    def request(
        self,
        msg_type: int,
        payload: bytes = b"",
        timeout: float | None = None,
        *,
        retries: int | None = None,
    ) -> bytes:
        """Send one request; return the response payload (retransmitting as needed).

        Raises DeviceError (an ERROR frame: the device says why; a framing ERROR only
        once all attempts are used up), DeviceFaultError, LinkTimeoutError, or
        LinkClosedError.
        """
        if timeout is None:
            # a request that must not be resent keeps the full wait: a short one would end
            # it (RUN: the chunk that completes the input runs the whole model)
            learn = self.adaptive and msg_type not in self.repeat_unsafe
            timeout = self.latency.timeout(msg_type, self.timeout) if learn else self.timeout
        retries = self.retries if retries is None else retries
        self.stats.requests += 1
        started = time.monotonic()
        want = proto.response_type(msg_type)
        seqs: set[int] = set()  # every attempt's seq: any of their answers will do
        wait = timeout
        last_framing: proto.DeviceError | None = None
        trouble = False
        unsafe = msg_type in self.repeat_unsafe
        bad_before = self.stats.bad_frames
        first_seq: int | None = None
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retries += 1
                by_type = self.stats.retries_by_type
                by_type[msg_type] = by_type.get(msg_type, 0) + 1
                self._flush_next = True
            seq = self._next_seq()
            seqs.add(seq)
            first_seq = seq if first_seq is None else first_seq
            wire = proto.encode_frame(msg_type, seq, payload)
            sent_at = time.monotonic()
            self._send(wire)
            can_retry = attempt < retries
            resend = False  # give up on this attempt once the frames received are looked at
            deadline = time.monotonic() + wait
            while True:
                item = self._next_frame(deadline)
                if item is None:
                    self._check_silence(msg_type, started, timeout, attempt)
                    if not resend:
                        self.stats.timeouts += 1
                        wait = min(wait * self.backoff, timeout * MAX_BACKOFF)
                        if unsafe and can_retry:
                            self._flush_next = True
                            raise RepeatUnsafeError(
                                f"no valid answer to request type 0x{msg_type:02x} within "
                                f"{timeout:.2f} s, and it must not be repeated once the "
                                f"device may have acted on it. {_REPEAT_UNSAFE_HINT}"
                            )
                    elif not can_retry and last_framing is not None:
                        raise last_framing
                    break
                if isinstance(item, proto.FrameError):
                    # most likely the answer, damaged (or garbage before it: on the last
                    # attempt, or for a request that must not be repeated, keep waiting
                    # for the answer until the deadline)
                    trouble = True
                    if can_retry and not resend and not unsafe:
                        resend, deadline = True, time.monotonic()
                    continue
                self.stats.frames_in += 1
                frame = item
                if frame.type == proto.MsgType.FAULT:
                    values = struct.unpack("<9I", frame.payload[:36].ljust(36, b"\0"))
                    raise DeviceFaultError(dict(zip(_FAULT_FIELDS, values, strict=True)))
                if frame.type == proto.MsgType.ERROR:
                    err = proto.DeviceError.from_frame(frame)
                    if err.framing:  # seq is only best-effort: never matched
                        self.stats.framing_errors += 1
                        self.stats.note(str(err))
                        last_framing, trouble = err, True
                        if err.code == proto.ErrorCode.OVERSIZE and (
                            len(payload) > self.max_payload
                        ):
                            raise err  # too big for the device: resending cannot help
                        if not resend:  # the device got a damaged request
                            resend, deadline = True, time.monotonic()
                        continue
                    if frame.seq in seqs:
                        raise err
                if frame.seq not in seqs:
                    self.stats.stale_frames += 1
                    trouble = True
                    continue
                if frame.type != want:
                    raise proto.UnexpectedFrameError(
                        f"response type 0x{frame.type:02x} does not answer request "
                        f"type 0x{msg_type:02x}",
                        frame,
                    )
                if unsafe and frame.seq != first_seq and self.stats.bad_frames > bad_before:
                    # an earlier copy may have been acted on too, its answer lost
                    self._flush_next = True
                    raise RepeatUnsafeError(
                        f"request type 0x{msg_type:02x} was resent after a framing ERROR and "
                        "a damaged frame arrived before the answer: the device may have "
                        f"acted on it twice. {_REPEAT_UNSAFE_HINT}"
                    )
                # a retransmission of this request may still be on its way: make the next
                # request start with a 0x00 in case it arrives damaged and unterminated
                self._flush_next = self._flush_next or attempt > 0 or trouble
                if attempt == 0:
                    self.latency.record(msg_type, time.monotonic() - sent_at)
                self.quality.record(attempt, len(wire) + proto.max_wire_size(
                    len(frame.payload)))
                return frame.payload
        self._flush_next = True
        self.quality.record(retries + 1, 2 * len(wire))
        also = f" The device last reported: {last_framing}." if last_framing else ""
        raise LinkTimeoutError(
            f"no valid response to request type 0x{msg_type:02x} after {retries + 1} "
            f"attempt(s) (first timeout {timeout:.2f} s; {self.stats.bad_frames} damaged "
            f"frame(s) so far). Is the firmware running and is this the right port? For "
            "QEMU check that the firmware booted (`mcutl ping --qemu`); a board: check the "
            "cable, the baud rate (--baud) and that no other program holds the port. "
            f"(Frames already shrink and retries grow on a noisy line by themselves.){also}"
        )

    def _check_silence(self, msg_type: int, started: float, first_wait: float,
                       attempt: int) -> None:
        """With `silence`: raise once nothing has come from the device for that long."""
        if self.silence is None:
            return
        now = time.monotonic()
        quiet = now - max(started, self._last_rx)
        # a device busy for longer than it ever was (a first step, a save) is not silent
        slowest = max(self.latency.slowest.values(), default=0.0)
        if quiet < max(self.silence, 2.0 * first_wait, 3.0 * slowest):
            return
        self._flush_next = True
        self.quality.record(attempt + 1, 0)
        raise DeviceSilentError(
            f"the device stopped answering: nothing received for {quiet:.1f} s (request "
            f"type 0x{msg_type:02x}, {attempt + 1} attempt(s)). In QEMU the firmware may "
            "have exited or hung; a board may have reset, lost power or its USB cable: "
            "check it, then `mcutl ping` it. Training stopped here; what the host has is "
            "saved (see the message below, if any).")

    def hello(self, timeout: float | None = None, *, retries: int | None = None) -> proto.Hello:
        h = proto.Hello.parse(self.request(proto.MsgType.HELLO, b"", timeout, retries=retries))
        self.max_payload = h.max_payload
        return h

    def echo(self, data: bytes) -> bytes:
        return self.request(proto.MsgType.ECHO, data)

    def exit(self, code: int = 0) -> None:
        """Ask the firmware to exit with code (QEMU and host builds end; boards reset).

        EXIT is the one request that is not idempotent: once the device has acted on it
        nothing answers a retransmission. A link that closes after the EXIT went out is
        therefore taken as the device having exited.
        """
        sent = self.stats.frames_out
        try:
            self.request(proto.MsgType.EXIT, bytes([code & 0xFF]))
        except LinkClosedError:
            if self.stats.frames_out == sent:
                raise
