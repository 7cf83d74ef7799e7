"""What the host learns about a link while it uses it: how long each request takes, and
how often a frame is damaged, so that timeouts and frame sizes follow the line without
user tuning.

- `Latency`: the slowest answer seen per request type; an attempt waits a few times
  that (never longer than the configured timeout, which stays the wait for a type not
  seen yet: the first STEP of a large model may take seconds).
- `LinkQuality`: a moving estimate of the per-byte damage rate from the attempts that
  failed and their sizes; `payload()` is the chunk size that carries the most data per
  second at that rate (a frame of n bytes survives with (1 - p)^n: the goodput
  n (1 - p)^n peaks at n = 1 / -ln(1 - p)), between MIN_PAYLOAD and the device's
  maximum. A clean line gets the maximum back as the estimate decays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Smallest chunk the link shrinks to (bytes of payload per frame).
MIN_PAYLOAD = 32
#: Weight of one attempt in the damage estimate (about the last 1/WEIGHT attempts count).
WEIGHT = 1.0 / 32.0
#: An attempt waits this many times the slowest answer seen for its type ...
LATENCY_FACTOR = 4.0
#: ... plus this much (scheduling jitter of the host, QEMU or a USB serial adapter).
LATENCY_SLACK = 0.3


@dataclass
class Latency:
    """The slowest answer seen per request type (seconds)."""

    slowest: dict[int, float] = field(default_factory=dict)

    def record(self, msg_type: int, seconds: float) -> None:
        self.slowest[msg_type] = max(self.slowest.get(msg_type, 0.0), seconds)

    def timeout(self, msg_type: int, default: float) -> float:
        """The first attempt's wait: LATENCY_FACTOR x the slowest answer seen + slack,
        at most ``default`` (which is also the wait for a type never answered yet)."""
        seen = self.slowest.get(msg_type)
        if seen is None:
            return default
        return min(default, LATENCY_FACTOR * seen + LATENCY_SLACK)


@dataclass
class LinkQuality:
    """A moving estimate of the link's per-byte damage rate."""

    failed: float = 0.0  # moving average of failed attempts (0..1)
    size: float = 0.0  # moving average of the wire bytes of an attempt (both ways)

    def record(self, failed_attempts: int, wire_bytes: int) -> None:
        """One request: ``failed_attempts`` attempts that needed a resend, then the one
        that got the answer (``wire_bytes``: request plus response on the wire)."""
        for bad in [1.0] * failed_attempts + [0.0]:
            self.failed += WEIGHT * (bad - self.failed)
            self.size += WEIGHT * (wire_bytes - self.size)

    def byte_error_rate(self) -> float:
        if self.failed <= 0.0 or self.size <= 0.0:
            return 0.0
        survive = max(1.0 - self.failed, 1e-6) ** (1.0 / self.size)
        return 1.0 - survive

    def payload(self, max_payload: int) -> int:
        """Payload bytes per frame for chunked transfers (a multiple of 16, at most the
        device's ``max_payload``)."""
        p = self.byte_error_rate()
        if p <= 0.0:
            return max_payload
        best = 1.0 / -math.log1p(-p)
        n = int(min(best, max_payload)) // 16 * 16
        return max(MIN_PAYLOAD, min(max_payload, n))
