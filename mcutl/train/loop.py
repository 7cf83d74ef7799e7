"""`mcutl train`: stream a dataset to the device, which trains on it; measure accuracy on
the device before and after; pull the trained parameters back; plot the loss curve.

Nothing is lost silently: the device's guard rejects diverging steps (counted, and after
`max_rejected` in a row training stops); every `checkpoint_every` seconds the host pulls
the parameters, so that Ctrl-C, a training that diverged or a device that stopped
answering still leaves the newest parameters the host has and the loss history in the
build folder, with the command that continues from them (`init_from`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mcutl.errors import McutlError
from mcutl.link.session import open_session
from mcutl.link.trainer import PARAMS, StepResult, TrainDevice
from mcutl.run import check_model, firmware_for, prepare_inputs
from mcutl.train.guard import DEFAULT_MAX_REJECTED, RejectionCounter, TrainingDivergedError
from mcutl.train.recipe import Recipe
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
    rejected_samples: int = 0
    rejected_updates: int = 0
    link_payload: int = 0  # the chunk size the link ended with (smaller after damage)
    checkpoint: int = 0  # seq of the checkpoint saved on the device at the end (0: none)
    resumed_from: int = 0  # seq of the checkpoint training continued from (--resume)
    store_note: str = ""  # why nothing was saved on the device, if so


class TrainingStopped(McutlError):
    """Training ended early (Ctrl-C, divergence, a lost device); what the host had is saved
    and the message says where and how to continue."""

    def __init__(self, message: str, interrupted: bool = False) -> None:
        super().__init__(message)
        self.interrupted = interrupted  # Ctrl-C


@dataclass
class _Progress:
    """What the host has while training: the losses and the newest parameters pulled."""

    losses: list[float] = field(default_factory=list)
    theta: np.ndarray | None = None
    theta_at: int = 0  # samples trained when theta was pulled
    pulled_at: float = 0.0  # time.monotonic() of that pull
    device_checkpoint: int = 0  # seq of a checkpoint the device saved as training stopped


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


def state_to_theta(build: Path, state: dict[str, torch.Tensor], source: str) -> np.ndarray:
    """A state dict (``--save`` or an interrupted run's) as the device's parameter block;
    every tensor of the build must be there with its shape."""
    layout = _param_layout(build)
    theta = np.zeros(sum(p["count"] for p in layout), np.float32)
    for p in layout:
        if p["name"] not in state:
            raise McutlError(f"{source} has no parameter {p['name']!r}: it was not saved from "
                             f"this build ({build}); give a file written by `mcutl train "
                             f"{build} --save` or by an interrupted run of it")
        value = np.asarray(state[p["name"]], dtype=np.float32).reshape(-1)
        if value.size != p["count"]:
            raise McutlError(f"{source}: {p['name']} has {value.size} values, the build "
                             f"{p['count']}: it comes from another compile")
        if not np.isfinite(value).all():
            raise McutlError(f"{source}: {p['name']} holds non-finite values")
        theta[p["offset"]: p["offset"] + p["count"]] = value
    return theta


def load_state_file(build: Path, path: Path) -> np.ndarray:
    """``torch.load`` a state dict file and check it against the build."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise McutlError(f"cannot read {path} as a saved state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise McutlError(f"{path} is not a state dict (got {type(state).__name__})")
    return state_to_theta(build, state, str(path))


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
    max_rejected: int = DEFAULT_MAX_REJECTED,
    init_from: np.ndarray | None = None,
    checkpoint_every: float = 60.0,
    link_faults: float = 0.0,
    resume: bool = False,
    recipe: Recipe | None = None,
) -> TrainResult:
    """Train on the device; `progress(done, total, loss)` after every step. ``init_from``:
    a parameter block to start from (`load_state_file`) instead of the build's;
    ``resume``: continue from the newest checkpoint in the device's store instead;
    ``recipe``: the learning rate, schedule, mean or sum, clipping to train with (CONFIG;
    None: the build's defaults, or the checkpoint's when resuming). At the
    end the device saves its state as a checkpoint (if it has a store). Raises
    TrainingStopped (after saving what the host has) on Ctrl-C, divergence or a lost
    device."""
    info, tm = load_trainable(build)
    y, eval_y = check_train_call(info, x, y, eval_x, eval_y, tm.num_classes, epochs, batch)
    xq = prepare_inputs(info, x)
    eq = prepare_inputs(info, eval_x) if eval_x is not None else None
    target, elf = firmware_for(build, info, qemu=qemu, port=port)
    n_params = sum(p["count"] for p in _param_layout(build))
    rng = np.random.default_rng(seed)
    total = epochs * len(xq)
    have = _Progress()
    rejections = RejectionCounter(max_rejected)
    with open_session(target, elf, qemu=qemu, port=port, baud=baud, timeout=30.0,
                      link_faults=link_faults) as s:
        check_model(info, s.hello)
        dev = TrainDevice(s.device)
        resumed = _resume(dev, build) if resume else 0
        if not resume:
            dev.reset()
            # this run's start is the newest checkpoint: a reset before the first autosave
            # comes back here, not to an earlier run's state
            _save_on_device(dev)
        if init_from is not None:
            dev.set_block(PARAMS, init_from)
        if recipe is not None:
            dev.configure(recipe)
        before = evaluate(dev, eq, eval_y, tm.num_classes) if eq is not None else None
        t0 = have.pulled_at = time.perf_counter()
        k = 0
        try:
            for _ in range(epochs):
                for i in rng.permutation(len(xq)):
                    dev.sample(xq[i], int(y[i]))
                    k += 1
                    res = dev.step(update=k % batch == 0 or k == total)
                    have.losses.append(res.loss)
                    _count(rejections, res)
                    if progress is not None:
                        progress(k, total, res.loss)
                    if time.perf_counter() - have.pulled_at >= checkpoint_every:
                        _pull(dev, n_params, have)
            seconds = time.perf_counter() - t0
            after = evaluate(dev, eq, eval_y, tm.num_classes) if eq is not None else None
            theta = dev.get_block(PARAMS, n_params)
            saved, note = _save_on_device(dev)
            stats = dev.stats()
        except (TrainingDivergedError, McutlError, KeyboardInterrupt) as exc:
            if isinstance(exc, TrainingDivergedError | KeyboardInterrupt):
                # the device still answers: take its newest parameters
                with contextlib.suppress(McutlError, KeyboardInterrupt):
                    _pull(dev, n_params, have)
            if isinstance(exc, KeyboardInterrupt):  # a good state: keep it on the device too
                with contextlib.suppress(McutlError, KeyboardInterrupt):
                    have.device_checkpoint = _save_on_device(dev)[0]
            raise _stopped(build, have, total, exc) from exc
        retries = s.device.stats.retries
        payload = s.device.payload()
        if qemu or target.is_host:
            s.finish(0)
    sd = state_dict(build, theta)
    return TrainResult(
        losses=have.losses, acc_before=before, acc_after=after, samples=total,
        seconds=seconds, samples_per_s=total / max(seconds, 1e-9),
        params={k: v.numpy() for k, v in sd.items()}, stats=stats.__dict__, retries=retries,
        rejected_samples=stats.rejected_samples, rejected_updates=stats.rejected_updates,
        link_payload=payload, checkpoint=saved, resumed_from=resumed, store_note=note,
    )


def _resume(dev: TrainDevice, build: Path) -> int:
    """LOAD the device's newest checkpoint; its seq."""
    from mcutl.link import protocol as proto

    try:
        seq, _, _ = dev.load()
    except proto.DeviceError as exc:
        raise McutlError(f"--resume: the device has nothing to continue from ({exc.reason}); "
                         f"train without --resume, or give --init-from a state dict saved "
                         f"from {build}") from exc
    return seq


def _save_on_device(dev: TrainDevice) -> tuple[int, str]:
    """SAVE on the device: (seq, "") or (0, why not)."""
    from mcutl.link import protocol as proto

    try:
        return dev.save().seq, ""
    except proto.DeviceError as exc:
        return 0, exc.reason


def _count(rejections: RejectionCounter, res: StepResult) -> None:
    if res.sample_rejected:
        rejections.sample_rejected(res.loss)
    if res.update_rejected:
        rejections.update_rejected()
    elif res.updated:
        rejections.update_applied()


def _pull(dev: TrainDevice, n_params: int, have: _Progress) -> None:
    have.theta = dev.get_block(PARAMS, n_params)
    have.theta_at = len(have.losses)
    have.pulled_at = time.perf_counter()


def _stopped(build: Path, have: _Progress, total: int, exc: BaseException) -> TrainingStopped:
    """Save what the host has (newest parameters, losses, plot); the error to raise."""
    why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
    done = len(have.losses)  # samples the device answered
    saved = []
    losses_path = build / "train_losses.json"
    losses_path.write_text(json.dumps([float(v) for v in have.losses]))
    saved.append(f"the {len(have.losses)} losses in {losses_path}")
    resume = ""
    if have.theta is not None:
        path = build / "train_interrupted.pt"
        torch.save(state_dict(build, have.theta), path)
        saved.append(f"the parameters pulled after sample {have.theta_at} in {path}")
        resume = (f" Continue from them with `mcutl train {build} --data ... "
                  f"--init-from {path}` (the optimizer's momentum starts again).")
    else:
        saved.append("no parameters (none were pulled before it stopped)")
    if have.device_checkpoint:
        saved.append(f"and the device saved its state as checkpoint {have.device_checkpoint} "
                     "(`mcutl train --resume` continues from it)")
    return TrainingStopped(f"training stopped after {done} of {total} samples: {why}. "
                           f"Saved {'; '.join(saved)}.{resume}",
                           interrupted=isinstance(exc, KeyboardInterrupt))


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
