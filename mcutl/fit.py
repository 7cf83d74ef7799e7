"""Which training method, and which size of it, fits the target: every configuration
planned with the real step compiler and arena planner, no firmware built.

``plan_all`` gives one ``PlanRow`` per method and size (mcutl/methods/: each method lists
its ``sizes``, most capable first): trainable parameters, the arena's peak and lower
bound, parameters + gradients + optimizer state + runtime, the stack the linker
reserves, flash tables, MACs per step. ``estimate_accuracy`` trains the PyTorch reference
of a configuration on the same int8 backbone for a short fixed recipe. ``choose`` picks
the most accurate configuration that fits (by capability when nothing was measured).
`mcutl plan` prints and draws them; `mcutl compile` falls back to the largest size of
the chosen method that fits when its defaults do not.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcutl.errors import McutlError
from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TrainableModel
from mcutl.methods import METHODS, get_method
from mcutl.targets import Target


@dataclass
class PlanRow:
    method: str
    options: dict[str, Any]  # the overrides of the method's defaults
    params: int = 0
    arena: int = 0
    lower_bound: int = 0
    static: int = 0  # parameters + gradients + optimizer state + runtime
    stack: int = 0
    flash_tables: int = 0  # weights, requantisation tables, initial parameters
    macs: int = 0  # per training step, as counted by the kernels
    fits: bool = False
    error: str | None = None  # could not be built on this model
    accuracy: float | None = None  # host estimate with --data

    @property
    def total(self) -> int:
        return self.arena + self.static + self.stack

    @property
    def label(self) -> str:
        opts = " ".join(f"{k}={_short(v)}" for k, v in self.options.items())
        return f"{self.method}{' ' + opts if opts else ''}"


def _short(v: Any) -> str:
    """Option values for labels: tensor names cut to their last 24 characters."""
    if isinstance(v, list | tuple):
        return "[" + ",".join(_short(x) for x in v) + "]"
    text = str(v)
    return text if len(text) <= 24 else "…" + text[-23:]


def parse_bytes(text: str) -> int:
    """'128K', '128KB', '1M', '131072' -> bytes (K = 1024)."""
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise McutlError(f"--budget {text!r}: give bytes like 131072, 128K or 1M") from None
    if not math.isfinite(value) or value < 1:
        raise McutlError(f"--budget {text!r} must be a positive number of bytes, e.g. 128K")
    return int(value)


def plan_config(graph: Graph, method: str, overrides: dict[str, Any], target: Target,
                num_classes: int, options: Any, cut: str | None, budget: int,
                streaming: str = "auto") -> tuple[PlanRow, TrainableModel | None]:
    """Build and plan one configuration (no firmware; ``streaming`` as compile's)."""
    from mcutl.compile import model_hash
    from mcutl.plan.budget import training_static_bytes
    from mcutl.tflite.export import export_tflite
    from mcutl.train.codegen import generate_training

    m = get_method(method)
    row = PlanRow(method, dict(overrides))
    try:
        spec = m.spec(**overrides)
        tm = m.build(graph, num_classes, spec, cut)
        gen = generate_training(tm, model_hash(export_tflite(tm.backbone), tm, options),
                                target.name, options, streaming=streaming)
    except (McutlError, ValueError) as exc:
        row.error = str(exc)
        return row, None
    row.params = gen.param_count
    row.arena = gen.plan.arena_size()
    row.lower_bound = gen.plan.lower_bound()
    row.static = training_static_bytes(gen.param_count, gen.opt_state_count)
    row.stack = target.memory.stack_bytes if target.memory else 0
    row.flash_tables = gen.const_bytes
    row.macs = sum(c.macs for c in gen.program.ctx.calls)
    row.fits = row.total <= budget
    return row, tm


def plan_all(graph: Graph, target: Target, num_classes: int, options: Any,
             cut: str | None = None, budget: int | None = None,
             methods: list[str] | None = None) -> list[tuple[PlanRow, TrainableModel | None]]:
    """Every size of every method (or of ``methods``), in registry order."""
    if budget is None:
        budget = target.memory.sram_bytes if target.memory else 1 << 40
    names = methods or sorted(METHODS, key=lambda n: (METHODS[n].capability, n))
    out = []
    for name in names:
        for overrides in get_method(name).sizes_for(graph, cut):
            out.append(plan_config(graph, name, overrides, target, num_classes, options, cut,
                                   budget))
    return out


def choose(rows: list[PlanRow]) -> PlanRow | None:
    """The most accurate configuration that fits (ties: less SRAM); without accuracy
    estimates the most capable method's largest size that fits."""
    fitting = [r for r in rows if r.fits and r.error is None]
    if not fitting:
        return None
    if all(r.accuracy is not None for r in fitting):
        return max(fitting, key=lambda r: (round(float(r.accuracy or 0.0), 4), -r.total))
    return min(fitting, key=lambda r: get_method(r.method).capability)


def estimate_accuracy(tm: TrainableModel, x_q: np.ndarray, y: np.ndarray, *,
                      epochs: int = 2, lr: float = 0.01, momentum: float = 0.9,
                      holdout: float = 0.3, seed: int = 0) -> float:
    """Accuracy of the PyTorch reference of ``tm`` (same int8 backbone, same method)
    after ``epochs`` of SGD at batch 1 on ``1 - holdout`` of the samples, measured on
    the rest (split per class, seeded)."""
    import torch

    from mcutl.verify.reference import TorchReference

    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test += list(idx[: max(1, int(round(holdout * idx.size)))])
    test_mask = np.zeros(len(y), bool)
    test_mask[test] = True
    train_idx = np.flatnonzero(~test_mask)
    ref = TorchReference(tm)
    opt = torch.optim.SGD([p for _, p in ref.named_trainable()], lr=lr, momentum=momentum)
    for _ in range(epochs):
        for i in rng.permutation(train_idx):
            opt.zero_grad()
            ref.loss(x_q[i], int(y[i])).backward()
            opt.step()
    with torch.no_grad():
        pred = [int(ref(x_q[i]).argmax()) for i in np.flatnonzero(test_mask)]
    return float(np.mean(np.asarray(pred) == y[test_mask]))


def write_plan(rows: list[PlanRow], chosen: PlanRow | None, budget: int, target: Target,
               out: Path, model: str) -> None:
    """plan.md, plan.json and plan.png (SRAM per configuration against the budget; with
    accuracy estimates, accuracy against SRAM)."""
    out.mkdir(parents=True, exist_ok=True)
    has_acc = any(r.accuracy is not None for r in rows)
    lines = [f"# Training methods for {model} on {target.name}", "",
             f"Budget {budget:,} B of SRAM (arena + parameters/gradients/optimizer state + "
             "runtime + stack). Planned with the step compiler and arena planner; no "
             "firmware built.", "",
             "| method | params | arena | lower bound | static | total SRAM | fits | "
             "flash tables | MACs/step |" + (" accuracy (host est.) |" if has_acc else ""),
             "|---|---:|---:|---:|---:|---:|:-:|---:|---:|" + ("---:|" if has_acc else "")]
    for r in rows:
        if r.error:
            lines.append(f"| {r.label} | cannot build: {r.error} |")
            continue
        acc = f" {100 * r.accuracy:.1f} % |" if r.accuracy is not None else (
            " - |" if has_acc else "")
        lines.append(f"| {r.label} | {r.params:,} | {r.arena:,} | {r.lower_bound:,} | "
                     f"{r.static:,} | {r.total:,} | {'yes' if r.fits else 'no'} | "
                     f"{r.flash_tables:,} | {r.macs:,} |{acc}")
    lines += ["", (f"Recommended: **{chosen.label}** ({chosen.total:,} B"
                   + (f", {100 * chosen.accuracy:.1f} % estimated" if chosen.accuracy
                      is not None else ", by capability: no accuracy measured") + ")")
              if chosen else "Nothing fits the budget."]
    (out / "plan.md").write_text("\n".join(lines) + "\n")
    (out / "plan.json").write_text(json.dumps(
        {"budget": budget, "target": target.name, "chosen": chosen.label if chosen else None,
         "rows": [{**dataclasses.asdict(r), "total": r.total, "label": r.label}
                  for r in rows]}, indent=1, default=str) + "\n")
    _plot(rows, budget, out / "plan.png", has_acc)


def _plot(rows: list[PlanRow], budget: int, path: Path, has_acc: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.error is None]
    fig, ax = plt.subplots(1, 2 if has_acc else 1, figsize=(13 if has_acc else 8,
                                                          0.35 * len(ok) + 2), squeeze=False)
    a = ax[0][0]
    a.barh([r.label for r in ok], [r.total / 1024 for r in ok],
           color=["tab:green" if r.fits else "tab:red" for r in ok])
    a.axvline(budget / 1024, color="k", ls="--", label=f"budget {budget / 1024:.0f} KiB")
    a.set_xlabel("training SRAM (KiB)")
    a.invert_yaxis()
    a.legend()
    if has_acc:
        b = ax[0][1]
        for r in ok:
            if r.accuracy is not None:
                b.scatter(r.total / 1024, 100 * r.accuracy,
                          color="tab:green" if r.fits else "tab:red")
                b.annotate(r.label, (r.total / 1024, 100 * r.accuracy), fontsize=7)
        b.axvline(budget / 1024, color="k", ls="--")
        b.set_xlabel("training SRAM (KiB)")
        b.set_ylabel("accuracy, host estimate (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_default(graph: Graph, method: str, target: Target, num_classes: int, options: Any,
                cut: str | None, streaming: str = "auto") -> tuple[Any, list[str]]:
    """The method's defaults if they fit the target, else its largest listed size that
    does (with a note saying what was chosen and why); MemoryBudgetError naming the
    smallest total found and the best other method that fits when none does."""
    from mcutl.plan.budget import MemoryBudgetError

    m = get_method(method)
    budget = target.memory.sram_bytes if target.memory else 1 << 40
    default, _ = plan_config(graph, method, {}, target, num_classes, options, cut, budget,
                             streaming)
    if default.fits or default.error:
        return m.spec(), []  # an error is raised again, with its message, by the build
    tried = [default]
    for overrides in m.sizes_for(graph, cut):
        if not overrides:
            continue
        row, _ = plan_config(graph, method, overrides, target, num_classes, options, cut,
                             budget, streaming)
        tried.append(row)
        if row.fits:
            return m.spec(**overrides), [
                f"{method} with its default options needs {default.total:,} B of SRAM on "
                f"{target.name} ({budget:,} B): chose {row.label} instead, {row.total:,} B "
                f"(arena {row.arena:,} B + parameters/optimizer/runtime {row.static:,} B + "
                f"stack {row.stack:,} B), the largest configuration of {method} that fits; "
                "`mcutl plan` compares every method"]
    best = min((r for r in tried if not r.error), key=lambda r: r.total)
    others = [r for r, _ in plan_all(graph, target, num_classes, options, cut, budget)
              if r.method != method]
    alt = choose(others)
    raise MemoryBudgetError(
        f"no configuration of {method} fits {target.name}'s {budget:,} B of SRAM: the "
        f"smallest tried, {best.label}, needs {best.total:,} B (arena {best.arena:,} B). "
        + (f"The most capable method that fits is {alt.label} ({alt.total:,} B): "
           f"--method {alt.method}" + "".join(f" --{k.replace('_', '-')} {v}"
                                              for k, v in alt.options.items())
           if alt else "No method fits: use a target with more SRAM (`mcutl targets`)")
        + "; `mcutl plan` shows them all.")


def verified_advice(graph: Graph, method: str, spec: Any, target: Target,
                    num_classes: int, options: Any, cut: str | None, total: int,
                    streaming: str = "auto") -> list[str]:
    """The method's fit advice that planning shows lowers ``total`` on this model, each
    with the total it gives."""
    m = get_method(method)
    current = dataclasses.asdict(spec)
    budget = target.memory.sram_bytes if target.memory else 1 << 40
    out = []
    for text, overrides in m.fit_advice:
        if all(current.get(k) == v for k, v in overrides.items()):
            continue
        values = {**current, **overrides}
        row, _ = plan_config(graph, method, values, target, num_classes, options, cut,
                             budget, streaming)
        if not row.error and row.total < total:
            out.append(f"{text} ({row.total:,} B)")
    return out
