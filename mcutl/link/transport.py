"""Byte transports to a device: a serial port or QEMU socket (pyserial), or a host process.

One interface, documented failure modes:
- `write(data)` sends all bytes or raises LinkClosedError.
- `read_some(timeout)` returns at least one byte, or b"" when nothing arrived
  within `timeout` seconds; raises LinkClosedError when the peer has gone.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from abc import ABC, abstractmethod
from types import TracebackType

import serial

from mcutl.errors import McutlError


class LinkClosedError(McutlError):
    """The other end of the link went away (device reset, QEMU exited, process died)."""


class Transport(ABC):
    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read_some(self, timeout: float) -> bytes: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SerialTransport(Transport):
    """pyserial: `/dev/ttyACM0`, `COM3`, or `socket://127.0.0.1:PORT` (QEMU)."""

    def __init__(self, url: str, baudrate: int = 115200, connect_timeout: float = 0.0) -> None:
        self.url = url
        self._closed_error: LinkClosedError | None = None
        self.last_rx = time.monotonic()  # when a byte last arrived (or the link opened)
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._ser = serial.serial_for_url(url, baudrate=baudrate, timeout=0.05)
                break
            except (serial.SerialException, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise LinkClosedError(
                        f"cannot open serial link {url}: {exc}. Check the port name "
                        "(`ls /dev/ttyACM* /dev/ttyUSB*`) and that no other program holds it."
                    ) from exc
                time.sleep(0.02)

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
            self._ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise LinkClosedError(f"serial link {self.url} closed while writing: {exc}") from exc

    def read_some(self, timeout: float) -> bytes:
        # read(1), then what is waiting, one call at a time: pyserial's socket:// read(n)
        # drops partial data when the peer closes (see notes/qemu.md). Bytes that arrived
        # before the peer closed are returned first; the close is raised on the next call.
        if self._closed_error is not None:
            raise self._closed_error
        self._ser.timeout = timeout
        data = b""
        try:
            data = self._ser.read(1)
            while data and self._ser.in_waiting:
                data += self._ser.read(self._ser.in_waiting)
        except (serial.SerialException, OSError) as exc:
            self._closed_error = LinkClosedError(f"serial link {self.url} closed: {exc}")
            if not data:
                raise self._closed_error from exc
        if data:
            self.last_rx = time.monotonic()
        return data

    def close(self) -> None:
        self._ser.close()


class ProcessTransport(Transport):
    """The `host` build: the firmware's serial port is its stdin/stdout."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        # its own process group: a terminal's Ctrl-C reaches mcutl, which then still
        # talks to the firmware (pulls and saves what it learned) before closing it
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        self._out_fd = self.proc.stdout.fileno()

    def write(self, data: bytes) -> None:
        try:
            self._in.write(data)
            self._in.flush()
        except (BrokenPipeError, OSError) as exc:
            raise LinkClosedError(
                f"host firmware {self.argv[0]} exited (code {self.proc.poll()})"
            ) from exc

    def read_some(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._out_fd], [], [], timeout)
        if not ready:
            return b""
        data = os.read(self._out_fd, 65536)
        if not data:
            raise LinkClosedError(
                f"host firmware {self.argv[0]} closed its output (exit code {self.proc.poll()})"
            )
        return data

    def close(self, timeout: float = 5.0) -> int:
        """Close stdin (the firmware sees end of link) and wait; returns the exit code."""
        if not self._in.closed:
            with contextlib.suppress(OSError):
                self._in.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return code

    def stderr_text(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")
