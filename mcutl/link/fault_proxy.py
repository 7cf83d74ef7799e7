"""A noisy serial line for tests: a TCP proxy that damages the bytes passing through it.

    host SerialTransport (socket://127.0.0.1:P) <-> FaultProxy <-> QEMU -serial tcp:...

Per byte and per direction independently the proxy flips one random bit, drops the
byte, or sends it twice, each with its own probability, from a random generator seeded
per direction (the same byte stream is damaged the same way every time). It counts what
it did. Loopback only; one client; threads that end by themselves when either side
closes, when `lifetime` seconds (if given) have passed, or on close(). Data is relayed in bounded
chunks with back-pressure (blocking sends), nothing is queued without limit.

`NoisyQemuSession` is a QemuSession whose serial link runs through a FaultProxy, and
`open_noisy_session()` the matching `open_session()` (HELLO handshake included).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from mcutl.errors import McutlError
from mcutl.link.client import DEFAULT_RETRIES, Device
from mcutl.link.handshake import Session, handshake
from mcutl.link.qemu import QemuResult, QemuSession
from mcutl.link.transport import SerialTransport
from mcutl.targets import Target

__all__ = [
    "DirectionStats",
    "FaultProxy",
    "FaultProxyError",
    "Faults",
    "NoisyQemuSession",
    "open_noisy_session",
]

_CHUNK = 4096  # bytes relayed per recv (bounded)
_POLL = 0.05  # seconds between checks of the stop flag


class FaultProxyError(McutlError):
    """The proxy could not reach its upstream or did not get its client."""


@dataclass(frozen=True)
class Faults:
    """Per-byte probabilities of each kind of damage (their sum must be <= 1)."""

    flip: float = 0.0  # one random bit of the byte inverted
    drop: float = 0.0  # the byte is lost
    dup: float = 0.0  # the byte arrives twice

    def __post_init__(self) -> None:
        for name in ("flip", "drop", "dup"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault probability {name}={v} outside 0..1")
        if self.total > 1.0 + 1e-12:
            raise ValueError(f"fault probabilities sum to {self.total} > 1")

    @classmethod
    def rate(cls, total: float) -> Faults:
        """`total` split evenly between flips, drops and duplicates."""
        return cls(total / 3, total / 3, total / 3)

    @property
    def total(self) -> float:
        return self.flip + self.drop + self.dup


@dataclass
class DirectionStats:
    """What the proxy did to one direction of the stream."""

    bytes_in: int = 0  # bytes read from the sender
    bytes_out: int = 0  # bytes written to the receiver
    flipped: int = 0
    dropped: int = 0
    duplicated: int = 0

    @property
    def faults(self) -> int:
        return self.flipped + self.dropped + self.duplicated


class _Mangler:
    """Applies Faults to a byte stream, deterministically for a given seed."""

    def __init__(self, faults: Faults, seed: str) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.stats = DirectionStats()

    def __call__(self, data: bytes) -> bytes:
        st = self.stats
        st.bytes_in += len(data)
        f = self.faults
        if f.total <= 0.0:
            st.bytes_out += len(data)
            return data
        flip, flip_drop, total = f.flip, f.flip + f.drop, f.total
        rnd = self.rng.random
        out = bytearray()
        for b in data:
            u = rnd()
            if u >= total:
                out.append(b)
            elif u < flip:
                out.append(b ^ (1 << self.rng.randrange(8)))
                st.flipped += 1
            elif u < flip_drop:
                st.dropped += 1
            else:
                out.append(b)
                out.append(b)
                st.duplicated += 1
        st.bytes_out += len(out)
        return bytes(out)


def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"FaultProxy only relays on the loopback interface, not to {host!r}")


class FaultProxy:
    """Relays one TCP client to `upstream_port` on 127.0.0.1, damaging bytes on the way.

    `to_device` applies to client -> upstream bytes, `to_host` to upstream -> client
    (default: the same as `to_device`). Connects upstream at once (retrying until
    `connect_timeout`, or until `alive()` turns False), then listens on an ephemeral
    loopback port (`port`, `url`) for the client.
    """

    def __init__(
        self,
        upstream_port: int,
        to_device: Faults | float = 0.0,
        to_host: Faults | float | None = None,
        *,
        seed: int = 0,
        upstream_host: str = "127.0.0.1",
        connect_timeout: float = 10.0,
        accept_timeout: float = 30.0,
        lifetime: float | None = 900.0,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        _check_loopback(upstream_host)
        down = Faults.rate(to_device) if isinstance(to_device, float | int) else to_device
        up = down if to_host is None else to_host
        up = Faults.rate(up) if isinstance(up, float | int) else up
        self.seed = seed
        self.to_device = _Mangler(down, f"{seed}:to_device")
        self.to_host = _Mangler(up, f"{seed}:to_host")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._end = math.inf if lifetime is None else time.monotonic() + lifetime
        self.error: str | None = None  # why the relay ended early, if it did

        self._upstream = self._connect(upstream_host, upstream_port, connect_timeout, alive)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.port = int(self._listener.getsockname()[1])
        self._socks += [self._upstream, self._listener]
        t = threading.Thread(
            target=self._serve, args=(accept_timeout,), name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._threads.append(t)
        t.start()

    # ------------------------------------------------------------------ public

    @property
    def url(self) -> str:
        """pyserial URL of the proxy's client side."""
        return f"socket://127.0.0.1:{self.port}"

    @property
    def faults_injected(self) -> int:
        return self.to_device.stats.faults + self.to_host.stats.faults

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            "to_device": {**asdict(self.to_device.stats), "faults": self.to_device.stats.faults},
            "to_host": {**asdict(self.to_host.stats), "faults": self.to_host.stats.faults},
        }

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def close(self, timeout: float = 2.0) -> None:
        """Stop relaying, close every socket and join the threads."""
        self._stop.set()
        self._close_all()
        for t in list(self._threads):
            if t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _connect(
        host: str, port: int, timeout: float, alive: Callable[[], bool] | None
    ) -> socket.socket:
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise FaultProxyError(f"the upstream at {host}:{port} went away before "
                                      "the proxy could connect")
            try:
                s = socket.create_connection((host, port), timeout=1.0)
            except OSError as exc:
                last = exc
                time.sleep(0.02)
                continue
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        raise FaultProxyError(f"could not connect to {host}:{port} within {timeout} s: {last}")

    def _close_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _serve(self, accept_timeout: float) -> None:
        deadline = min(time.monotonic() + accept_timeout, self._end)
        client: socket.socket | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL)
            except (OSError, ValueError):
                break
            if ready:
                try:
                    client, _ = self._listener.accept()
                except OSError:
                    break
                break
        if client is None:
            self.error = self.error or "no client connected"
            self._close_all()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stop.is_set():
                client.close()
                return
            self._socks.append(client)
        with contextlib.suppress(OSError):
            self._listener.close()  # one client only
        pumps = [
            threading.Thread(target=self._pump, args=(client, self._upstream, self.to_device),
                             name=f"fault-proxy-{self.port}-to-device", daemon=True),
            threading.Thread(target=self._pump, args=(self._upstream, client, self.to_host),
                             name=f"fault-proxy-{self.port}-to-host", daemon=True),
        ]
        self._threads += pumps
        for t in pumps:
            t.start()
        for t in pumps:
            while t.is_alive():
                t.join(_POLL)
                if time.monotonic() > self._end:
                    self.error = self.error or "lifetime reached"
                    self._stop.set()
                    self._close_all()
        self._close_all()  # both directions ended: the proxy stops by itself

    def _pump(self, src: socket.socket, dst: socket.socket, mangle: _Mangler) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([src], [], [], _POLL)
                if not ready:
                    continue
                data = src.recv(_CHUNK)
            except (OSError, ValueError) as exc:
                self._fail(f"receive failed: {exc}")
                return
            if not data:  # the sender closed: pass the end of stream on, keep the other way
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            out = mangle(data)
            try:
                if out:
                    dst.sendall(out)
            except (OSError, ValueError) as exc:
                self._fail(f"send failed: {exc}")
                return

    def _fail(self, why: str) -> None:
        if not self._stop.is_set():
            self.error = self.error or why
        self._stop.set()
        self._close_all()


class NoisyQemuSession(QemuSession):
    """A QemuSession whose serial link runs through a FaultProxy (`self.proxy`)."""

    def __init__(
        self,
        target: Target,
        elf: Path,
        to_device: Faults | float = 0.0,
        to_host: Faults | float | None = None,
        *,
        seed: int = 0,
        timeout: float = 120.0,
        icount: bool = False,
    ) -> None:
        super().__init__(target, elf, timeout=timeout, icount=icount)
        self.faults = (to_device, to_host)
        self.seed = seed
        self.proxy: FaultProxy | None = None

    def _connect(self, port: int) -> SerialTransport:
        if self.proxy is not None:  # an earlier start attempt
            self.proxy.close()
        self.proxy = FaultProxy(
            port, *self.faults, seed=self.seed, lifetime=None,  # ends with QEMU's socket
            alive=lambda: self.proc.poll() is None,
        )
        return SerialTransport(self.proxy.url, connect_timeout=5.0)

    def _finish(self, code: int | None) -> QemuResult:
        result = super()._finish(code)
        if self.proxy is not None:
            self.proxy.close()
        return result


@contextmanager
def open_noisy_session(
    target: Target,
    elf: Path,
    to_device: Faults | float = 0.0,
    to_host: Faults | float | None = None,
    *,
    seed: int = 0,
    timeout: float = 0.25,
    retries: int = DEFAULT_RETRIES,
    backoff: float = 1.5,
    qemu_timeout: float = 300.0,
    silence: float | None = None,
    adaptive: bool = False,
) -> Iterator[Session]:
    """`open_session(qemu=True)` through a FaultProxy: the device's link is noisy.

    `timeout`/`retries`/`backoff`/`silence`/`adaptive` configure the Device (see
    client.Device); the session's
    `qemu` is the NoisyQemuSession (its `proxy` counts the damage done).
    """
    q = NoisyQemuSession(target, elf, to_device, to_host, seed=seed, timeout=qemu_timeout)
    q.start()
    try:
        device = Device(q.transport, timeout=timeout, retries=retries, backoff=backoff,
                        silence=silence, adaptive=adaptive)
        hello = handshake(device, timeout=max(timeout, 0.5))
        yield Session(device=device, hello=hello, qemu=q)
    finally:
        q.close()
