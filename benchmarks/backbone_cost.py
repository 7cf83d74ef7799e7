"""Cost and memory of the example int8 backbones on stm32f405 (QEMU `-icount shift=0`).

    python benchmarks/backbone_cost.py [--out results.json]

With -icount shift=0 one guest instruction takes 1 ns of virtual time, and SysTick
counts the 168 MHz core clock of that virtual time, so instructions = ticks * 1e9 /
clock_hz. The table gives instructions per MAC of the portable C kernels (no SIMD),
plus flash, arena and TFLite Micro's arena for the same .tflite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import (  # noqa: E402
    TinyIMU1D,
    TinyMBV2,
    randomize_batchnorm_stats,
    spread_init,
)
from mcutl.compile import compile_backbone  # noqa: E402
from mcutl.run import run_build  # noqa: E402
from mcutl.targets import load_target  # noqa: E402

MODELS = {"TinyMBV2 (1x28x28)": (TinyMBV2, (1, 1, 28, 28)),
          "TinyIMU1D (6x100)": (TinyIMU1D, (1, 6, 100))}


def measure(name: str, n: int, folder: Path) -> dict[str, object]:
    cls, shape = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=0))).eval()
    rng = np.random.default_rng(0)
    calib = rng.random((32, *shape[1:]), dtype=np.float32)
    info, gen, fws = compile_backbone(model, "stm32f405", folder, calib=calib,
                                      input_shape=shape, source_name=name)
    res = run_build(folder, rng.random((n, *shape[1:]), dtype=np.float32), qemu=True,
                    icount=True)
    clock = load_target("stm32f405").clock_hz
    instr = [t * 1e9 / clock for t in res.ticks]
    rep = json.loads((folder / "report.json").read_text())
    return {
        "model": name,
        "macs": gen.total_macs,
        "instructions": float(np.median(instr)),
        "instructions_per_mac": float(np.median(instr)) / gen.total_macs,
        "ticks_min_max": [min(res.ticks), max(res.ticks)],
        "weight_table_bytes": gen.weight_table_bytes,
        "raw_param_bytes": gen.raw_param_bytes,
        "arena_bytes": gen.plan.arena_size(),
        "arena_lower_bound": gen.plan.lower_bound(),
        "tflm_arena_bytes": rep["tflm_arena_bytes"],
        "flash_used": rep["firmware_size"]["flash_used"],
        "static_ram": rep["firmware_size"]["static_ram"],
        "compile_seconds": rep["compile_seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="inferences per model")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(MODELS):
            rows.append(measure(name, args.n, Path(tmp) / str(i)))
    table = Table(title="int8 backbones on stm32f405 (QEMU -icount shift=0)")
    cols = ("model", "MAC", "instr", "instr/MAC", "weights B", "raw B", "arena B",
            "bound B", "TFLM arena B", "flash B", "static RAM B", "compile s")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(
            str(r["model"]), f"{r['macs']:,}", f"{r['instructions']:,.0f}",
            f"{r['instructions_per_mac']:.2f}", f"{r['weight_table_bytes']:,}",
            f"{r['raw_param_bytes']:,}", f"{r['arena_bytes']:,}",
            f"{r['arena_lower_bound']:,}", f"{r['tflm_arena_bytes']:,}",
            f"{r['flash_used']:,}", f"{r['static_ram']:,}", f"{r['compile_seconds']}",
        )
    Console(width=200).print(table)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
