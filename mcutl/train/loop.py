"""`mcutl train`: stream a dataset to the device, which trains on it; measure accuracy on
the device before and after; pull the trained parameters back; plot the loss curve."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mcutl.link.session import open_session
from mcutl.link.trainer import PARAMS, TrainDevice
from mcutl.run import check_model, prepare_inputs
from mcutl.targets import load_target
from mcutl.validate import check_train_call
from mcutl.verify.harness import _param_layout, load_trainable


@dataclass
class TrainResult:
    losses: list[float]
    acc_before: float | None
    acc_after: float | None
    samples: int
    seconds: float
    samples_per_s: float
    params: dict[str, np.ndarray]
    stats: dict[str, int] = field(default_factory=dict)
    retries: int = 0


def evaluate(dev: TrainDevice, xq: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """Accuracy of the device's current parameters (INFER on each sample)."""
    if len(xq) == 0:
        return float("nan")
    correct = 0
    for x, label in zip(xq, y, strict=True):
        dev.sample(x, int(label))
        correct += int(np.argmax(dev.infer(num_classes)) == int(label))
    return correct / len(xq)


def state_dict(build: Path, theta: np.ndarray) -> dict[str, torch.Tensor]:
    """The parameter block as named tensors (the reference module's names and shapes)."""
    _, tm = load_trainable(build)
    shapes = dict(tm.parameters())
    out = {}
    for p in _param_layout(build):
        arr = theta[p["offset"]: p["offset"] + p["count"]].reshape(shapes[p["name"]].shape)
        out[p["name"]] = torch.from_numpy(arr.copy())
    return out


def load_state(ref: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict written by `mcutl train --save` into a TorchReference."""
    with torch.no_grad():
        for name, value in state.items():
            ref.param(name).copy_(value)  # type: ignore[operator]


def train(
    build: Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 1,
    batch: int = 1,
    eval_x: np.ndarray | None = None,
    eval_y: np.ndarray | None = None,
    qemu: bool = False,
    port: str | None = None,
    baud: int = 115200,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train on the device; `progress(done, total, loss)` after every step."""
    info, tm = load_trainable(build)
    y, eval_y = check_train_call(info, x, y, eval_x, eval_y, tm.num_classes, epochs, batch)
    xq = prepare_inputs(info, x)
    eq = prepare_inputs(info, eval_x) if eval_x is not None else None
    if port is None and not qemu:
        target, elf = load_target("host"), build / info.firmware["host"]
    else:
        target = load_target(info.target)
        elf = build / info.firmware["qemu" if qemu else "board"]
    n_params = sum(p["count"] for p in _param_layout(build))
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    total = epochs * len(xq)
    with open_session(target, elf, qemu=qemu, port=port, baud=baud, timeout=30.0) as s:
        check_model(info, s.hello)
        dev = TrainDevice(s.device)
        dev.reset()
        before = evaluate(dev, eq, eval_y, tm.num_classes) if eq is not None else None
        t0 = time.perf_counter()
        k = 0
        for _ in range(epochs):
            for i in rng.permutation(len(xq)):
                dev.sample(xq[i], int(y[i]))
                k += 1
                res = dev.step(update=k % batch == 0 or k == total)
                losses.append(res.loss)
                if progress is not None:
                    progress(k, total, res.loss)
        seconds = time.perf_counter() - t0
        after = evaluate(dev, eq, eval_y, tm.num_classes) if eq is not None else None
        theta = dev.get_block(PARAMS, n_params)
        stats = dev.stats()
        retries = s.device.stats.retries
        if qemu or target.is_host:
            s.finish(0)
    sd = state_dict(build, theta)
    return TrainResult(
        losses=losses, acc_before=before, acc_after=after, samples=total, seconds=seconds,
        samples_per_s=total / max(seconds, 1e-9),
        params={k: v.numpy() for k, v in sd.items()}, stats=stats.__dict__, retries=retries,
    )


def plot_losses(res: TrainResult, path: Path, title: str = "on-device training") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    losses = np.asarray(res.losses)
    ax.plot(losses, alpha=0.35, label="loss per sample")
    w = max(1, min(25, len(losses) // 10))
    if len(losses) >= w:
        ax.plot(np.arange(w - 1, len(losses)), np.convolve(losses, np.ones(w) / w, "valid"),
                label=f"moving average ({w})")
    ax.set_xlabel("step (sample)")
    ax.set_ylabel("softmax cross-entropy")
    acc = ""
    if res.acc_before is not None and res.acc_after is not None:
        acc = f"; accuracy {100 * res.acc_before:.1f} % -> {100 * res.acc_after:.1f} %"
    ax.set_title(f"{title}{acc}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
