"""Image transfer on the device: accuracy tables for every method mcutl compiles.

- **new classes** (the headline): TinyMBV2 pre-trained on Fashion-MNIST classes 0-4
  (T-shirt, trouser, pullover, dress, coat), adapted on the device to classes 5-9
  (sandal, shirt, sneaker, bag, ankle boot) from k = 5 or 20 labelled images per class;
  the head starts new (5 outputs). Test: 1000 Fashion-MNIST test images of classes 5-9.
- **new writers**: TinyMBV2 pre-trained on MNIST-5k (the README demo's backbone), adapted
  to scikit-learn's digits (other writers, another capture chain); the head starts from
  the backbone's own classifier. Test: 500 digits no run trains on.

`python examples/image_transfer/run.py` (about 20 minutes on 2 cores; pre-training
cached in build/cache) writes results.md, results.json and results.png here.
examples/transfer_table.py says how the runs are made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from examples.data import load_digits28, load_fashion_mnist, load_mnist5k  # noqa: E402
from examples.pretrain import pretrained, pretrained_mbv2, source_data  # noqa: E402
from examples.transfer_table import Task, cli  # noqa: E402

FASHION_EPOCHS = 4
POOL_PER_CLASS, TEST_PER_CLASS = 500, 200


def new_classes() -> Task:
    model = pretrained("fashion04", FASHION_EPOCHS)
    calib = source_data("fashion04")[0][:200]
    x, y = load_fashion_mnist("train")
    pool = np.concatenate([np.flatnonzero(y == c)[:POOL_PER_CLASS] for c in range(5, 10)])
    xt, yt = load_fashion_mnist("test")
    test = np.concatenate([np.flatnonzero(yt == c)[:TEST_PER_CLASS] for c in range(5, 10)])
    return Task("fashion_new_classes", "Fashion-MNIST: pre-trained on classes 0-4, "
                "learns classes 5-9 on the device", model, 5, "new", calib, (1, 1, 28, 28),
                x[pool], y[pool] - 5, xt[test], yt[test] - 5, ks=(5, 20), seeds=(0, 1, 2),
                source="Fashion-MNIST 0-4")


def new_writers() -> Task:
    model = pretrained_mbv2(verbose=False)
    xm, _ = load_mnist5k()
    xd, yd = load_digits28()
    order = np.random.default_rng(7).permutation(len(yd))
    test, pool = order[:500], order[500:]
    return Task("digits_new_writers", "MNIST-5k -> scikit-learn digits (same classes, "
                "new writers)", model, 10, "classifier", xm[:200], (1, 1, 28, 28),
                xd[pool], yd[pool], xd[test], yd[test], ks=(5, 20), seeds=(0, 1, 2),
                source="MNIST-5k")


def note(task: Task) -> str:
    if task.key == "fashion_new_classes":
        return ("TinyMBV2 (24 k parameters, int8) pre-trained on Fashion-MNIST classes 0-4; "
                "the device learns the 5 new classes 5-9 with a new head.")
    return ("TinyMBV2 pre-trained on MNIST-5k; the device adapts it to scikit-learn's "
            "digits, its head starting from the backbone's classifier.")


def main(argv: list[str] | None = None) -> int:
    return cli("Accuracy tables: image transfer on the device.", Path(__file__).resolve(),
               lambda: [new_classes(), new_writers()], note, argv)


if __name__ == "__main__":
    sys.exit(main())
