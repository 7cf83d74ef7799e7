"""The README's demo: an STM32F405 (in QEMU) that learns a new handwriting domain.

1. boot the firmware in QEMU and print the device's HELLO;
2. pre-train a MobileNetV2-style backbone on MNIST-5k (cached after the first run);
3. compile it with Rep-Net for stm32f405: frozen int8 backbone in flash, a small float
   side network and head trained on the device, one static arena (memory plan printed);
4. on the device in QEMU: accuracy on scikit-learn's digits (other writers, other capture
   chain) before learning, training on 5 labelled digits per class with the recipe of
   the examples' tables (`mcutl train`'s defaults: mini-batches of 8, a cosine decay of
   Rep-Net's default learning rate, 1600 samples), accuracy after.

Run with `make demo` (installs what is missing first) or `python examples/demo.py`
(`--seed N` picks another few-shot split). The pre-training is bit-identical on every
machine (examples/determinism.py): compare the printed backbone sha256.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.data import few_shot_split, load_digits28, load_mnist5k  # noqa: E402
from examples.determinism import state_dict_sha256  # noqa: E402
from examples.pretrain import float_accuracy, pretrained_mbv2  # noqa: E402
from mcutl.cli import main as mcutl_main  # noqa: E402
from mcutl.compile import compile_training  # noqa: E402
from mcutl.methods import get_method  # noqa: E402
from mcutl.methods.repnet import connectors_of  # noqa: E402
from mcutl.train.codegen import TrainOptions  # noqa: E402
from mcutl.train.loop import plot_losses, train  # noqa: E402
from mcutl.train.recipe import DEFAULT_BATCH, Recipe, default_epochs, over_run  # noqa: E402

BUILD = Path(__file__).resolve().parent.parent / "build" / "demo"
SHOTS, N_TEST = 5, 300


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The README demo: on-device learning in QEMU.")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the few-shot split of the sklearn digits (default 0)")
    args = ap.parse_args(argv)
    console = Console()
    console.rule("1. boot the STM32F405 firmware in QEMU and say HELLO")
    if mcutl_main(["ping", "--target", "stm32f405", "--qemu"]) != 0:
        return 1

    console.rule("2. pre-train the backbone on MNIST-5k (host, cached)")
    torch.set_num_threads(2)
    model = pretrained_mbv2()
    console.print(f"backbone sha256 {state_dict_sha256(model.state_dict())[:16]}",
                  highlight=False)
    xd, yd = load_digits28()
    console.print(f"float model on sklearn digits, no adaptation: "
                  f"{100 * float_accuracy(model, xd, yd):.1f} %")

    console.rule("3. compile with Rep-Net for stm32f405")
    xm, _ = load_mnist5k()
    t0 = time.perf_counter()
    info, tm, gen, _ = compile_training(
        model, "stm32f405", BUILD, num_classes=10, calib=xm[:200], input_shape=(1, 1, 28, 28),
        options=TrainOptions(lr=get_method("repnet").lr, momentum=0.9),
        head_from_classifier=True,
        source_name="TinyMBV2 pre-trained on MNIST-5k")
    plan = json.loads((BUILD / "plan.json").read_text())
    size = plan["firmware_size"]
    console.print(
        f"compiled in {time.perf_counter() - t0:.1f} s: connectors {connectors_of(tm)}, "
        f"{gen.param_count} trainable parameters\n"
        f"memory plan: arena peak {plan['peak_bytes']:,} B (lower bound "
        f"{plan['lower_bound_bytes']:,} B), parameters + gradients + momentum + runtime "
        f"{plan['static_bytes']:,} B, stack {plan['stack_bytes']:,} B "
        f"-> {plan['peak_bytes'] + plan['static_bytes'] + plan['stack_bytes']:,} of "
        f"{plan['sram_bytes']:,} B SRAM; flash {size['flash_used']:,} B "
        f"({BUILD / 'plan.png'})", highlight=False)

    console.rule("4. learn on the device (QEMU): 5 labelled digits per class")
    torch.set_num_threads(1)
    shots, rest = few_shot_split(yd, SHOTS, seed=args.seed)
    test = rest[np.random.default_rng(1).permutation(len(rest))[:N_TEST]]
    epochs = default_epochs(len(shots))
    recipe = over_run(Recipe(lr=info.training["options"]["lr"], momentum=0.9),
                      -(-epochs * len(shots) // DEFAULT_BATCH))
    res = train(BUILD, xd[shots], yd[shots], epochs=epochs, batch=DEFAULT_BATCH,
                eval_x=xd[test], eval_y=yd[test], qemu=True, recipe=recipe,
                progress=lambda k, n, loss: console.print(
                    f"  step {k}/{n} loss {loss:.3f}", highlight=False) if k % 200 == 0 else None)
    plot_losses(res, BUILD / "train.png", "digits on a (QEMU) STM32F405")
    assert res.acc_before is not None and res.acc_after is not None
    console.print(
        f"device accuracy on {N_TEST} held-out sklearn digits: before learning "
        f"{100 * res.acc_before:.1f} %, after learning on {len(shots)} samples x {epochs} "
        f"epochs (batch {DEFAULT_BATCH}, lr {recipe.lr:g} cosine): "
        f"{100 * res.acc_after:.1f} %  ({res.samples_per_s:.1f} samples/s over "
        f"QEMU's serial link; loss curve {BUILD / 'train.png'})", highlight=False)
    return 0 if res.acc_after > res.acc_before else 1


if __name__ == "__main__":
    sys.exit(main())
