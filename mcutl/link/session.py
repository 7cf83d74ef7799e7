"""Open a link to a firmware wherever it runs: QEMU, a serial port, or the host build."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcutl.errors import McutlError
from mcutl.link.client import (
    LINK_BACKOFF,
    LINK_RETRIES,
    LINK_SILENCE,
    Device,
)
from mcutl.link.handshake import Session, handshake
from mcutl.link.qemu import QemuSession
from mcutl.link.transport import ProcessTransport, SerialTransport, Transport
from mcutl.targets import Target


@contextmanager
def open_session(
    target: Target,
    elf: Path,
    *,
    qemu: bool = False,
    port: str | None = None,
    baud: int = 115200,
    timeout: float = 5.0,
    qemu_timeout: float = 120.0,
    icount: bool = False,
    link_faults: float = 0.0,
    host_env: dict[str, str] | None = None,
) -> Iterator[Session]:
    """Start (QEMU/host) or connect to (port) the firmware and complete the HELLO handshake.

    Serial links (QEMU, boards) adapt to the line (client.Device: timeouts from the
    answers seen, frames shrunk after damage, resends while the device shows signs of
    life, an error after LINK_SILENCE s of silence). `timeout` is the longest wait for
    one answer. QEMU is killed after `qemu_timeout` s without a byte from it, not after
    a total time. ``link_faults`` (QEMU only, for testing) damages that fraction of the
    bytes both ways (flipped, dropped or doubled: link.fault_proxy).

    A training firmware keeps its checkpoints beside it: `mcutl.store` in the host
    build's folder (MCUTL_STORE_FILE; ``host_env`` adds or overrides variables), or in
    the QEMU firmware's folder (QEMU runs there; semihosting). A board uses its flash.
    """
    if port is None and not Path(elf).is_file():
        raise McutlError(f"firmware {elf} is missing; compile the build again (or copy the "
                         "whole build folder)")
    if link_faults:
        if not qemu or port is not None:
            raise McutlError("--link-faults damages the bytes of a QEMU link: use it with "
                             "--qemu")
        from mcutl.link.fault_proxy import open_noisy_session

        with open_noisy_session(target, elf, link_faults, timeout=timeout,
                                retries=LINK_RETRIES, backoff=LINK_BACKOFF,
                                qemu_timeout=qemu_timeout, silence=LINK_SILENCE,
                                adaptive=True) as noisy:
            yield noisy
        return
    q: QemuSession | None = None
    host: ProcessTransport | None = None
    transport: Transport
    if port is not None:
        transport = SerialTransport(port, baudrate=baud)
    elif target.is_host:
        env = {**os.environ, "MCUTL_STORE_FILE": str(Path(elf).resolve().parent / "mcutl.store"),
               **(host_env or {})}
        host = ProcessTransport([str(elf)], env=env)
        transport = host
    elif qemu:
        q = QemuSession(target, elf, timeout=qemu_timeout, icount=icount)
        q.start()
        transport = q.transport
    else:
        raise McutlError(
            f"no way to reach the {target.name} device: give --qemu (emulated) or "
            "--port DEV (a board)"
        )
    try:
        # the host build's pipe loses nothing: no retransmissions there
        if host is not None:
            device = Device(transport, timeout=timeout, retries=0)
        else:
            device = Device(transport, timeout=timeout, retries=LINK_RETRIES,
                            backoff=LINK_BACKOFF, silence=LINK_SILENCE, adaptive=True)
        hello = handshake(device)
        yield Session(device=device, hello=hello, qemu=q, host=host)
    finally:
        if q is not None:
            q.close()
        elif host is not None:
            host.close()
        else:
            transport.close()
