"""MobileNetV2-w0.35 trains on a 128 KB STM32F405: the memory-aware Rep-Net, its SRAM
breakdown, and verify on the host build and in QEMU (issue 11's moonshot).

    python benchmarks/train_fit.py [--res 128,96] [--steps 10] [--no-qemu] [--out DIR]

torchvision's ``mobilenet_v2(width_mult=0.35)`` (examples/mlperf_tiny.py; random weights:
memory does not depend on them) with a 10-class head at 128x128 and 96x96 is compiled
for ``stm32f405`` with ``mcutl.methods.repnet.memory_aware``'s options (one connector,
width 0.125, module 0 on the pooled input, the head on the pooled 112-channel map) and
``--streaming max`` (the frozen forward before the connector runs band by band). For
each it prints the whole training step's SRAM, arena + parameters, gradients and
momentum + runtime + stack, against 120 KB (122,880 B) and the F405's 131,072 B, then
trains ``--steps`` samples with `mcutl verify` on the host build and in QEMU (every
loss and parameter digest equal to the host's). Writes ``train_fit.json`` in ``--out``.
The equivalent command line:

    mcutl compile mbv2.onnx --target stm32f405 --method repnet --num-classes 10 \\
        --stages convolution_50 --first-pool 32 --width 0.125 \\
        --cut convolution_50:pool --streaming max
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import randomize_batchnorm_stats, spread_init  # noqa: E402
from examples.mlperf_tiny import MobileNetV2  # noqa: E402
from mcutl.compile import compile_training, load_and_quantize  # noqa: E402
from mcutl.methods.repnet import RepNetSpec, memory_aware  # noqa: E402
from mcutl.train.codegen import TrainOptions  # noqa: E402
from mcutl.verify.harness import verify  # noqa: E402

TARGET = "stm32f405"
GOAL = 120 * 1024  # the budget for the whole step (TTE: 141 KB on a 320 KB part)


def build(res: int, out: Path) -> dict[str, Any]:
    """Compile the memory-aware Rep-Net of MobileNetV2-w0.35 at ``res`` into ``out``."""
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(MobileNetV2(0.35, 10), seed=1), seed=2)
    model.eval()
    shape = (1, 3, res, res)
    calib = np.random.default_rng(0).random((8, *shape[1:]), dtype=np.float32)
    options, cut = memory_aware(load_and_quantize(model, calib, shape))
    t0 = time.perf_counter()
    _, tm, gen, _ = compile_training(model, TARGET, out, num_classes=10, calib=calib,
                                     input_shape=shape, spec=RepNetSpec(**options), cut=cut,
                                     options=TrainOptions(lr=0.1), streaming="max",
                                     source_name=f"mobilenet_v2(width_mult=0.35) @{res}")
    plan = json.loads((out / "plan.json").read_text())
    params = gen.param_count
    return {
        "resolution": res, "options": options, "cut": cut,
        "compile_seconds": round(time.perf_counter() - t0, 1),
        "arena_bytes": plan["peak_bytes"], "arena_lower_bound_bytes": plan["lower_bound_bytes"],
        "trained_parameters": params,
        "parameter_bytes": 4 * params, "gradient_bytes": 4 * params,
        "optimizer_state_bytes": 4 * gen.opt_state_count,
        "runtime_bytes": plan["static_bytes"] - 4 * (2 * params + gen.opt_state_count),
        "stack_bytes": plan["stack_bytes"], "total_bytes": plan["total_bytes"],
        "sram_bytes": plan["sram_bytes"], "fits_goal": plan["total_bytes"] <= GOAL,
        "firmware_static_ram": plan["firmware_size"]["static_ram"],
        "flash_bytes": plan["firmware_size"]["flash_used"],
        "streamed_segments": len(plan["schedule"].get("segments", [])),
        "extra_macs": sum(s["extra_macs"] for s in plan["schedule"].get("segments", [])),
        "connectors": options["stages"], "macs_per_step": sum(
            c.macs for c in gen.program.ctx.calls),
    }


def check(out: Path, steps: int, qemu: bool) -> dict[str, Any]:
    """`mcutl verify` on the host build, then in QEMU against it."""
    t0 = time.perf_counter()
    host = verify(out, steps=steps, check_every=5)
    res: dict[str, Any] = {"host_passed": host.passed, "host_first_mismatch": host.first_mismatch,
                           "host_seconds": round(time.perf_counter() - t0, 1),
                           "max_grad_rel_err": host.max_grad_rel_err}
    if qemu:
        t0 = time.perf_counter()
        dev = verify(out, steps=steps, check_every=5, qemu=True, against=host.steps)
        res.update(qemu_passed=dev.passed, qemu_first_mismatch=dev.first_mismatch,
                   qemu_digests_equal=[r.digest for r in dev.steps] == [
                       r.digest for r in host.steps],
                   qemu_seconds=round(time.perf_counter() - t0, 1),
                   qemu_stack_unused=dev.stats.get("stack_unused"),
                   qemu_step_ticks=dev.stats.get("last_step_ticks"))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="128,96", help="input resolutions (default 128,96)")
    ap.add_argument("--steps", type=int, default=10, help="training steps verified")
    ap.add_argument("--no-qemu", action="store_true", help="verify on the host build only")
    ap.add_argument("--out", type=Path, default=Path("build/train_fit"))
    a = ap.parse_args(argv)
    console = Console()
    rows = []
    for res in (int(r) for r in a.res.split(",") if r):
        folder = a.out / f"mbv2_035_{res}"
        with console.status(f"compiling MobileNetV2-w0.35 @{res} for {TARGET}"):
            row = build(res, folder)
        with console.status(f"verifying {a.steps} training steps"):
            row.update(check(folder, a.steps, not a.no_qemu))
        rows.append(row)
    table = Table(title=f"MobileNetV2-w0.35, memory-aware Rep-Net, one training step on "
                        f"{TARGET} (bytes)")
    for col in ("", *(f"@{r['resolution']}" for r in rows)):
        table.add_column(col, justify="right" if col else "left")
    fields = [("arena (planned)", "arena_bytes"), ("arena lower bound", "arena_lower_bound_bytes"),
              ("parameters", "parameter_bytes"), ("gradients", "gradient_bytes"),
              ("momentum", "optimizer_state_bytes"), ("runtime", "runtime_bytes"),
              ("stack (reserved)", "stack_bytes"), ("total", "total_bytes"),
              ("trained parameters", "trained_parameters"), ("flash", "flash_bytes"),
              ("streamed segments", "streamed_segments"),
              ("MACs recomputed per step", "extra_macs"), ("MACs per step", "macs_per_step")]
    for label, key in fields:
        table.add_row(label, *(f"{r[key]:,}" for r in rows))
    table.add_row("<= 120 KB (122,880)", *("yes" if r["fits_goal"] else "NO" for r in rows))
    table.add_row("verify host", *("passed" if r["host_passed"] else "FAILED" for r in rows))
    if not a.no_qemu:
        table.add_row("verify QEMU (digests = host)", *(
            "passed" if r["qemu_passed"] and r["qemu_digests_equal"] else "FAILED"
            for r in rows))
    console.print(table)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "train_fit.json").write_text(json.dumps(rows, indent=1) + "\n")
    console.print(f"wrote {a.out / 'train_fit.json'}")
    ok = all(r["fits_goal"] and r["host_passed"] and r.get("qemu_passed", True) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
