"""A session with a device: its link and HELLO, and the handshake that opens it (shared by
`session.open_session` and the noisy-link proxy's `open_noisy_session`)."""

from __future__ import annotations

from dataclasses import dataclass

from mcutl.link import protocol as proto
from mcutl.link.client import Device, LinkTimeoutError
from mcutl.link.qemu import QemuResult, QemuSession
from mcutl.link.transport import ProcessTransport


@dataclass
class Session:
    device: Device
    hello: proto.Hello
    qemu: QemuSession | None = None
    host: ProcessTransport | None = None

    def finish(self, exit_code: int = 0) -> QemuResult | int | None:
        """Ask the firmware to exit and collect how it ended (QEMU result / host exit code)."""
        if self.qemu is not None:
            self.device.exit(exit_code)
            return self.qemu.wait()
        if self.host is not None:
            self.device.exit(exit_code)
            return self.host.close()
        return None


def handshake(device: Device, attempts: int = 10, timeout: float = 0.5) -> proto.Hello:
    """HELLO with short retries: bytes sent before the device enables its UART are lost.

    A lone 0x00 first ends any partial frame left on the line, so the device resyncs;
    every retransmission starts with one too. Frames before the HELLO answer (boot
    noise, ERRORs for flushed garbage) are discarded. At least `attempts` attempts of
    `timeout` seconds, more if the device is configured with more retries.
    """
    attempts = max(attempts, device.retries + 1)
    device.transport.write(b"\x00")
    try:
        return device.hello(timeout=timeout, retries=attempts - 1)
    except LinkTimeoutError:
        pass
    raise LinkTimeoutError(
        f"the device did not answer HELLO after {attempts} attempts of {timeout} s. "
        "Check that the firmware is flashed and running, the port and baud rate are right, "
        "and nothing else holds the port."
    )
