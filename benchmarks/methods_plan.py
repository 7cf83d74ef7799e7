"""Every training method mcutl compiles, at a few sizes, on the example image backbone:
training SRAM, flash, MACs and a host accuracy estimate on real few-shot data.

    python benchmarks/methods_plan.py [--shots 20] [--budget 128K] [--out build/methods_plan]

The backbone is the README demo's TinyMBV2, pre-trained on MNIST-5k with pinned numerics
(cached); the task is scikit-learn's digits (other writers), ``--shots`` labelled samples
per class, of which `mcutl plan` holds 30 % out per class to measure each configuration
after 2 epochs of SGD (lr 0.01, momentum 0.9, batch 1) of its PyTorch reference on the same
int8 backbone. Memory comes from the real step compiler and arena planner (`mcutl plan`);
accuracy is a quick estimate, not the device's (see examples/ for on-device tables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.data import few_shot_split, load_digits28, load_mnist5k  # noqa: E402
from examples.pretrain import pretrained_mbv2  # noqa: E402
from mcutl.cli import main as mcutl_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=20)
    ap.add_argument("--budget", default="128K")
    ap.add_argument("--out", default="build/methods_plan")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = pretrained_mbv2(verbose=False)
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(out / "tinymbv2.onnx"),
                      dynamo=False)
    xm, _ = load_mnist5k()
    np.savez(out / "calib.npz", x=xm[:200])
    xd, yd = load_digits28()
    shots, _ = few_shot_split(yd, args.shots, seed=0)
    np.savez(out / "few_shot.npz", x=xd[shots], y=yd[shots])
    rc = mcutl_main(["plan", str(out / "tinymbv2.onnx"), "--target", "stm32f405",
                     "--num-classes", "10", "--calib", str(out / "calib.npz"),
                     "--budget", args.budget, "--data", str(out / "few_shot.npz"),
                     "-o", str(out)])
    print((out / "plan.md").read_text())
    return rc


if __name__ == "__main__":
    sys.exit(main())
