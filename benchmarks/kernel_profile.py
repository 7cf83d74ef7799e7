"""Instructions per int8 MAC of the backbone kernels, per layer, under QEMU `-icount`.

    python benchmarks/kernel_profile.py [--kernels portable|dsp] [--json out.json]

Compiles a training build (repnet, stm32f405) of the two example backbones and of the
MLPerf-Tiny DS-CNN KWS, runs `mcutl profile` on each, and prints the forward int8 kernel
calls (convolutions, depthwise, fully connected) with their instructions per MAC, and the
int8 forward (every forward call of the backbone: its instructions over the MACs of its
conv/fc layers); "whole forward" adds the training method's side network and masks.
Layer names print the vertical stride only (TinyIMU1D's features.1.0 and features.2.0
have stride 2 along their width).
``--kernels`` overrides the target's kernel set (`kernels` in target.toml) for a
before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import (  # noqa: E402
    TinyIMU1D,
    TinyMBV2,
    randomize_batchnorm_stats,
    spread_init,
)
from examples.mlperf_tiny import DSCNNKWS  # noqa: E402
from mcutl.compile import compile_training  # noqa: E402
from mcutl.profile import profile  # noqa: E402
from mcutl.train.codegen import TrainOptions  # noqa: E402

MODELS: dict[str, tuple[Any, tuple[int, ...], int]] = {
    "TinyIMU1D": (TinyIMU1D, (1, 6, 100), 3),
    "TinyMBV2": (TinyMBV2, (1, 1, 28, 28), 10),
    "DSCNN-KWS": (DSCNNKWS, (1, 1, 49, 10), 12),
}


def measure(name: str, folder: Path, kernels: str | None) -> dict[str, Any]:
    cls, shape, classes = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=0))).eval()
    calib = np.random.default_rng(0).standard_normal((16, *shape[1:]), dtype=np.float32)
    extra = {} if kernels is None else {"kernels": kernels}
    compile_training(model, "stm32f405", folder, num_classes=classes, calib=calib,
                     input_shape=shape, options=TrainOptions(lr=0.01, autosave=0), **extra)
    rep = profile(folder, steps=2)
    fwd = [r for r in rep.rows if r.phase == "forward"]
    # the backbone's int8 calls ("conv2d 'features.1.0' ..."), not the side network's
    int8 = [r for r in fwd if re.match(r"\w+ '", r.what)]
    layers = [{"what": r.what, "macs": r.macs, "instructions": r.instructions,
               "per_mac": r.per_mac} for r in int8 if r.macs]
    return {"model": name, "layers": layers,
            "forward_instructions": sum(r.instructions for r in int8),
            "forward_macs": sum(r.macs for r in int8),
            "forward_all_instructions": sum(r.instructions for r in fwd),
            "step_instructions": rep.total()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            res = measure(name, Path(tmp) / name, args.kernels)
            results.append(res)
            print(f"== {name} ({args.kernels or 'target default'} kernels)")
            for lay in res["layers"]:
                print(f"  {lay['per_mac']:6.2f} instr/MAC {lay['macs']:>9,} MAC  {lay['what']}")
            fw = res["forward_instructions"] / res["forward_macs"]
            print(f"  int8 forward: {res['forward_instructions']:,.0f} instructions, "
                  f"{res['forward_macs']:,} MAC, {fw:.2f} instr/MAC; whole forward "
                  f"{res['forward_all_instructions']:,.0f}, step "
                  f"{res['step_instructions']:,.0f} instructions", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
