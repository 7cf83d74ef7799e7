"""Fuzz a generated firmware's frame parser and every request handler, built for the host
with ASan/UBSan.

    python benchmarks/fuzz_device.py [--frames N] [--seed S] [--build DIR]

Compiles a small Rep-Net training build and an inference build of the same model (host
target; or reuses --build DIR), rebuilds their firmware with -fsanitize=address,undefined,
and feeds each: valid-CRC frames of every request type with random and near-valid
payloads (wrong inner lengths, offsets past the input or the parameter block, labels out
of range, STEP / INFER / PROBE / RUN out of session order, random SET_PARAMS bytes),
frames of unknown types, and damaged wire bytes (flipped bits, cut frames, garbage).
Every request must be answered (a response or an ERROR frame) and the firmware must
keep running with nothing on stderr. Prints frames, answers by kind, crashes and hangs
(both must be 0).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcutl.link import protocol as proto  # noqa: E402
from mcutl.link.client import Device, LinkTimeoutError  # noqa: E402
from mcutl.link.transport import LinkClosedError, ProcessTransport  # noqa: E402

T = proto.MsgType
TRAIN_TYPES = [T.SAMPLE, T.STEP, T.INFER, T.GET_PARAMS, T.SET_PARAMS, T.DIGEST, T.STATS,
               T.RESET, T.PROBE, T.HELLO, T.ECHO]
INFER_TYPES = [T.RUN, T.HELLO, T.ECHO]


@dataclass
class FuzzReport:
    frames: int = 0  # requests sent (valid CRC or damaged)
    answers: Counter[str] = field(default_factory=Counter)  # "ok" or the ERROR code name
    crashes: int = 0  # the firmware exited or wrote to stderr (sanitizer report)
    hangs: int = 0  # a request without any answer
    problems: list[str] = field(default_factory=list)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def _near(rng: random.Random, size: int) -> int:
    """A number near an interesting boundary of ``size``."""
    return rng.choice([0, 1, size - 1, size, size + 1, size // 2, 2 * size, 0xFFFFFFFF,
                       0x7FFFFFFF, rng.randrange(0, max(1, 2 * size))]) & 0xFFFFFFFF


def payload_for(rng: random.Random, msg: int, input_bytes: int, param_bytes: int,
                max_payload: int) -> bytes:
    """A payload for ``msg``: random, or built from near-valid fields."""
    if rng.random() < 0.2:
        return rng.randbytes(rng.randrange(0, max_payload + 1))
    chunk = rng.randbytes(rng.choice([0, 1, 7, 64, rng.randrange(0, max_payload - 8)]))
    if msg == T.SAMPLE:
        return struct.pack("<i", rng.choice([0, 1, 2, -1, 3, 1000])) + _u32(
            _near(rng, input_bytes)) + chunk
    if msg == T.STEP:
        return _u32(rng.randrange(0, 8)) + bytes([rng.randrange(0, 256)])[: rng.choice([1, 1, 0])]
    if msg in (T.GET_PARAMS, T.PROBE):
        return bytes([rng.randrange(0, 4)]) + _u32(_near(rng, param_bytes)) + struct.pack(
            "<H", _near(rng, max_payload) & 0xFFFF)[: rng.choice([2, 2, 1])]
    if msg == T.SET_PARAMS:
        return bytes([rng.randrange(0, 4)]) + _u32(_near(rng, param_bytes)) + chunk
    if msg == T.RUN:
        return _u32(_near(rng, input_bytes)) + chunk
    return chunk[: rng.choice([0, 0, 3])]


def _answer(dev: Device, msg: int, payload: bytes, report: FuzzReport) -> None:
    report.frames += 1
    try:
        dev.request(msg, payload)
        report.answers["ok"] += 1
    except proto.DeviceError as exc:
        report.answers[proto.ErrorCode(exc.code).name if exc.code in
                       proto.ErrorCode._value2member_map_ else f"0x{exc.code:02x}"] += 1
    except LinkTimeoutError:
        report.hangs += 1
        report.problems.append(f"no answer to type 0x{msg:02x} payload {payload[:16].hex()}")


def _damaged(dev: Device, rng: random.Random, report: FuzzReport) -> None:
    """Damaged wire bytes, then an ECHO that must come back (the parser resynchronised)."""
    wire = bytearray(proto.encode_frame(rng.choice(TRAIN_TYPES), rng.randrange(0, 0xFFFF),
                                        rng.randbytes(rng.randrange(0, 64))))
    kind = rng.randrange(3)
    if kind == 0:
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(wire))
            wire[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        wire = wire[: rng.randrange(1, len(wire))]
    else:
        wire = bytearray(rng.randbytes(rng.randrange(1, 300)))
    dev.transport.write(bytes(wire) + b"\x00")
    report.frames += 1
    _answer(dev, T.ECHO, b"resync", report)


def fuzz(elf: Path, types: list[int], frames: int, seed: int, input_bytes: int,
         param_bytes: int) -> FuzzReport:
    rng = random.Random(seed)
    report = FuzzReport()
    transport = ProcessTransport([str(elf)])
    dev = Device(transport, timeout=5.0, retries=3)
    try:
        max_payload = dev.hello().max_payload
        while report.frames < frames:
            r = rng.random()
            if r < 0.1:
                _damaged(dev, rng, report)
            elif r < 0.15:  # an unknown or reserved type
                _answer(dev, rng.choice([0x04, 0x1A, 0x3F, 0x41, 0x7D]), rng.randbytes(8),
                        report)
            else:
                msg = rng.choice(types)
                _answer(dev, msg, payload_for(rng, msg, input_bytes, param_bytes,
                                              max_payload), report)
            if transport.proc.poll() is not None:
                break
    except LinkClosedError as exc:
        report.problems.append(str(exc))
    code = transport.close()
    err = transport.stderr_text() if transport.proc.stderr else ""
    if code != 0 or err.strip():
        report.crashes += 1
        report.problems.append(f"exit code {code}: {err[-2000:]}")
    return report


def sanitized_build(build: Path) -> Path:
    """The build's host firmware again, with ASan/UBSan (in build/asan/)."""
    from mcutl.compile import BuildInfo, firmware_spec
    from mcutl.targets import load_target
    from mcutl.toolchain import build_firmware

    info = BuildInfo.load(build)
    spec = firmware_spec(build, "firmware-asan", False, training=info.method != "none")
    spec.sanitize = True
    return build_firmware(load_target("host"), spec, build / "asan").elf


def make_builds(folder: Path) -> tuple[Path, Path]:
    """A TinyIMU1D training build and an inference build (host target), once."""
    import numpy as np
    import torch

    from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
    from mcutl.compile import compile_backbone, compile_training

    train_dir, infer_dir = folder / "train", folder / "infer"
    if not (train_dir / "build.json").exists() or not (infer_dir / "build.json").exists():
        torch.set_num_threads(1)
        model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
        calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
        compile_training(model, "host", train_dir, num_classes=3, calib=calib,
                         input_shape=(1, 6, 100))
        compile_backbone(model, "host", infer_dir, calib=calib, input_shape=(1, 6, 100))
    return train_dir, infer_dir


def run(folder: Path, frames: int, seed: int) -> dict[str, FuzzReport]:
    from mcutl.compile import BuildInfo

    train_dir, infer_dir = make_builds(folder)
    info = BuildInfo.load(train_dir)
    input_bytes = int(np_prod(info.input_shape_nhwc))
    param_bytes = 4 * int(info.training["param_count"])
    return {
        "training": fuzz(sanitized_build(train_dir), TRAIN_TYPES, frames, seed, input_bytes,
                         param_bytes),
        "inference": fuzz(sanitized_build(infer_dir), INFER_TYPES, max(1, frames // 4),
                          seed + 1, input_bytes, 0),
    }


def np_prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000, help="frames per training build "
                    "(a quarter of that for the inference build)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", type=Path, help="folder for the two builds (made if missing)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reports = run(args.build or Path(tmp), args.frames, args.seed)
    failed = False
    for name, rep in reports.items():
        answers = ", ".join(f"{k} {v}" for k, v in sorted(rep.answers.items()))
        print(f"{name}: {rep.frames} frames; answers: {answers}; crashes {rep.crashes}, "
              f"hangs {rep.hangs}")
        for p in rep.problems[:5]:
            print(f"  problem: {p}")
        failed = failed or bool(rep.crashes or rep.hangs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
