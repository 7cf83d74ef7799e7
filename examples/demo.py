"""The README's demo: firmware for an STM32F405 in QEMU, end to end.

1. build the base firmware, boot it in QEMU, and print the device's HELLO;
2. compile the example MobileNetV2-style backbone (int8, flash tables, one arena);
3. run it in QEMU on 20 inputs and check every output against tflite-runtime.

Run with `make demo` (installs what is missing first) or `python examples/demo.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import TinyMBV2, randomize_batchnorm_stats, spread_init  # noqa: E402
from mcutl.cli import main as mcutl_main  # noqa: E402
from mcutl.compile import compile_backbone  # noqa: E402
from mcutl.run import prepare_inputs, run_build  # noqa: E402
from mcutl.tflite.oracle import run_tflite_ref  # noqa: E402

BUILD = Path(__file__).resolve().parent.parent / "build" / "demo"


def main() -> int:
    console = Console()
    console.rule("1. boot the STM32F405 firmware in QEMU and say HELLO")
    if mcutl_main(["ping", "--target", "stm32f405", "--qemu"]) != 0:
        return 1

    console.rule("2. compile the int8 backbone for stm32f405")
    model = randomize_batchnorm_stats(spread_init(TinyMBV2(seed=0))).eval()
    rng = np.random.default_rng(0)
    calib = rng.random((32, 1, 28, 28), dtype=np.float32)
    info, gen, _ = compile_backbone(model, "stm32f405", BUILD, calib=calib,
                                    input_shape=(1, 1, 28, 28), source_name="TinyMBV2")
    console.print((BUILD / "report.md").read_text(), markup=False, highlight=False)

    console.rule("3. run it in QEMU and compare with tflite-runtime (reference kernels)")
    x = rng.random((20, 1, 28, 28), dtype=np.float32)
    res = run_build(BUILD, x, qemu=True)
    tfl = (BUILD / "model.tflite").read_bytes()
    ref = np.concatenate([run_tflite_ref(tfl, [s[None]])[0] for s in prepare_inputs(info, x)])
    same = int((res.y == ref).all(axis=1).sum())
    ms = np.median(res.ticks) / 168e3
    console.print(f"device outputs equal to tflite-runtime: {same}/{len(x)} (bit-exact)")
    console.print(f"{gen.total_macs:,} MAC per inference; {ms:.1f} ms of QEMU time per "
                  "inference (emulated, not a real chip's speed: `benchmarks/backbone_cost.py` "
                  "counts instructions exactly)")
    return 0 if same == len(x) else 1


if __name__ == "__main__":
    sys.exit(main())
