"""Run a target's firmware in QEMU with its first UART on a TCP socket.

QEMU is started with `-serial tcp:127.0.0.1:PORT,server=on,wait=on,nodelay=on`, so
the CPU starts only once we are connected (no boot output lost) and Nagle does not
stall small frames. Semihosting is enabled: the firmware exits with its own exit
code and its fault handler's report reaches QEMU's stderr. A watchdog kills QEMU
once nothing has come from it for `timeout` seconds (a hung firmware; a long healthy
session is not cut off); QEMU is always killed on the way out.
"""

from __future__ import annotations

import re
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mcutl.errors import McutlError
from mcutl.link.transport import SerialTransport
from mcutl.targets import Target
from mcutl.toolchain import require_tool

_FAULT_RE = re.compile(r"mcutl: FAULT (\w+) ((?:\w+=0x[0-9a-f]+ ?)+)")


class QemuError(McutlError):
    """QEMU could not be started or did not behave."""


@dataclass(frozen=True)
class FaultReport:
    """The fault registers the firmware's fault handler printed (see fault.h)."""

    kind: str  # HardFault | MemManage | BusFault | UsageFault
    registers: dict[str, int]

    def __str__(self) -> str:
        regs = " ".join(f"{k}=0x{v:08x}" for k, v in self.registers.items())
        return f"{self.kind}: {regs}"


@dataclass(frozen=True)
class QemuResult:
    exit_code: int | None  # None: killed (timeout or closed by us before it exited)
    timed_out: bool
    fault: FaultReport | None
    stderr: str


def parse_fault(text: str) -> FaultReport | None:
    m = _FAULT_RE.search(text)
    if m is None:
        return None
    regs = {}
    for item in m.group(2).split():
        key, _, val = item.partition("=")
        regs[key] = int(val, 16)
    return FaultReport(kind=m.group(1), registers=regs)


def qemu_command(target: Target, elf: Path, serial_arg: str, icount: bool = False) -> list[str]:
    if target.qemu_machine is None:
        raise QemuError(
            f"target {target.name} has no QEMU model; run it on a board with --port DEV "
            "(targets with QEMU: see `mcutl targets`)"
        )
    cmd = [
        require_tool("qemu-system-arm"),
        "-M", target.qemu_machine,
        "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native",
        "-kernel", str(Path(elf).resolve()),
        "-serial", serial_arg,
    ]  # fmt: skip
    if icount:
        cmd += ["-icount", "shift=0"]
    return cmd


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QemuSession:
    """A running firmware in QEMU and the serial link to it.

    with QemuSession(target, elf) as q:
        q.transport.write(...)
    q.result  # exit code, fault report, stderr
    """

    def __init__(self, target: Target, elf: Path, timeout: float = 120.0, icount: bool = False,
                 cwd: Path | None = None):
        self.target = target
        self.elf = elf
        # QEMU's working directory: where semihosting files (the checkpoint store) go
        self.cwd = cwd if cwd is not None else Path(elf).parent
        self.timeout = timeout
        self.icount = icount
        self.result: QemuResult | None = None
        self._timed_out = threading.Event()

    def __enter__(self) -> QemuSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        # stderr (semihosting output, fault report) goes to a file: no pipe to drain.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _finish()
        last_error = ""
        for _attempt in range(5):  # the free port may be taken between probe and bind
            port = _free_port()
            serial_arg = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
            self.proc = subprocess.Popen(
                qemu_command(self.target, self.elf, serial_arg, self.icount),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                cwd=self.cwd,
                start_new_session=True,  # Ctrl-C reaches mcutl, which saves, then stops QEMU
            )
            try:
                self.transport = self._connect(port)
                break
            except McutlError as exc:
                last_error = str(exc)
                self.proc.kill()
                self.proc.wait()
        else:
            raise QemuError(f"could not start QEMU for {self.target.name}: {last_error}")
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        self._watchdog.start()

    def _connect(self, port: int) -> SerialTransport:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise QemuError(f"QEMU exited with code {self.proc.returncode}: {self._err()}")
            try:
                return SerialTransport(f"socket://127.0.0.1:{port}")
            except McutlError:
                time.sleep(0.02)
        raise QemuError("QEMU did not open its serial socket within 10 s")

    def _watch(self) -> None:
        """Kill QEMU once nothing has come from it for `timeout` seconds (a healthy
        session that keeps answering runs as long as it needs)."""
        while not self._stop.wait(min(0.25, self.timeout / 4)):
            if time.monotonic() - self.transport.last_rx >= self.timeout:
                self._timed_out.set()
                self.proc.kill()
                return

    def _err(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def wait(self, timeout: float = 10.0) -> QemuResult:
        """Wait for the firmware to exit by itself (e.g. after an EXIT request)."""
        try:
            code: int | None = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        return self._finish(code)

    def close(self) -> QemuResult:
        """Disconnect and stop QEMU (killing it if it has not exited)."""
        if self.result is not None:
            return self.result
        if hasattr(self, "transport"):
            self.transport.close()
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        return self._finish(code)

    def _finish(self, code: int | None) -> QemuResult:
        if self.result is not None:
            return self.result
        self._stop.set()
        if hasattr(self, "transport"):
            self.transport.close()
        timed_out = self._timed_out.is_set()
        if timed_out or (code is not None and code < 0):
            code = None
        err = self._err()
        self._stderr.close()
        self.result = QemuResult(
            exit_code=code, timed_out=timed_out, fault=parse_fault(err), stderr=err
        )
        return self.result


def run_to_exit(target: Target, elf: Path, timeout: float = 30.0) -> QemuResult:
    """Boot a firmware that needs no serial input and wait for its exit."""
    cmd = qemu_command(target, elf, "null")
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        err = (exc.stderr or b"").decode(errors="replace")
        return QemuResult(exit_code=None, timed_out=True, fault=parse_fault(err), stderr=err)
    err = proc.stderr.decode(errors="replace")
    return QemuResult(
        exit_code=proc.returncode, timed_out=False, fault=parse_fault(err), stderr=err
    )
