"""Serial-link throughput to a device in QEMU (or on a board): ECHO in max-size frames.

    python benchmarks/link_throughput.py --target stm32f405 --kib 64 [--port DEV]

Prints a table and writes JSON (--out). Each request carries max_payload bytes to
the device and the same bytes back, so "host->device" counts payload bytes sent
per second of the whole exchange (both directions share the time).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mcutl.firmware import build_base
from mcutl.link.session import open_session
from mcutl.targets import load_target


def measure(target_name: str, kib: int, port: str | None, seed: int = 0) -> dict[str, float]:
    target = load_target(target_name)
    fw = build_base(target, semihosting=port is None)
    data = random.Random(seed).randbytes(kib * 1024)
    with open_session(target, fw.elf, qemu=port is None, port=port) as s:
        chunk = s.hello.max_payload
        t0 = time.perf_counter()
        for off in range(0, len(data), chunk):
            part = data[off : off + chunk]
            if s.device.echo(part) != part:
                raise SystemExit(f"echo mismatch at offset {off}")
        dt = time.perf_counter() - t0
        frames = -(-len(data) // chunk)
        wire_out = s.device.stats.bytes_out
        s.finish(0) if port is None else None
    return {
        "target": target_name,
        "link": port or "qemu",
        "payload_bytes": len(data),
        "frames": frames,
        "frame_payload": chunk,
        "seconds": dt,
        "host_to_device_Bps": len(data) / dt,
        "round_trip_Bps": 2 * len(data) / dt,
        "wire_bytes_out": wire_out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="stm32f405")
    ap.add_argument("--kib", type=int, default=64)
    ap.add_argument("--port")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    runs = [measure(args.target, args.kib, args.port, seed=i) for i in range(args.repeat)]
    table = Table(title=f"ECHO throughput, {args.kib} KiB, {args.target} via {runs[0]['link']}")
    for col in ("run", "s", "host->device B/s", "both ways B/s", "frames"):
        table.add_column(col)
    for i, r in enumerate(runs):
        table.add_row(
            str(i),
            f"{r['seconds']:.2f}",
            f"{r['host_to_device_Bps']:.0f}",
            f"{r['round_trip_Bps']:.0f}",
            str(r["frames"]),
        )
    Console().print(table)
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
