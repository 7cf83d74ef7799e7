"""`mcutl verify`: the device trains, the host checks it step by step.

Per step: SAMPLE + STEP on the device (host build, QEMU or a board); the same sample
through the PyTorch reference (`TorchReference`) with the same optimizer. The verdict
depends on the math, not on the host CPU:
- int8 values computed from floats (the requantisation points, e.g. Rep-Net's
  connectors): before each STEP the device's values are read (PROBE: a CRC first, the
  values only when it differs from the reference's) and the reference uses them as
  given; every difference from its own rounding must be a rounding tie, and there may
  be at most a bounded number of them (`flips.py`). Their count is reported;
- losses: device vs reference within `loss_rtol` (relative, with an absolute floor
  `loss_atol`) at every step;
- gradients: at checkpoint steps the device's parameters are loaded into the
  reference (same parameters, same sample), the device accumulates gradients
  without updating, and every trainable tensor's gradient must match autograd
  within `grad_rtol` (norm-wise relative error per tensor, with an absolute floor of
  `grad_atol` RMS per element);
- with `against` (another device run, e.g. the host build): losses bit-identical and
  parameter digests equal after every step.
Mini-batches and the recipe: the device reports each update's learning rate (its
schedule) and gradient factor (the mean over the mini-batch, clipping); the reference
uses them as given and they must be what the recipe says (`_apply_recipe`). The first step and
tensor that differ are named; the result goes to verify.json.
"""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcutl.compile import BuildInfo
from mcutl.errors import McutlError
from mcutl.ir.trainable import TrainableModel, restore
from mcutl.link import protocol as proto
from mcutl.link.session import open_session
from mcutl.link.trainer import GRADS, OPT_STATE, PARAMS, TrainDevice, params_crc
from mcutl.ops.f32 import get_float_op
from mcutl.run import check_model, firmware_for, prepare_inputs
from mcutl.train.guard import (
    DEFAULT_MAX_REJECTED,
    RejectionCounter,
    TrainingDivergedError,
    guarded_step,
    loss_ok,
)
from mcutl.train.recipe import Recipe
from mcutl.validate import check_verify_call
from mcutl.verify.flips import DEFAULT_MARGIN, DEFAULT_MAX_FRACTION, FlipCheck, check_flips


class VerifyError(McutlError):
    """The device disagrees with the reference (or another device)."""


@dataclass
class StepRecord:
    step: int
    label: int
    loss_device: float
    loss_device_bits: int
    loss_reference: float
    loss_rel_err: float
    digest: int
    grad_rel_err: dict[str, float] = field(default_factory=dict)
    grad_tol: float = 0.0  # the relative tolerance the gradients were held to this step
    int8_flips: int = 0  # requantised values where device and reference round differently
    flip_max_distance: float = 0.0  # of a flipped value from its rounding boundary (steps)
    rejected: str = ""  # the device's guard: "sample" (loss), "update" (non-finite), both


@dataclass
class VerifyReport:
    build: str
    link: str
    steps: list[StepRecord]
    max_loss_rel_err: float
    max_grad_rel_err: float
    first_mismatch: str | None
    passed: bool
    stats: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    int8_flips: int = 0  # over all steps
    int8_checked: int = 0  # requantised values compared, over all steps
    rejected_samples: int = 0  # the device's guard rejected them (reference agreed)
    rejected_updates: int = 0
    stopped: str | None = None  # why verification stopped early (training diverged)
    resumed: str | None = None  # --reset-at: how the device came back

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def load_trainable(build: Path) -> tuple[BuildInfo, TrainableModel]:
    from mcutl.frontend.tflite_import import import_tflite

    info = BuildInfo.load(build)
    if info.method == "none" or "model" not in info.training:
        raise McutlError(f"{build} is an inference build: compile with --method repnet to "
                         "get a firmware that trains")
    backbone = import_tflite((build / "model.tflite").read_bytes())
    with np.load(build / "trainable.npz") as npz:
        params = {k: npz[k] for k in npz.files}
    if "nodes" not in info.training["model"]:
        raise McutlError(f"{build} was compiled by an older mcutl ({info.mcutl_version}) "
                         "whose trainable part this one cannot read: compile it again")
    return info, restore(info.training["model"], backbone, params)


def rel_err(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """Norm-wise ``|a - b| / max(|b|, floor)``: relative, with an absolute floor (near
    zero, float rounding is measured against ``floor``, not against a vanishing |b|)."""
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    num = float(np.linalg.norm(a64 - b64))
    den = max(float(np.linalg.norm(b64)), floor, 1e-30)
    return num / den


def softmax_rounding(logits: np.ndarray | None, label: int) -> float:
    """The relative error float32 alone puts into every gradient at this step: the
    gradient of the logits, softmax - one-hot, is computed in float32 with an absolute
    error of a few ulp(1) (1 - p_y cancels when the loss is small), and every parameter
    gradient is linear in it. Added to the relative tolerance; negligible unless the
    loss is near 0."""
    if logits is None:
        return 0.0
    z = np.asarray(logits, np.float64).reshape(-1)
    p = np.exp(z - z.max())
    p /= p.sum()
    p[int(label)] -= 1.0
    return float(4 * np.finfo(np.float32).eps * np.sqrt(z.size)
                 / max(float(np.linalg.norm(p)), 1e-30))


@dataclass(frozen=True)
class ProbePoint:
    name: str
    nbytes: int


def _probe_points(build: Path) -> list[ProbePoint]:
    plan = json.loads((build / "plan.json").read_text())
    return [ProbePoint(p["name"], int(p["bytes"])) for p in plan.get("probes", [])]


def reference_loss(dev: TrainDevice, ref: Any, x: np.ndarray, label: int,
                   points: list[ProbePoint], margin: float,
                   max_fraction: float) -> tuple[torch.Tensor, list[FlipCheck]]:
    """The reference's loss on the device's int8 values at every requantisation point.

    Call after SAMPLE and before STEP (PROBE runs the forward pass with the parameters
    the step will use). The device's CRC of each point is compared with the reference's
    values; where they differ the values are read and forced, then the reference runs
    again (later points depend on earlier ones)."""
    crcs = [dev.probe_crc(k) for k in range(len(points))]
    forced: dict[str, np.ndarray] = {}
    while True:
        loss = ref.loss(x, label, forced=forced)
        trace = ref.trace
        pending = [k for k, p in enumerate(points) if p.name not in forced
                   and zlib.crc32(np.ascontiguousarray(trace.used[p.name]).tobytes())
                   != crcs[k][0]]
        if not pending:
            break
        k = pending[0]
        forced[points[k].name] = dev.probe(k)
    checks = [check_flips(p.name, trace.used[p.name], trace.own[p.name],
                          trace.steps[p.name], margin=margin, max_fraction=max_fraction)
              for p in points]
    return loss, checks


def random_samples(info: BuildInfo, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = tuple(info.input_shape_nhwc)
    x = rng.integers(-128, 128, size=(n, *shape[1:]), dtype=np.int64).astype(np.int8)
    y = rng.integers(0, info.num_classes, size=n)
    return x, y


def verify(
    build: Path,
    *,
    steps: int = 20,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    qemu: bool = False,
    port: str | None = None,
    baud: int = 115200,
    batch: int = 1,
    check_every: int = 5,
    loss_rtol: float = 1e-3,
    loss_atol: float = 1e-5,
    grad_rtol: float = 1e-4,
    grad_atol: float = 1e-6,
    flip_margin: float = DEFAULT_MARGIN,
    max_flip_fraction: float = DEFAULT_MAX_FRACTION,
    against: list[StepRecord] | None = None,
    seed: int = 0,
    progress: Callable[[StepRecord], None] | None = None,
    rounding_jitter: float = 0.0,
    max_rejected: int = DEFAULT_MAX_REJECTED,
    link_faults: float = 0.0,
    reset_at: int | None = None,
    recipe: Recipe | None = None,
) -> VerifyReport:
    """Train ``steps`` samples on the device and check each against the reference.
    ``rounding_jitter`` (tests only) moves the reference's own rounding input by up to
    that many quantisation steps, as another machine's float arithmetic could.
    The device's guard (train.h) is mirrored: the reference skips a sample the device
    rejected and an update the device did not apply, and each such decision must be
    the reference's own; after ``max_rejected`` rejections in a row it stops.
    ``reset_at``: before that step the device is killed (no goodbye) and started again;
    it must come back with its newest checkpoint (the digest it had after that update),
    the reference takes the same state, and the steps since are replayed (each giving the
    digest and loss bits it gave the first time)."""
    from mcutl.verify.reference import TorchReference

    info, tm = load_trainable(build)
    data = check_verify_call(steps, batch, data, tm.num_classes)
    if data is None:
        xq, labels = random_samples(info, steps, seed)
    else:
        x, labels = data
        xq = prepare_inputs(info, x)[:steps]
        labels = np.asarray(labels)[:steps]
    opts = info.training["options"]
    configure = recipe is not None  # else the build's defaults, which the device starts with
    recipe = recipe if recipe is not None else Recipe.from_options(opts)
    ref = TorchReference(tm, rounding_jitter=rounding_jitter, seed=seed)
    points = _probe_points(build)
    loss_floor = loss_atol / loss_rtol
    params = [p for _, p in ref.named_trainable()]
    if opts["optimizer"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=recipe.lr, betas=(opts["beta1"], opts["beta2"]),
                               eps=opts["eps"], weight_decay=recipe.weight_decay)
    layout = [(p["name"], p["offset"], p["count"]) for p in _param_layout(build)]
    # parameters the device requantises into its int8 kernels (trained biases): the
    # reference takes the device's values before every step, as it takes the int8 values
    # at probe points, so that a rounding tie cannot make the two int8 runs drift apart
    requantised = {f"{n.name}.{k}" for n in tm.nodes
                   if get_float_op(n.op, n).backbone_param for k in n.params}
    synced = [(name, off, cnt) for name, off, cnt in layout if name in requantised]
    n_params = sum(c for _, _, c in layout)
    target, elf = firmware_for(build, info, qemu=qemu, port=port)
    link = "host" if port is None and not qemu else ("qemu" if qemu else str(port))
    records: list[StepRecord] = []
    first: str | None = None  # the first mismatch, named
    max_loss = max_grad = 0.0
    flips_total = checked_total = 0
    bound = float(np.float32(opts.get("max_loss", np.inf)))
    resumed: str | None = None
    rejections = RejectionCounter(max_rejected)
    stopped: str | None = None
    accepted = 0  # samples of the current mini-batch whose gradient the device took
    applied_updates = 0  # the device's update count t (the schedule's argument)
    if reset_at is not None and not 0 < reset_at < len(xq):
        raise McutlError(f"--reset-at {reset_at}: give a step between 1 and {len(xq) - 1} "
                         f"(verify runs {len(xq)} steps), or raise --steps")
    if reset_at is not None and port is not None:
        raise McutlError("--reset-at kills and restarts the device: use it with the host build "
                         "or --qemu (on a board, press reset and run `mcutl train --resume`)")
    sessions = contextlib.ExitStack()

    def start() -> tuple[Any, TrainDevice]:
        sess = sessions.enter_context(open_session(
            target, elf, qemu=qemu, port=port, baud=baud, timeout=30.0,
            link_faults=link_faults))
        check_model(info, sess.hello)
        return sess, TrainDevice(sess.device)

    at_update: dict[int, tuple[int, int]] = {0: (-1, 0)}  # updates -> (step, digest after it)
    with sessions:
        s, dev = start()
        dev.reset()
        if configure:
            dev.configure(recipe)
        at_update[0] = (-1, dev.digest().crc32)
        if reset_at is not None:
            try:  # this run's start is the newest checkpoint, not an earlier run's state
                dev.save()
            except proto.DeviceError as exc:
                raise McutlError(f"--reset-at needs a device that keeps checkpoints: "
                                 f"{exc.reason}") from exc
        theta0 = dev.get_block(PARAMS, n_params)
        for name, off, cnt in layout:
            want = ref.param(name).detach().numpy().reshape(-1)
            if not np.array_equal(theta0[off: off + cnt], want):
                first = (f"step 0: initial parameter {name} on the device differs from the "
                         f"build's (max |diff| "
                         f"{float(np.abs(theta0[off: off + cnt] - want).max()):.3g}): the "
                         "firmware and trainable.npz come from different compiles")
                break
        i = 0
        while i < len(xq):
            if reset_at is not None and i == reset_at:
                reset_at = None  # once
                _kill(s)
                s, dev = start()
                killed_at = i
                i, problem = _resumed(dev, ref, opt, layout, n_params, at_update)
                first = first or problem
                st0 = dev.stats()
                resumed = (f"killed before step {killed_at}; it came back with checkpoint "
                           f"{st0.checkpoint_seq} (update {st0.checkpoint_updates}); steps "
                           f"{i}..{killed_at - 1} replayed" if i < killed_at else
                           f"killed before step {killed_at}; it came back with checkpoint "
                           f"{st0.checkpoint_seq}: nothing lost")
                accepted = 0
                continue
            label = int(labels[i])
            dev.sample(xq[i], label)
            update = (i + 1) % batch == 0
            grad_errs: dict[str, float] = {}
            grad_tol = grad_rtol
            at_batch_start = i % batch == 0
            upd = None  # the outcome of the update, if one ran
            if at_batch_start and (i % check_every == 0 or i == len(xq) - 1):
                # same parameters: the device's, loaded into the reference
                theta = dev.get_block(PARAMS, n_params)
                _load(ref, layout, theta)
                opt.zero_grad()
                _sync(dev, ref, synced)
                loss_ref, flips = reference_loss(dev, ref, xq[i], label, points, flip_margin,
                                                 max_flip_fraction)
                res = dev.step(update=False)
                g_dev = dev.get_block(GRADS, n_params)
                if not res.sample_rejected:
                    loss_ref.backward()
                grad_tol = grad_rtol + softmax_rounding(ref.trace.logits, label)
                for name, off, cnt in layout:
                    gr = ref.param(name).grad
                    g_ref = np.zeros(cnt, np.float32) if gr is None else gr.detach().numpy()
                    grad_errs[name] = rel_err(g_dev[off: off + cnt], g_ref.reshape(-1),
                                              grad_atol * np.sqrt(cnt) / grad_rtol)
                if update:
                    upd = dev.step(update_only=True)
            else:
                _sync(dev, ref, synced)
                loss_ref, flips = reference_loss(dev, ref, xq[i], label, points, flip_margin,
                                                 max_flip_fraction)
                res = upd = dev.step(update=update)
                if not res.sample_rejected:
                    loss_ref.backward()
            lr_val = float(loss_ref.detach())
            guard = _guard_problem(i, res.sample_rejected, res.loss, lr_val, bound, loss_rtol)
            accepted += 0 if res.sample_rejected else 1
            if update and upd is not None and accepted == 0:
                # every sample of the mini-batch rejected: the device applies nothing
                if upd.updated or upd.update_rejected:
                    guard = guard or f"step {i}: the device updated without a gradient"
            elif update and upd is not None:
                recipe_problem = _apply_recipe(opt, upd.lr, upd.scale, recipe, applied_updates,
                                               accepted, i)
                guard = guard or recipe_problem
                accepted = 0
                applied = guarded_step(opt)
                applied_updates += int(applied)
                if first is None and applied == upd.update_rejected:
                    guard = guard or (
                        f"step {i}: the device {'rejected' if upd.update_rejected else 'applied'}"
                        f" the update, the reference's would {'' if applied else 'not '}be "
                        "finite")
                opt.zero_grad()
            digest = dev.digest()
            if digest.updates not in at_update or at_update[digest.updates][0] >= i:
                at_update[digest.updates] = (i, digest.crc32)
            rec = StepRecord(
                step=i, label=label, loss_device=res.loss, loss_device_bits=res.loss_bits,
                loss_reference=lr_val,
                loss_rel_err=_loss_err(res.loss, lr_val, loss_floor),
                digest=digest.crc32, grad_rel_err=grad_errs,
                grad_tol=grad_tol if grad_errs else 0.0,
                int8_flips=sum(f.flips for f in flips),
                flip_max_distance=max((f.max_distance for f in flips), default=0.0),
                rejected="+".join(w for w, bad in (
                    ("sample", res.sample_rejected),
                    ("update", upd is not None and upd.update_rejected)) if bad),
            )
            if i < len(records):  # a step replayed after a restart: the same as before
                before = records[i]
                if first is None and (before.digest, before.loss_device_bits) != (
                        rec.digest, rec.loss_device_bits):
                    first = (f"step {i}: replayed after the restart, it gives digest "
                             f"0x{rec.digest:08x} / loss bits 0x{rec.loss_device_bits:08x}, "
                             f"the first time 0x{before.digest:08x} / "
                             f"0x{before.loss_device_bits:08x}")
                del records[i:]
            flips_total += rec.int8_flips
            checked_total += sum(f.size for f in flips)
            flip_problem = next((f.problem for f in flips if f.problem), None)
            if first is None and flip_problem is not None:
                first = f"step {i}: {flip_problem}"
            if first is None and guard is not None:
                first = guard
            records.append(rec)
            max_loss = max(max_loss, rec.loss_rel_err)
            if grad_errs:
                max_grad = max(max_grad, max(grad_errs.values()))
            if first is None:
                first = _first_problem(rec, loss_rtol, grad_rtol, against)
            if progress is not None:
                progress(rec)
            try:
                if res.sample_rejected:
                    rejections.sample_rejected(res.loss)
                if upd is not None:
                    if upd.update_rejected:
                        rejections.update_rejected()
                    elif upd.updated:
                        rejections.update_applied()
            except TrainingDivergedError as exc:
                stopped = str(exc)
                break
            i += 1
        st = dev.stats()
        final = dev.get_block(PARAMS, n_params)
        if params_crc(final) != records[-1].digest:
            first = first or "DIGEST does not match the CRC of the parameters read back"
        stats = asdict(st)
        retries = s.device.stats.retries
        if qemu or target.is_host:
            s.finish(0)
    report = VerifyReport(str(build), link, records, max_loss, max_grad, first, first is None,
                          stats, retries, flips_total, checked_total,
                          rejected_samples=rejections.samples,
                          rejected_updates=rejections.updates, stopped=stopped,
                          resumed=resumed)
    (build / "verify.json").write_text(report.to_json())
    return report


def _apply_recipe(opt: torch.optim.Optimizer, lr: float, scale: float, recipe: Recipe, t: int,
                  samples: int, step: int) -> str | None:
    """The device's learning rate and gradient factor of this update into the reference
    (as given, so that the two optimizers stay bit-for-bit comparable); a problem if they
    are not what the recipe says (schedule, mean, clipping; relative 1e-5 / 1e-3)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    want_lr = recipe.lr_at(t)
    want_scale = recipe.grad_scale(samples, norm)
    for g in opt.param_groups:
        g["lr"] = lr
    if scale != 1.0:
        with torch.no_grad():
            for gr in grads:
                gr.mul_(scale)
    if abs(lr - want_lr) > 1e-5 * want_lr:
        return (f"step {step}: the device's learning rate {lr:.9g} is not the recipe's "
                f"{want_lr:.9g} at update {t} ({recipe.schedule}, warm-up {recipe.warmup})")
    near_clip = recipe.clip_norm > 0 and abs(norm * (1.0 / samples if recipe.average else 1.0)
                                             - recipe.clip_norm) <= 1e-3 * recipe.clip_norm
    if not near_clip and abs(scale - want_scale) > 1e-3 * want_scale:
        return (f"step {step}: the device scaled the gradient by {scale:.6g}, the recipe "
                f"gives {want_scale:.6g} ({samples} samples, mean {recipe.average}, norm "
                f"{norm:.6g}, clip {recipe.clip_norm})")
    return None


def _kill(session: Any) -> None:
    """End the device at once, as a reset or a power cut would (host process or QEMU)."""
    proc = session.host.proc if session.host is not None else session.qemu.proc
    proc.kill()
    proc.wait()


def _resumed(dev: TrainDevice, ref: Any, opt: torch.optim.Optimizer,
             layout: list[tuple[str, int, int]], n_params: int,
             at_update: dict[int, tuple[int, int]]) -> tuple[int, str | None]:
    """After a restart: the step to continue from, and a problem if the device did not
    come back with its newest checkpoint. The reference takes the device's state."""
    st = dev.stats()
    digest = dev.digest()
    u = digest.updates
    problem = None
    if u not in at_update:
        return 0, f"after the restart the device has {u} updates, a state it never had"
    step, crc = at_update[u]
    if digest.crc32 != crc:
        problem = (f"after the restart the device's digest 0x{digest.crc32:08x} is not the "
                   f"one it had after update {u} (0x{crc:08x})")
    elif st.checkpoint_seq == 0 and u != 0:
        problem = "after the restart the device reports no checkpoint but kept its updates"
    _load(ref, layout, dev.get_block(PARAMS, n_params))
    _load_optimizer(opt, ref, layout, dev.get_block(OPT_STATE, _state_floats(opt, n_params)),
                    n_params, u)
    return step + 1, problem


def _state_floats(opt: torch.optim.Optimizer, n_params: int) -> int:
    return 2 * n_params if isinstance(opt, torch.optim.Adam) else n_params


def _load_optimizer(opt: torch.optim.Optimizer, ref: Any, layout: list[tuple[str, int, int]],
                    state: np.ndarray, n_params: int, updates: int) -> None:
    """The device's optimizer state (SGD momentum; Adam moments and step) into ``opt``."""
    opt.zero_grad()
    opt.state.clear()
    if updates == 0:
        return  # nothing accumulated yet: the optimizer starts fresh on both sides
    for name, off, cnt in layout:
        p = ref.param(name)
        if isinstance(opt, torch.optim.Adam):
            opt.state[p] = {
                "step": torch.tensor(float(updates)),
                "exp_avg": torch.from_numpy(state[off: off + cnt].reshape(p.shape).copy()),
                "exp_avg_sq": torch.from_numpy(
                    state[n_params + off: n_params + off + cnt].reshape(p.shape).copy()),
            }
        else:
            opt.state[p] = {"momentum_buffer": torch.from_numpy(
                state[off: off + cnt].reshape(p.shape).copy())}


def _sync(dev: TrainDevice, ref: Any, ranges: list[tuple[str, int, int]]) -> None:
    """Load the device's values of ``ranges`` (name, float offset, count) into ``ref``."""
    if not ranges:
        return
    start = min(off for _, off, _ in ranges)
    end = max(off + cnt for _, off, cnt in ranges)
    theta = dev.get_block(PARAMS, end - start, start)
    _load(ref, [(n, off - start, cnt) for n, off, cnt in ranges], theta)


def _param_layout(build: Path) -> list[dict[str, Any]]:
    return list(json.loads((build / "plan.json").read_text())["params"])


def _load(ref: Any, layout: list[tuple[str, int, int]], theta: np.ndarray) -> None:
    with torch.no_grad():
        for name, off, cnt in layout:
            p = ref.param(name)
            p.copy_(torch.from_numpy(theta[off: off + cnt].reshape(p.shape).copy()))


def _loss_err(device: float, reference: float, floor: float) -> float:
    if not (np.isfinite(device) or np.isfinite(reference)):
        return 0.0  # both not finite (a rejected sample): nothing to compare
    return abs(device - reference) / max(abs(reference), floor)


def _guard_problem(step: int, rejected: bool, loss_dev: float, loss_ref: float, bound: float,
                   rtol: float) -> str | None:
    """The device's loss guard must decide as the reference's loss does (a loss within
    the tolerance of the bound may go either way)."""
    if rejected == (not loss_ok(loss_ref, bound)):
        return None
    if np.isfinite(loss_ref) and abs(loss_ref - bound) <= rtol * bound:
        return None
    return (f"step {step}: the device {'rejected' if rejected else 'trained on'} the sample "
            f"(loss {loss_dev:.6g}) but the reference's loss {loss_ref:.6g} is "
            f"{'within' if loss_ok(loss_ref, bound) else 'beyond'} the bound {bound:g}")


def _first_problem(rec: StepRecord, loss_rtol: float, grad_rtol: float,
                   against: list[StepRecord] | None) -> str | None:
    # a rejected sample: its decision was checked (_guard_problem), its loss is past the
    # bound, where float32 rounding of huge values need not agree
    if "sample" not in rec.rejected:
        if not np.isfinite(rec.loss_device):
            return f"step {rec.step}: the device's loss is {rec.loss_device}"
        if rec.loss_rel_err > loss_rtol:
            return (f"step {rec.step}: loss {rec.loss_device!r} vs reference "
                    f"{rec.loss_reference!r} (relative error {rec.loss_rel_err:.2e} > "
                    f"{loss_rtol})")
        if not np.isfinite(rec.loss_reference):
            return f"step {rec.step}: the reference's loss is {rec.loss_reference}"
    tol = max(grad_rtol, rec.grad_tol)
    for name, err in rec.grad_rel_err.items():
        if err > tol:
            return (f"step {rec.step}: gradient of {name} differs from autograd by "
                    f"{err:.2e} (relative, > {tol:.2g})")
    if against is not None and rec.step < len(against):
        other = against[rec.step]
        if other.loss_device_bits != rec.loss_device_bits:
            return (f"step {rec.step}: loss bits 0x{rec.loss_device_bits:08x} differ from the "
                    f"other build's 0x{other.loss_device_bits:08x}")
        if other.digest != rec.digest:
            return (f"step {rec.step}: parameter digest 0x{rec.digest:08x} differs from the "
                    f"other build's 0x{other.digest:08x}")
    return None
