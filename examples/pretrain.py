"""Pre-train the example TinyMBV2 backbone on MNIST-5k (cached: a few seconds once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from examples.backbones import TinyMBV2
from examples.data import load_mnist5k

CACHE = Path(__file__).resolve().parent.parent / "build" / "cache"


def pretrained_mbv2(epochs: int = 6, seed: int = 0, verbose: bool = True) -> nn.Module:
    """TinyMBV2 trained on MNIST-5k (4500 train / 500 held out); cached by settings."""
    path = CACHE / f"tinymbv2_mnist5k_e{epochs}_s{seed}.pt"
    model = TinyMBV2(seed=seed)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    torch.manual_seed(seed)
    x, y = load_mnist5k()
    xt, yt = torch.from_numpy(x[:4500]), torch.from_numpy(y[:4500])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * 71)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(yt))
        for i in range(0, len(perm), 64):
            idx = perm[i: i + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if verbose:
            model.eval()
            with torch.no_grad():
                acc = (model(torch.from_numpy(x[4500:])).argmax(1).numpy() == y[4500:]).mean()
            print(f"pre-training on MNIST-5k: epoch {epoch + 1}/{epochs}, "
                  f"held-out accuracy {100 * acc:.1f} %")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def float_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
