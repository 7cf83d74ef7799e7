"""Fuzz the model importers: mutated .onnx and .tflite files must import or be refused
with an ``McutlError`` (a clear message), never crash with another exception.

    python benchmarks/fuzz_importers.py --n 2000 [--seed 0]

Mutations of a small valid model of each kind: truncations, random byte flips (1-8
bytes), random bytes, a random chunk duplicated or deleted. Prints, per format: files
tried, accepted, rejected with a clear error, crashes (must be 0); exits 1 on a crash.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from mcutl.errors import McutlError


def seed_onnx() -> bytes:
    """A small conv net (zero pad, conv, batchnorm, relu, zero pad, pool, linear) exported
    to ONNX (the pads as the exporter's ConstantOfShape/Slice/... arithmetic and Pad)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), f, dynamo=False)
    return f.getvalue()


def seed_tflite(onnx_bytes: bytes) -> bytes:
    """The same net quantised to int8 and exported as .tflite."""
    import numpy as np

    from mcutl.frontend.onnx_import import from_onnx
    from mcutl.quant.ptq import quantize
    from mcutl.tflite.export import export_tflite

    calib = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    return export_tflite(quantize(from_onnx(onnx_bytes), calib))


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of ``data``."""
    kind = rng.randrange(5)
    n = len(data)
    if kind == 0:  # truncation
        return data[: rng.randrange(n)]
    if kind == 1:  # byte flips
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(n)] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # random bytes, sometimes behind the original header
        junk = rng.randbytes(rng.randrange(1, 2 * n))
        return data[:8] + junk if rng.random() < 0.5 else junk
    a = rng.randrange(n)
    b_end = min(n, a + rng.randint(1, 64))
    if kind == 3:  # a chunk deleted
        return data[:a] + data[b_end:]
    return data[:b_end] + data[a:]  # a chunk duplicated


@dataclass
class FuzzResult:
    tried: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: list[str] = field(default_factory=list)


def fuzz(load: Callable[[bytes], object], data: bytes, n: int, seed: int = 0) -> FuzzResult:
    """Feed ``n`` mutations of ``data`` to ``load``; count outcomes (crash: any exception
    other than an McutlError, with its traceback)."""
    rng = random.Random(seed)
    res = FuzzResult()
    for _ in range(n):
        blob = mutate(data, rng)
        res.tried += 1
        try:
            load(blob)
        except McutlError:
            res.rejected += 1
        except Exception:  # noqa: BLE001 - the fuzzer's job: count whatever escapes
            res.crashes.append(traceback.format_exc(limit=-3))
        else:
            res.accepted += 1
    return res


def importers() -> dict[str, tuple[Callable[[bytes], object], bytes]]:
    from mcutl.frontend.onnx_import import from_onnx
    from mcutl.frontend.tflite_import import import_tflite

    onnx_seed = seed_onnx()
    return {"onnx": (from_onnx, onnx_seed), "tflite": (import_tflite, seed_tflite(onnx_seed))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="mutations per format")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    crashed = 0
    print(f"{'format':8} {'tried':>7} {'accepted':>9} {'rejected':>9} {'crashes':>8}")
    for name, (load, data) in importers().items():
        r = fuzz(load, data, args.n, args.seed)
        print(f"{name:8} {r.tried:7} {r.accepted:9} {r.rejected:9} {len(r.crashes):8}")
        for tb in r.crashes[:20]:
            print(tb, file=sys.stderr)
        crashed += len(r.crashes)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
