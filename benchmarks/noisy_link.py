"""On-device training over a noisy serial line: a FaultProxy between the host and QEMU.

    python benchmarks/noisy_link.py [--rates 0,0.005,0.01,0.02] [--steps 30] [--out r.json]

Compiles a small Rep-Net training build (TinyIMU1D, stm32f405; or reuses --build DIR),
runs the stream RESET, then per sample SAMPLE + STEP + DIGEST, then GET_PARAMS on the
host build (the reference), and the same stream in QEMU behind a FaultProxy that flips,
drops or duplicates each byte (both directions, the rate split evenly between the three)
for every rate. Prints a table and writes JSON (--out). "host-identical" means every
loss (its float32 bits), every DIGEST after every step and the parameters read back at
the end are identical to the host build's: no silent error, no step applied twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcutl.compile import BuildInfo  # noqa: E402
from mcutl.errors import McutlError  # noqa: E402
from mcutl.link import protocol as proto  # noqa: E402
from mcutl.link.fault_proxy import open_noisy_session  # noqa: E402
from mcutl.link.session import open_session  # noqa: E402
from mcutl.link.trainer import PARAMS, TrainDevice, params_crc  # noqa: E402
from mcutl.targets import load_target  # noqa: E402
from mcutl.verify.harness import random_samples  # noqa: E402

Record = tuple[int, int, bool, int, int, int]


def build(folder: Path) -> Path:
    """A TinyIMU1D training build in `folder` (compiled once, reused afterwards)."""
    if (folder / "build.json").exists():
        return folder
    import torch

    from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
    from mcutl.compile import compile_training

    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=1), seed=2), seed=3).eval()
    calib = np.random.default_rng(0).random((32, 6, 100), dtype=np.float32)
    compile_training(model, "stm32f405", folder, num_classes=4, calib=calib,
                     input_shape=(1, 6, 100), source_name="imu1d")
    return folder


def stream(dev: TrainDevice, xq: np.ndarray, y: np.ndarray,
           n_params: int) -> tuple[list[Record], int]:
    dev.reset()
    records: list[Record] = []
    for i in range(len(xq)):
        dev.sample(xq[i], int(y[i]))
        r = dev.step(update=i % 2 == 1)
        d = dev.digest()
        records.append((r.loss_bits, r.steps, r.updated, d.crc32, d.steps, d.updates))
    return records, params_crc(dev.get_block(PARAMS, n_params))


def measure(folder: Path, rates: list[float], steps: int, chunk: int, retries: int,
            timeout: float, seed: int) -> list[dict[str, Any]]:
    info = BuildInfo.load(folder)
    n_params = int(info.training["param_count"])
    xq, y = random_samples(info, steps, seed)
    with open_session(load_target("host"), folder / info.firmware["host"]) as s:
        want = stream(TrainDevice(s.device), xq, y, n_params)
        s.finish(0)
    rows = []
    for k, rate in enumerate(rates):
        row: dict[str, Any] = {"rate": rate, "steps": steps, "chunk": chunk, "error": None}
        t0 = time.perf_counter()
        got: tuple[list[Record], int] | None = None
        with open_noisy_session(load_target(info.target), folder / info.firmware["qemu"], rate,
                                seed=seed + k, timeout=timeout, retries=retries,
                                backoff=1.5) as s:
            dev = TrainDevice(s.device)
            dev.chunk = chunk
            t1 = time.perf_counter()
            try:
                got = stream(dev, xq, y, n_params)
            except (McutlError, proto.ProtocolError) as exc:
                row["error"] = str(exc)
            row["seconds"] = time.perf_counter() - t1
            row["seconds_with_boot"] = time.perf_counter() - t0
            st = s.device.stats
            proxy = s.qemu.proxy  # type: ignore[union-attr]
            if got is not None:
                s.finish(0)
        row.update(
            requests=st.requests, frames_sent=st.frames_out, retries=st.retries,
            retries_per_1000_frames=1000.0 * st.retries / max(st.frames_out, 1),
            bad_frames=st.bad_frames, resynced=st.resynced, framing_errors=st.framing_errors,
            stale_frames=st.stale_frames, timeouts=st.timeouts,
            retries_by_type={proto.MsgType(t).name: n for t, n in st.retries_by_type.items()},
            faults=proxy.stats() if proxy is not None else {},
            faults_injected=proxy.faults_injected if proxy is not None else 0,
            host_identical=got == want,
            steps_applied=got[0][-1][4] if got else None,
        )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="0,0.005,0.01,0.02",
                    help="per-byte fault probabilities, comma-separated")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=48, help="SAMPLE/GET_PARAMS bytes per frame")
    ap.add_argument("--retries", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=0.2, help="first wait per attempt, s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", type=Path, help="training build folder (compiled if missing)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(args.build or Path(tmp) / "imu1d")
        rows = measure(folder, rates, args.steps, args.chunk, args.retries, args.timeout,
                       args.seed)
    table = Table(title=f"Training over a noisy link: {args.steps} x (SAMPLE + STEP + DIGEST), "
                        f"{args.chunk} B chunks, stm32f405 in QEMU behind a FaultProxy")
    for col in ("fault rate", "steps", "frames sent", "retries", "per 1000 frames",
                "bad frames", "framing ERR", "timeouts", "faults", "seconds",
                "host-identical"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{100 * r['rate']:.1f} %", str(r["steps_applied"] or "-"), str(r["frames_sent"]),
            str(r["retries"]), f"{r['retries_per_1000_frames']:.0f}", str(r["bad_frames"]),
            str(r["framing_errors"]), str(r["timeouts"]), str(r["faults_injected"]),
            f"{r['seconds']:.1f}", "yes" if r["host_identical"] else "NO",
        )
    Console().print(table)
    for r in rows:
        if r["error"]:
            print(f"{100 * r['rate']:.1f} %: {r['error']}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
