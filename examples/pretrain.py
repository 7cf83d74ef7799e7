"""Pre-train the examples' backbones (cached: a minute or two once per task).

Tasks (``--task``): ``mnist5k``, TinyMBV2 on MNIST-5k (the README demo); ``fashion04``,
TinyMBV2 on Fashion-MNIST classes 0-4 (examples/image_transfer: new classes 5-9 are
learnt on the device); ``watch``, TinyIMU1D on seglearn's smartwatch exercises
(examples/imu_personalization).

The training runs under examples/determinism.py's pinned settings (in a child process
unless this one started with them), so the cached weights are bit-identical on every
x86 CPU and for every thread count: `python -m examples.pretrain` prints their SHA-256.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from examples import determinism
from examples.backbones import TinyIMU1D, TinyMBV2
from examples.data import load_fashion_mnist, load_mnist5k, load_watch_windows, standardise

CACHE = Path(__file__).resolve().parent.parent / "build" / "cache"
# bump when the training (or its numerics) changes: old caches are then not reused
# (det1: pinned kernels, data order from a torch.Generator)
VERSION = "det1"
N_TRAIN, BATCH = 4500, 64
TASKS = ("mnist5k", "fashion04", "watch")
FASHION_PER_CLASS = 3000  # Fashion-MNIST 0-4: the first 3000 training images of each


def cache_path(epochs: int = 6, seed: int = 0, n_train: int = N_TRAIN,
               task: str = "mnist5k") -> Path:
    if not 1 <= n_train <= N_TRAIN:
        raise ValueError(f"n_train must be in 1..{N_TRAIN}, got {n_train}")
    if task != "mnist5k":
        return CACHE / f"{_arch(task)}_{task}_e{epochs}_s{seed}_{VERSION}.pt"
    n = "" if n_train == N_TRAIN else f"_n{n_train}"
    return CACHE / f"tinymbv2_mnist5k_e{epochs}_s{seed}{n}_{VERSION}.pt"


def _arch(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task {task!r}: choose one of {', '.join(TASKS)}")
    return "tinyimu1d" if task == "watch" else "tinymbv2"


def new_model(task: str, seed: int) -> nn.Module:
    """The task's backbone, initialised from ``seed``."""
    if task == "watch":
        return TinyIMU1D(num_classes=7, seed=seed)
    return TinyMBV2(num_classes=5 if task == "fashion04" else 10, seed=seed)


def source_data(task: str, n_train: int = N_TRAIN
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_held_out, y_held_out) of the task's source data."""
    if task == "mnist5k":
        x, y = load_mnist5k()
        return x[:n_train], y[:n_train], x[N_TRAIN:], y[N_TRAIN:]
    if task == "fashion04":
        x, y = load_fashion_mnist("train")
        pick = np.concatenate([np.flatnonzero(y == c)[:FASHION_PER_CLASS] for c in range(5)])
        pick = pick[np.random.default_rng(0).permutation(len(pick))]
        xt, yt = load_fashion_mnist("test")
        held = np.flatnonzero(yt < 5)
        return x[pick], y[pick], xt[held], yt[held]
    x, y, subject = load_watch_windows()
    x, _ = standardise(x)
    held = subject >= 9  # subjects 9 and 10 held out
    return x[~held], y[~held], x[held], y[held]


def pretrained(task: str, epochs: int, seed: int = 0, verbose: bool = True) -> nn.Module:
    """The task's backbone trained on its source data (cached, pinned numerics)."""
    path = cache_path(epochs, seed, N_TRAIN, task)
    if not path.is_file():
        if determinism.is_pinned_process():
            train_to_file(path, epochs, seed, N_TRAIN, verbose, task)
        else:
            _train_in_child(path, epochs, seed, N_TRAIN, verbose, silent=not verbose,
                            task=task)
    model = new_model(task, seed)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def pretrained_mbv2(epochs: int = 6, seed: int = 0, verbose: bool = True,
                    n_train: int = N_TRAIN) -> nn.Module:
    """TinyMBV2 trained on the first ``n_train`` of MNIST-5k (4500 train / 500 held out);
    cached by settings, trained under pinned (CPU- and thread-independent) numerics."""
    path = cache_path(epochs, seed, n_train)
    if not path.is_file():
        if determinism.is_pinned_process():
            train_to_file(path, epochs, seed, n_train, verbose)
        else:
            _train_in_child(path, epochs, seed, n_train, verbose, silent=not verbose)
    model = TinyMBV2(seed=seed)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _train_in_child(path: Path, epochs: int, seed: int, n_train: int, verbose: bool,
                    silent: bool = False, task: str = "mnist5k") -> None:
    determinism.run_pinned(
        ["-m", "examples.pretrain", "--task", task, "--epochs", str(epochs), "--seed",
         str(seed), "--n-train", str(n_train), "--out", str(path.resolve()), "--pinned-child",
         *([] if verbose else ["--quiet"])], quiet=silent)


def train_to_file(path: Path, epochs: int, seed: int, n_train: int, verbose: bool,
                  task: str = "mnist5k") -> str:
    """Train under :func:`determinism.pinned_torch`, save the state dict atomically to
    ``path`` and return its :func:`determinism.state_dict_sha256`."""
    if not determinism.is_pinned_process():
        raise RuntimeError("the pinned environment must be set when the process starts: "
                           "use examples.determinism.run_pinned")
    with determinism.pinned_torch():
        model = _train(epochs, seed, n_train, verbose, task)
    state = model.state_dict()
    sha = determinism.state_dict_sha256(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:  # a file object: the zip's records are then "archive/..."
        torch.save(state, f)
    os.replace(tmp, path)
    if verbose:
        print(f"pre-trained backbone: sha256 {sha} ({path.name})")
    return sha


def _train(epochs: int, seed: int, n_train: int, verbose: bool,
           task: str = "mnist5k") -> nn.Module:
    model = new_model(task, seed)
    x, y, xh, yh = source_data(task, n_train)
    n_train = len(y)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps = math.ceil(n_train / BATCH)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n_train, generator=gen)
        for i in range(0, n_train, BATCH):
            idx = perm[i: i + BATCH]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if verbose:
            acc = float_accuracy(model.eval(), xh, yh)
            print(f"pre-training on {task}: epoch {epoch + 1}/{epochs}, "
                  f"held-out accuracy {100 * acc:.1f} %", flush=True)
    return model.eval()


def float_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i: i + 1000])).argmax(1)
                          for i in range(0, len(x), 1000)])
        return float((pred.numpy() == y).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Pre-train TinyMBV2 on MNIST-5k under pinned numerics (run it as "
                    "`python -m examples.pretrain` from the repository root).")
    ap.add_argument("--task", choices=TASKS, default="mnist5k")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--out", type=Path, help="state dict file (default: the cache file)")
    ap.add_argument("--quiet", action="store_true", help="print only the SHA-256")
    ap.add_argument("--pinned-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    out = a.out or cache_path(a.epochs, a.seed, a.n_train, a.task)
    if not determinism.is_pinned_process():
        if a.pinned_child:  # started by run_pinned, yet the settings did not take
            print("not running with the pinned environment: "
                  + " ".join(f"{k}={v}" for k, v in determinism.PINNED_ENV.items()),
                  file=sys.stderr)
            return 2
        _train_in_child(out, a.epochs, a.seed, a.n_train, verbose=not a.quiet, task=a.task)
        return 0
    sha = train_to_file(out, a.epochs, a.seed, a.n_train, verbose=not a.quiet, task=a.task)
    if a.quiet:
        print(sha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
