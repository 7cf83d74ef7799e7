"""Pre-train the example TinyMBV2 backbone on MNIST-5k (cached: about a minute once).

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
from examples.backbones import TinyMBV2
from examples.data import load_mnist5k

CACHE = Path(__file__).resolve().parent.parent / "build" / "cache"
# bump when the training (or its numerics) changes: old caches are then not reused
# (det1: pinned kernels, data order from a torch.Generator)
VERSION = "det1"
N_TRAIN, BATCH = 4500, 64


def cache_path(epochs: int = 6, seed: int = 0, n_train: int = N_TRAIN) -> Path:
    if not 1 <= n_train <= N_TRAIN:
        raise ValueError(f"n_train must be in 1..{N_TRAIN}, got {n_train}")
    n = "" if n_train == N_TRAIN else f"_n{n_train}"
    return CACHE / f"tinymbv2_mnist5k_e{epochs}_s{seed}{n}_{VERSION}.pt"


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
                    silent: bool = False) -> None:
    determinism.run_pinned(
        ["-m", "examples.pretrain", "--epochs", str(epochs), "--seed", str(seed),
         "--n-train", str(n_train), "--out", str(path.resolve()), "--pinned-child",
         *([] if verbose else ["--quiet"])], quiet=silent)


def train_to_file(path: Path, epochs: int, seed: int, n_train: int, verbose: bool) -> str:
    """Train under :func:`determinism.pinned_torch`, save the state dict atomically to
    ``path`` and return its :func:`determinism.state_dict_sha256`."""
    if not determinism.is_pinned_process():
        raise RuntimeError("the pinned environment must be set when the process starts: "
                           "use examples.determinism.run_pinned")
    with determinism.pinned_torch():
        model = _train(epochs, seed, n_train, verbose)
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


def _train(epochs: int, seed: int, n_train: int, verbose: bool) -> nn.Module:
    model = TinyMBV2(seed=seed)
    x, y = load_mnist5k()
    xt, yt = torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])
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
            acc = float_accuracy(model.eval(), x[N_TRAIN:], y[N_TRAIN:])
            print(f"pre-training on MNIST-5k: epoch {epoch + 1}/{epochs}, "
                  f"held-out accuracy {100 * acc:.1f} %", flush=True)
    return model.eval()


def float_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Pre-train TinyMBV2 on MNIST-5k under pinned numerics (run it as "
                    "`python -m examples.pretrain` from the repository root).")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--out", type=Path, help="state dict file (default: the cache file)")
    ap.add_argument("--quiet", action="store_true", help="print only the SHA-256")
    ap.add_argument("--pinned-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    out = a.out or cache_path(a.epochs, a.seed, a.n_train)
    if not determinism.is_pinned_process():
        if a.pinned_child:  # started by run_pinned, yet the settings did not take
            print("not running with the pinned environment: "
                  + " ".join(f"{k}={v}" for k, v in determinism.PINNED_ENV.items()),
                  file=sys.stderr)
            return 2
        _train_in_child(out, a.epochs, a.seed, a.n_train, verbose=not a.quiet)
        return 0
    sha = train_to_file(out, a.epochs, a.seed, a.n_train, verbose=not a.quiet)
    if a.quiet:
        print(sha)
    return 0


if __name__ == "__main__":
    sys.exit(main())
