"""The accuracy tables of the examples: every training method mcutl compiles, trained on
the device (the host build of the same generated C, bit-identical to the QEMU firmware)
and as its PyTorch fp32 twin (mcutl/train/twin.py) with the same recipe, k shots per
class, several seeds; peak training SRAM and flash from the build's plan.

One recipe for every method, `mcutl train`'s defaults (mcutl/train/recipe.py): SGD with
momentum 0.9, mini-batches of 8 (the mean of their gradients), a cosine decay of the
learning rate to 0 over the run, as many epochs of the k-shot set as make 1600 samples.
The learning rate is chosen per method from
``LR_GRID`` on a validation split of the target pool that no reported run trains or
tests on (seed ``VAL_SEED``), by the device's accuracy.

Everything is deterministic: seeded splits and sample orders, the device's integer and
float32 C, and the twin under examples/determinism.py's pinned torch numerics (the
examples re-run themselves in a pinned child process).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from examples.data import few_shot_split
from mcutl.compile import compile_training
from mcutl.errors import McutlError
from mcutl.ir.layout import to_ir_layout
from mcutl.train.codegen import TrainOptions
from mcutl.train.loop import TrainingStopped, train
from mcutl.train.recipe import DEFAULT_BATCH, DEFAULT_SAMPLES, Recipe, over_run
from mcutl.train.twin import train_twin, twin_of

METHODS = ("last", "bias", "bn-shift", "adaptor", "repnet", "finetune-last-k")
#: Rep-Net configurations run only when named with --methods: the memory-aware Rep-Net
#: (mcutl.methods.repnet.memory_aware) and each of its departures alone
VARIANTS = ("repnet-lite", "repnet-1conn", "repnet-narrow", "repnet-poolhead")
TITLES = {"none": "no adaptation", "last": "head only", "bias": "bias + head (TinyTL)",
          "bn-shift": "norm shifts + head (MobileTL)", "adaptor": "adaptor + head (DA3)",
          "repnet": "Rep-Net", "finetune-last-k": "last block + head",
          "repnet-lite": "memory-aware Rep-Net (1 connector, width 0.125, pooled head)",
          "repnet-1conn": "Rep-Net, one connector (the last stage), module 0 pooled to it",
          "repnet-narrow": "Rep-Net, width 0.125",
          "repnet-poolhead": "Rep-Net, head on the pooled map before the last conv"}
LR_GRID = (0.01, 0.03, 0.1, 0.3)
BATCH, MOMENTUM = DEFAULT_BATCH, 0.9
VAL_SEED = 100
TARGETS = ("stm32f405", "stm32f746")  # the first the build fits (128 KB, then 320 KB)


@dataclass
class Task:
    key: str  # file-friendly name
    title: str
    model: nn.Module  # the pre-trained float model
    num_classes: int
    head: str  # "classifier" (same labels) or "new"
    calib: np.ndarray
    input_shape: tuple[int, ...]
    pool_x: np.ndarray  # the target samples the k shots are drawn from
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    source: str = ""


@dataclass
class Build:
    method: str
    path: Path
    target: str
    sram: int  # arena peak + parameters/gradients/optimizer state + runtime + stack
    flash: int
    params: int


@dataclass
class Run:
    method: str
    k: int
    seed: int
    lr: float
    device_before: float
    device_after: float
    twin_after: float
    seconds: float
    diverged: bool = False  # the device's guard stopped the run (non-finite updates)


@dataclass
class Results:
    task: str
    title: str
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)


def recipe(lr: float, n_shots: int, samples: int = DEFAULT_SAMPLES) -> tuple[Recipe, int]:
    """The recipe of a run on ``n_shots`` samples and its epochs (`mcutl train`'s
    defaults when ``samples`` is DEFAULT_SAMPLES)."""
    epochs = max(1, math.ceil(samples / n_shots))
    updates = math.ceil(epochs * n_shots / BATCH)
    return over_run(Recipe(lr=lr, momentum=MOMENTUM, average=True), updates), epochs


def compile_methods(task: Task, out: Path, methods: Sequence[str],
                    log: Callable[[str], None]) -> dict[str, Build]:
    from mcutl.methods import get_method

    builds: dict[str, Build] = {}
    for m in methods:
        method, spec, cut, head = m, None, None, task.head == "classifier"
        if m in VARIANTS:  # mcutl.methods.repnet.memory_aware, or one of its departures
            from mcutl.compile import load_and_quantize
            from mcutl.methods.repnet import memory_aware

            g = load_and_quantize(task.model, task.calib, task.input_shape)
            overrides, lite_cut = memory_aware(g)
            keep = {"repnet-lite": ("stages", "first_pool", "width"),
                    "repnet-1conn": ("stages", "first_pool"), "repnet-narrow": ("width",),
                    "repnet-poolhead": ()}[m]
            overrides = {k: v for k, v in overrides.items() if k in keep}
            method, spec = "repnet", get_method("repnet").spec(**overrides)
            if m in ("repnet-lite", "repnet-poolhead"):  # a head on other features: new
                cut, head = lite_cut, False
            if m == "repnet-1conn":  # the connector of the uncut model's last stage
                from mcutl.methods.common import cut_classifier
                from mcutl.methods.repnet import find_connectors

                conn = find_connectors(cut_classifier(g, None))[-1]
                h_in = int(g.tensors[g.inputs[0]].shape[1])
                spec = get_method("repnet").spec(
                    stages=[conn], first_pool=max(1, h_in // int(g.tensors[conn].shape[1])))
        for target in TARGETS:
            path = out / m
            try:
                compile_training(task.model, target, path, num_classes=task.num_classes,
                                 calib=task.calib, input_shape=task.input_shape,
                                 method=method, spec=spec, cut=cut,
                                 options=TrainOptions(lr=LR_GRID[0], momentum=MOMENTUM),
                                 head_from_classifier=head, source_name=task.title)
            except McutlError as exc:
                log(f"  {m}: does not build for {target} ({str(exc).splitlines()[0]})")
                continue
            plan = json.loads((path / "plan.json").read_text())
            builds[m] = Build(m, path, target, sram=int(plan["total_bytes"]),
                              flash=int(plan["firmware_size"]["flash_used"]),
                              params=int(plan["param_count"]))
            log(f"  {m}: {target}, {builds[m].sram:,} B SRAM, {builds[m].flash:,} B flash, "
                f"{builds[m].params:,} trained parameters")
            break
    return builds


def _nhwc(info: Any, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(to_ir_layout(x, info.source_layout)).astype(np.float32)


def run_one(task: Task, b: Build, lr: float, shots: np.ndarray, eval_x: np.ndarray,
            eval_y: np.ndarray, seed: int, twin: bool, samples: int = DEFAULT_SAMPLES) -> Run:
    t0 = time.perf_counter()
    rec, epochs = recipe(lr, len(shots), samples)
    x, y = task.pool_x[shots], task.pool_y[shots]
    try:
        dev = train(b.path, x, y, epochs=epochs, batch=BATCH, eval_x=eval_x, eval_y=eval_y,
                    seed=seed, recipe=rec)
    except TrainingStopped:  # diverged: the device's guard stopped it (counted as such)
        nan = float("nan")
        return Run(b.method, int(len(shots) // task.num_classes), seed, lr, nan, nan, nan,
                   time.perf_counter() - t0, diverged=True)
    twin_acc = float("nan")
    if twin:
        info, tm = twin_of(b.path)
        tw = train_twin(tm, _nhwc(info, x), y, rec, epochs=epochs, batch=BATCH, seed=seed,
                        eval_x=_nhwc(info, eval_x), eval_y=eval_y,
                        label_smoothing=float(info.training["options"]["label_smoothing"]))
        # a twin whose loss went non-finite diverged: no accuracy
        twin_acc = float(tw.acc_after or 0.0) if np.isfinite(tw.losses).all() else float("nan")
    assert dev.acc_before is not None and dev.acc_after is not None
    return Run(b.method, int(len(shots) // task.num_classes), seed, lr, dev.acc_before,
               dev.acc_after, twin_acc, time.perf_counter() - t0)


def run_task(task: Task, out: Path, methods: Sequence[str] = METHODS,
             log: Callable[[str], None] = print, lr_grid: Sequence[float] = LR_GRID,
             samples: int = DEFAULT_SAMPLES) -> Results:
    res = Results(task.key, task.title)
    log(f"compiling {len(methods)} methods for {task.title}")
    builds = compile_methods(task, out, methods, log)
    res.builds = {m: {k: str(v) if isinstance(v, Path) else v for k, v in asdict(b).items()}
                  for m, b in builds.items()}
    # learning rate per method on a validation split (k = the smallest, seed VAL_SEED):
    # shots and validation samples both from the pool, disjoint from the test set
    k0 = min(task.ks)
    shots, rest = few_shot_split(task.pool_y, k0, seed=VAL_SEED)
    val = rest[np.random.default_rng(VAL_SEED).permutation(len(rest))[:300]]
    for m, b in builds.items():
        scores = {}
        for lr in lr_grid:
            r = run_one(task, b, lr, shots, task.pool_x[val], task.pool_y[val], VAL_SEED,
                        twin=False, samples=samples)
            scores[str(lr)] = r.device_after
        res.validation[m] = scores
        # the best; on a tie the smaller lr; a diverged run (nan) never wins
        res.lr[m] = float(max(scores, key=lambda s: (np.nan_to_num(scores[s], nan=-1.0),
                                                      -float(s))))
        log(f"  {m}: validation accuracy by lr " + ", ".join(
            f"{lr} " + ("diverged" if np.isnan(a) else f"{100 * a:.1f} %")
            for lr, a in scores.items()) + f" -> lr {res.lr[m]}")
    for k in task.ks:
        for seed in task.seeds:
            shots, _ = few_shot_split(task.pool_y, k, seed=seed)
            for m, b in builds.items():
                r = run_one(task, b, res.lr[m], shots, task.test_x, task.test_y, seed,
                            twin=True, samples=samples)
                res.runs.append(asdict(r))
                log(f"  k={k} seed={seed} {m:16s} device {100 * r.device_after:5.1f} %  "
                    f"fp32 twin {100 * r.twin_after:5.1f} %  ({r.seconds:.0f} s)")
    return res


# ---- tables and plots ------------------------------------------------------------

def _ms(v: Sequence[float]) -> str:
    """mean ± std (sample) in %, of the runs that did not diverge (their count noted)."""
    a = 100 * np.asarray(v, np.float64)
    ok = a[np.isfinite(a)]
    if not len(ok):
        return "diverged"
    text = f"{ok.mean():.1f} ± {ok.std(ddof=1) if len(ok) > 1 else 0.0:.1f}"
    return text + (f" ({len(a) - len(ok)} of {len(a)} diverged)" if len(ok) < len(a) else "")


def summary(res: Results) -> list[dict[str, Any]]:
    """One row per method: memory and, per k, device/twin mean ± std and their gap."""
    rows: list[dict[str, Any]] = []
    ks = sorted({r["k"] for r in res.runs})
    first = next(iter(res.builds))
    before = [r["device_before"] for r in res.runs if r["method"] == first and
              r["k"] == ks[0] and not r["diverged"]]
    rows.append({"method": "none", "sram": None, "flash": None, "params": 0,
                 "acc": {k: before for k in ks}, "twin": {}, "lr": None})
    for m, b in res.builds.items():
        acc = {k: [r["device_after"] for r in res.runs if r["method"] == m and r["k"] == k]
               for k in ks}
        twin = {k: [r["twin_after"] for r in res.runs if r["method"] == m and r["k"] == k]
                for k in ks}
        rows.append({"method": m, "sram": b["sram"], "flash": b["flash"],
                     "params": b["params"], "target": b["target"], "acc": acc, "twin": twin,
                     "lr": res.lr[m]})
    return rows


def markdown(res: Results, note: str) -> str:
    rows = summary(res)
    ks = sorted({r["k"] for r in res.runs})
    seeds = sorted({r["seed"] for r in res.runs})
    head = ["method", "peak training SRAM", "flash", "trained params", "lr"]
    for k in ks:
        head += [f"device k={k}", f"PyTorch fp32 k={k}", f"device − fp32 k={k}"]
    out = [f"# {res.title}", "", note, "",
           f"Accuracy in % on the test set, mean ± std over {len(seeds)} seeds of the k "
           "shots per class (seeds " + ", ".join(map(str, seeds)) + "). Device: the "
           "generated C of the build (host build, bit-identical to the QEMU firmware). "
           "PyTorch fp32: the same trainable graph, initial values, recipe and sample "
           "order with the frozen backbone in float32 (mcutl/train/twin.py). SRAM: arena "
           "peak + parameters, gradients and optimizer state + runtime + stack, from the "
           "build's plan (stm32f405 unless the method needs more than its 128 KB: then "
           "stm32f746).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [TITLES[r["method"]] + (f" ({r['method']})" if r["method"] != "none" else ""),
                 "—" if r["sram"] is None else f"{r['sram']:,} B"
                 + (" (F746)" if r.get("target") == "stm32f746" else ""),
                 "—" if r["flash"] is None else f"{r['flash']:,} B",
                 f"{r['params']:,}", "—" if r["lr"] is None else f"{r['lr']:g}"]
        for k in ks:
            cells.append(_ms(r["acc"][k]))
            if r["twin"]:
                gaps = np.asarray(r["acc"][k]) - np.asarray(r["twin"][k])
                cells += [_ms(r["twin"][k]), _ms(gaps)]
            else:
                cells += ["—", "—"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Learning rate per method (validation accuracy on the device, seed "
            f"{VAL_SEED}, k={min(ks)}; diverged: the device's guard stopped the run):", ""]
    for m, scores in res.validation.items():
        out.append(f"- {m}: " + ", ".join(
            f"lr {lr}: " + ("diverged" if np.isnan(a) else f"{100 * a:.1f} %")
            for lr, a in scores.items()))
    return "\n".join(out) + "\n"


def plot(results: Sequence[Results], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        rows = [r for r in summary(res) if r["sram"] is not None]
        ks = sorted({r["k"] for r in res.runs})
        for k, marker in zip(ks, "os^", strict=False):
            xs = [r["sram"] / 1024 for r in rows]
            ys = [100 * np.nanmean(r["acc"][k]) for r in rows]
            es = [100 * np.nanstd(r["acc"][k], ddof=1) if len(r["acc"][k]) > 1 else 0.0
                  for r in rows]
            ax.errorbar(xs, ys, yerr=es, fmt=marker, capsize=3, label=f"device, k={k}")
            ax.plot(xs, [100 * np.nanmean(r["twin"][k]) for r in rows], "x", color="grey")
            for r, x, y in zip(rows, xs, ys, strict=True):
                ax.annotate(r["method"], (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        none = summary(res)[0]
        ax.axhline(100 * np.mean(none["acc"][ks[0]]), ls=":", color="k",
                   label="no adaptation")
        ax.axvline(128, ls="--", color="r", lw=0.8, label="128 KB SRAM")
        ax.set_xscale("log")
        ax.set_xlabel("peak training SRAM (KB, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(res.title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.01, "x: PyTorch fp32 twin of the same method and recipe", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cli(description: str, script: Path, make_tasks: Callable[[], list[Task]],
        note: Callable[[Task], str], argv: list[str] | None = None) -> int:
    """The examples' command line: run every task (or ``--methods``), write
    ``results.md``, ``results.json`` and ``results.png`` beside ``script``."""
    import argparse
    import sys

    from examples import determinism

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated methods (default: all)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="number of seeds (default: the task's)")
    ap.add_argument("--out", type=Path, default=None,
                    help="where results.md/json/png go (default: beside the script)")
    ap.add_argument("--memory-only", action="store_true",
                    help="recompile every method and rewrite the SRAM and flash columns of "
                         "the results.json in --out (after a compiler change that cannot "
                         "change accuracy, e.g. the target's kernel set); no training")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run (CI): the smallest k, one seed, lr 0.1 only, 400 "
                         "samples per run, 100 test samples; not the tables' figures")
    a = ap.parse_args(argv)
    if not determinism.is_pinned_process():  # the twin's torch numerics: see determinism.py
        determinism.run_pinned([str(script), *(argv if argv is not None else sys.argv[1:])])
        return 0
    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS + VARIANTS]
    if bad:
        ap.error(f"unknown method(s) {', '.join(bad)}: choose from "
                 f"{', '.join(METHODS + VARIANTS)}")
    out = a.out or script.parent
    build = Path(__file__).resolve().parent.parent / "build" / script.parent.name
    t0 = time.perf_counter()
    if a.memory_only:
        return _refresh_memory(out, build, make_tasks, note)
    with determinism.pinned_torch():
        tasks = make_tasks()
        results = []
        for task in tasks:
            if a.seeds is not None:
                task.seeds = task.seeds[: a.seeds]
            extra: dict[str, Any] = {}
            if a.quick:
                task.ks, task.seeds = (min(task.ks),), task.seeds[:1]
                task.test_x, task.test_y = task.test_x[:100], task.test_y[:100]
                extra = {"lr_grid": (0.1,), "samples": 400}
            res = run_task(task, build / task.key, methods,
                           log=lambda s: print(s, flush=True), **extra)
            results.append(res)
    _write(out, results, tasks, note)
    print(f"wrote {out / 'results.md'}, results.json, results.png "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


def _write(out: Path, results: list[Results], tasks: list[Task],
           note: Callable[[Task], str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    md = "\n".join(markdown(r, note(t)) for r, t in zip(results, tasks, strict=True))
    (out / "results.md").write_text(md)
    plot(results, out / "results.png")
    print(md)


def _refresh_memory(out: Path, build: Path, make_tasks: Callable[[], list[Task]],
                    note: Callable[[Task], str]) -> int:
    stored = json.loads((out / "results.json").read_text())
    tasks = {t.key: t for t in make_tasks()}
    results = [Results(**r) for r in stored]
    for res in results:
        task = tasks[res.task]
        builds = compile_methods(task, build / task.key, list(res.builds),
                                 log=lambda s: print(s, flush=True))
        res.builds = {m: {k: str(v) if isinstance(v, Path) else v
                          for k, v in asdict(b).items()} for m, b in builds.items()}
    _write(out, results, [tasks[r.task] for r in results], note)
    print(f"rewrote the memory columns of {out / 'results.md'}")
    return 0
