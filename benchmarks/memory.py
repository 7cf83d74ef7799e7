"""SRAM of inference and of every training method's step, on the example backbones and
MLPerf-Tiny-style models (random weights), against the arena's lower bound, TFLite
Micro's arena and the 128 KB / 320 KB parts.

    python benchmarks/memory.py [--out build/memory/memory.json] [--models a,b] [--quick]

Inference: the plan `compile_backbone` produces (for stm32f405; a model whose inference
does not fit the F405 is compiled for the next target with more SRAM, stm32f746 then
mps2_an386, to plan it without failing the budget check): mcutl's arena, its lower bound
(the most bytes live at one step of the schedule used), TFLite Micro's arena for the
same int8 .tflite, and the total SRAM (arena + runtime + the linker's stack). Training:
each method mcutl compiles, at its default options, planned by the real step compiler
and arena planner for stm32f405 (what `mcutl plan` does): the step's peak SRAM (arena +
parameters/gradients/optimizer state + runtime + stack) and the arena's lower bound.
A method that cannot be built on a model is recorded with its error. Writes the JSON,
and ``memory.png`` beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import (  # noqa: E402
    TinyIMU1D,
    TinyMBV2,
    randomize_batchnorm_stats,
    spread_init,
)
from examples.mlperf_tiny import DSCNNKWS, MobileNetV1VWW, MobileNetV2, ResNet8  # noqa: E402
from mcutl.compile import compile_backbone, load_and_quantize  # noqa: E402
from mcutl.errors import McutlError  # noqa: E402
from mcutl.fit import PlanRow, plan_config  # noqa: E402
from mcutl.methods import METHODS  # noqa: E402
from mcutl.methods.repnet import memory_aware  # noqa: E402
from mcutl.plan.budget import MemoryBudgetError  # noqa: E402
from mcutl.targets import load_target  # noqa: E402
from mcutl.train.codegen import TrainOptions  # noqa: E402

#: the target both kinds of build are planned for first (128 KB of SRAM)
TARGET = "stm32f405"
#: where a backbone whose inference does not fit TARGET is planned instead, in order
FALLBACK_TARGETS = ("stm32f746", "mps2_an386")
#: the SRAM sizes of the fits columns: the F405's 128 KB and the F746's 320 KB
SRAM_SIZES = {"128 KB": "stm32f405", "320 KB": "stm32f746"}
DEFAULT_SCHEDULE = "layer-by-layer"


@dataclass(frozen=True)
class ModelCase:
    title: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # NCHW / NCL, batch 1
    num_classes: int  # the classes the training step's new head is planned for
    example: bool = False  # one of examples/backbones.py (--quick)


MODELS: dict[str, ModelCase] = {
    "tiny_mbv2": ModelCase("TinyMBV2 1x28x28", lambda: TinyMBV2(seed=0), (1, 1, 28, 28), 10,
                           example=True),
    "tiny_imu1d": ModelCase("TinyIMU1D 6x100", lambda: TinyIMU1D(seed=0), (1, 6, 100), 4,
                            example=True),
    "dscnn_kws": ModelCase("DS-CNN KWS 1x49x10", lambda: DSCNNKWS(seed=0), (1, 1, 49, 10),
                           12),
    "mbv1_vww": ModelCase("MobileNetV1-0.25 VWW 96x96x3", lambda: MobileNetV1VWW(0.25, 2, 0),
                          (1, 3, 96, 96), 2),
    "resnet8": ModelCase("ResNet-8 32x32x3", lambda: ResNet8(seed=0), (1, 3, 32, 32), 10),
    "mbv2_96": ModelCase("MobileNetV2-0.35 96x96x3", lambda: MobileNetV2(0.35, 10, 0),
                         (1, 3, 96, 96), 10),
    "mbv2_128": ModelCase("MobileNetV2-0.35 128x128x3", lambda: MobileNetV2(0.35, 10, 0),
                          (1, 3, 128, 128), 10),
}
QUICK = [k for k, c in MODELS.items() if c.example]


def methods() -> list[str]:
    """Every registered training method, most capable first (as `mcutl plan` lists them)."""
    return sorted(METHODS, key=lambda n: (METHODS[n].capability, n))


def sram_sizes() -> dict[str, int]:
    sizes = {}
    for label, name in SRAM_SIZES.items():
        mem = load_target(name).memory
        assert mem is not None
        sizes[label] = mem.sram_bytes
    return sizes


def stack_bytes() -> int:
    """The stack the linker reserves on the F405 (the F746 reserves the same)."""
    mem = load_target(TARGET).memory
    assert mem is not None
    return mem.stack_bytes


def fits(total: int) -> dict[str, bool]:
    return {label: total <= size for label, size in sram_sizes().items()}


def _schedule(rep: dict[str, Any]) -> str:
    """The schedule the build used (report.json's ``schedule``): layer by layer, or how
    many segments run row-streamed and the MACs their halos recompute."""
    sched = rep.get("schedule") or {}
    segments = sched.get("segments") or []
    if not segments:
        return DEFAULT_SCHEDULE
    extra = sum(int(s["extra_macs"]) for s in segments)
    base = int(rep["total_macs"]) - extra
    return f"row-streamed x{len(segments)} (+{100 * extra / max(1, base):.1f} % MAC)"


def inference(model: nn.Module, calib: np.ndarray, case: ModelCase, folder: Path
              ) -> dict[str, Any]:
    """The backbone's inference as `compile_backbone` plans it, for TARGET or, when it
    does not fit there, the first FALLBACK_TARGETS that it fits."""
    not_fit: dict[str, str] = {}
    t0 = time.perf_counter()
    for target in (TARGET, *FALLBACK_TARGETS):
        out = folder / f"inference-{target}"
        try:
            _, gen, _ = compile_backbone(model, target, out, calib=calib,
                                         input_shape=case.input_shape, source_name=case.title)
            break
        except MemoryBudgetError as exc:
            not_fit[target] = str(exc)
    else:
        raise MemoryBudgetError(f"{case.title}: inference fits none of {TARGET}, "
                                f"{', '.join(FALLBACK_TARGETS)}: {not_fit}")
    rep = json.loads((out / "report.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    arena, bound = gen.plan.arena_size(), gen.plan.lower_bound()
    static = int(plan["static_bytes"])
    total = arena + static + stack_bytes()
    tflm = rep.get("tflm_arena_bytes")
    return {
        "planned_for": target,
        "budget_errors": not_fit,  # the targets tried first, with compile's message
        "schedule": _schedule(rep),
        "schedule_detail": rep.get("schedule"),
        "arena_bytes": arena,
        "lower_bound_bytes": bound,
        "arena_over_bound": round(arena / max(1, bound), 4),
        "tflm_arena_bytes": tflm,
        "arena_over_tflm": round(arena / tflm, 4) if tflm else None,
        "runtime_bytes": static,
        "stack_bytes": stack_bytes(),
        "total_sram_bytes": total,
        "fits": fits(total),
        "macs": gen.total_macs,
        "weight_table_bytes": gen.weight_table_bytes,
        "firmware_static_ram": (rep.get("firmware_size") or {}).get("static_ram"),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def training(graph: Any, case: ModelCase, method: str, overrides: dict[str, Any] | None = None,
             cut: str | None = None) -> dict[str, Any]:
    """One method's step at its default options (or ``overrides`` and ``cut``), planned
    for TARGET (`mcutl plan`)."""
    t0 = time.perf_counter()
    target = load_target(TARGET)
    defaults = dataclasses.asdict(METHODS[method].spec(**(overrides or {})))
    row: PlanRow | None = None
    try:
        row, _ = plan_config(graph, method, overrides or {}, target, case.num_classes,
                             TrainOptions(), cut, 1 << 40)
        error = row.error
    except Exception as exc:  # noqa: BLE001 - a method that cannot be planned is a result
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    seconds = round(time.perf_counter() - t0, 2)
    if error is not None or row is None:
        return {"method": method, "options": defaults, "error": error, "seconds": seconds}
    total = row.arena + row.static + row.stack
    return {
        "method": method,
        "options": defaults,
        "error": None,
        "params": row.params,
        "arena_bytes": row.arena,
        "lower_bound_bytes": row.lower_bound,
        "arena_over_bound": round(row.arena / max(1, row.lower_bound), 4),
        "static_bytes": row.static,  # parameters + gradients + optimizer state + runtime
        "stack_bytes": row.stack,
        "total_sram_bytes": total,
        "fits": fits(total),
        "macs_per_step": row.macs,
        "seconds": seconds,
    }


def measure(key: str, folder: Path, method_names: list[str] | None = None,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """One model: its inference plan and every method's training step."""
    case = MODELS[key]
    torch.manual_seed(0)
    model = randomize_batchnorm_stats(spread_init(case.make())).eval()
    calib = np.random.default_rng(0).random((32, *case.input_shape[1:]), dtype=np.float32)
    t0 = time.perf_counter()
    inf = inference(model, calib, case, folder)
    log(f"{case.title}: inference planned for {inf['planned_for']} in {inf['seconds']} s")
    graph = load_and_quantize(model, calib, case.input_shape)
    train = []
    for m in method_names or methods():
        train.append(training(graph, case, m))
        log(f"{case.title}: {m} planned in {train[-1]['seconds']} s"
            + (f" (error: {train[-1]['error'][:80]})" if train[-1]["error"] else ""))
    aware: dict[str, Any] | None = None
    if "repnet" in (method_names or methods()):
        try:  # mcutl.methods.repnet.memory_aware: one connector, pooled head, streamed
            overrides, cut = memory_aware(graph)
            aware = {**training(graph, case, "repnet", overrides, cut), "cut": cut}
        except McutlError as exc:
            aware = {"method": "repnet", "error": str(exc), "seconds": 0.0}
        log(f"{case.title}: memory-aware repnet planned in {aware['seconds']} s")
    return {"key": key, "model": case.title, "input_shape": list(case.input_shape),
            "num_classes": case.num_classes, "inference": inf, "training": train,
            "repnet_memory_aware": aware, "seconds": round(time.perf_counter() - t0, 2)}


def run(keys: list[str], method_names: list[str] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """The benchmark's JSON document for ``keys`` (MODELS) and ``method_names``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(k, Path(tmp) / k, method_names, log) for k in keys]
    return {
        "target": TARGET,
        "sram_sizes": sram_sizes(),
        "stack_bytes": stack_bytes(),
        "methods": method_names or methods(),
        "models": rows,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def print_tables(doc: dict[str, Any], console: Console) -> None:
    labels = list(doc["sram_sizes"])
    t = Table(title=f"Inference SRAM (int8 backbone; stack {doc['stack_bytes']:,} B)")
    for c in ("model", "schedule", "arena B", "lower bound B", "arena/bound", "TFLM arena B",
              "arena/TFLM", "runtime B", "total SRAM B", *(f"fits {x}" for x in labels),
              "planned for", "s"):
        t.add_column(c, justify="left" if c in ("model", "schedule", "planned for") else "right")
    for r in doc["models"]:
        i = r["inference"]
        tflm = i["tflm_arena_bytes"]
        t.add_row(r["model"], i["schedule"], f"{i['arena_bytes']:,}",
                  f"{i['lower_bound_bytes']:,}", f"{i['arena_over_bound']:.3f}",
                  f"{tflm:,}" if tflm else "n/a",
                  f"{i['arena_over_tflm']:.3f}" if i["arena_over_tflm"] else "n/a",
                  f"{i['runtime_bytes']:,}", f"{i['total_sram_bytes']:,}",
                  *(_yes(i["fits"][x]) for x in labels), i["planned_for"],
                  f"{i['seconds']:.1f}")
    console.print(t)
    notes: list[str] = []
    t = Table(title=f"Training step SRAM on {doc['target']} (each method at its defaults; "
                    "static = parameters + gradients + optimizer state + runtime)")
    for c in ("model", "method", "params", "arena B", "lower bound B", "arena/bound",
              "static B", "stack B", "peak SRAM B", *(f"fits {x}" for x in labels), "s"):
        t.add_column(c, justify="left" if c in ("model", "method") else "right")
    for r in doc["models"]:
        for j, m in enumerate(r["training"]):
            name = r["model"] if j == 0 else ""
            last = j == len(r["training"]) - 1
            if m["error"]:
                notes.append(f"{r['model']}, {m['method']}: {m['error']}")
                dash = f"—[{len(notes)}]"
                t.add_row(name, m["method"], dash, dash, dash, dash, dash, dash, dash,
                          *("—" for _ in labels), f"{m['seconds']:.1f}", end_section=last)
                continue
            t.add_row(name, m["method"], f"{m['params']:,}", f"{m['arena_bytes']:,}",
                      f"{m['lower_bound_bytes']:,}", f"{m['arena_over_bound']:.3f}",
                      f"{m['static_bytes']:,}", f"{m['stack_bytes']:,}",
                      f"{m['total_sram_bytes']:,}", *(_yes(m["fits"][x]) for x in labels),
                      f"{m['seconds']:.1f}", end_section=last)
    console.print(t)
    for k, n in enumerate(notes, 1):
        console.print(f"[{k}] {n}", highlight=False, markup=False)
    t = Table(title="Memory-aware Rep-Net (mcutl.methods.repnet.memory_aware: one connector, "
                    "width 0.125, the head on the pooled map before the last conv; the "
                    "frozen forward streamed if the step does not fit otherwise)")
    for c in ("model", "connector", "params", "arena B", "lower bound B", "static B",
              "peak SRAM B", "Rep-Net defaults B", *(f"fits {x}" for x in labels)):
        t.add_column(c, justify="left" if c in ("model", "connector") else "right")
    for r in doc["models"]:
        m = r.get("repnet_memory_aware")
        if not m:
            continue
        default = next((d for d in r["training"] if d["method"] == "repnet"), None)
        dflt = (f"{default['total_sram_bytes']:,}" if default and not default["error"]
                else "—")
        if m["error"]:
            t.add_row(r["model"], m["error"][:60], *("—" for _ in range(5)), dflt,
                      *("—" for _ in labels))
            continue
        t.add_row(r["model"], ",".join(m["options"]["stages"] or []), f"{m['params']:,}",
                  f"{m['arena_bytes']:,}", f"{m['lower_bound_bytes']:,}",
                  f"{m['static_bytes']:,}", f"{m['total_sram_bytes']:,}", dflt,
                  *(_yes(m["fits"][x]) for x in labels))
    console.print(t)
    t = Table(title="Time per model (s)")
    for c in ("model", "inference compile", "training plans", "total"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in doc["models"]:
        t.add_row(r["model"], f"{r['inference']['seconds']:.1f}",
                  f"{sum(m['seconds'] for m in r['training']):.1f}", f"{r['seconds']:.1f}")
    t.add_row("all", "", "", f"{doc['seconds']:.1f}")
    console.print(t)


def plot(doc: dict[str, Any], path: Path) -> None:
    """memory.png: inference arena vs TFLM vs lower bound per model; training peak SRAM
    per method and model; the 128 KB and 320 KB lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["models"]
    x = np.arange(len(rows))
    fig, (a, b) = plt.subplots(2, 1, figsize=(max(9.0, 1.9 * len(rows)), 10))
    series = (("mcutl arena", "arena_bytes", "tab:blue"),
              ("lower bound", "lower_bound_bytes", "tab:gray"),
              ("TFLite Micro arena", "tflm_arena_bytes", "tab:orange"))
    w = 0.8 / len(series)
    for k, (label, key, color) in enumerate(series):
        vals = [(r["inference"][key] or 0) / 1024 for r in rows]
        a.bar(x + (k - 1) * w, vals, w, label=label, color=color)
    a.scatter(x, [r["inference"]["total_sram_bytes"] / 1024 for r in rows], marker="_",
              s=400, color="k", label="total SRAM (arena + runtime + stack)", zorder=3)
    for label, size in doc["sram_sizes"].items():
        a.axhline(size / 1024, ls="--", lw=1, color="r" if label == "128 KB" else "purple",
                  label=label)
    a.set_xticks(x, [r["model"] for r in rows], rotation=15, fontsize=8)
    a.set_ylabel("KiB")
    a.set_title("inference: arena, its lower bound, TFLite Micro's arena")
    a.legend(fontsize=8)
    names = doc["methods"]
    w = 0.8 / len(names)
    cmap = plt.get_cmap("tab10")
    built = [t["total_sram_bytes"] / 1024 for r in rows for t in r["training"] if not t["error"]]
    cross = 0.7 * min(built, default=1.0)  # where a method that cannot be built is marked
    for k, m in enumerate(names):
        vals, pos, bad = [], [], []
        for i, r in enumerate(rows):
            t = next(t for t in r["training"] if t["method"] == m)
            p = i + (k - (len(names) - 1) / 2) * w
            if t["error"]:
                bad.append(p)
            else:
                pos.append(p)
                vals.append(t["total_sram_bytes"] / 1024)
        b.bar(pos, vals, w, label=m, color=cmap(k))
        if bad:
            b.scatter(bad, [cross] * len(bad), marker="x", s=60, color=cmap(k))
    for label, size in doc["sram_sizes"].items():
        b.axhline(size / 1024, ls="--", lw=1, color="r" if label == "128 KB" else "purple",
                  label=label)
    b.set_yscale("log")
    b.set_xticks(x, [r["model"] for r in rows], rotation=15, fontsize=8)
    b.set_ylabel("peak training SRAM, KiB (log)")
    b.set_title(f"training step on {doc['target']}, each method at its defaults "
                "(x: cannot be built)")
    b.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("build/memory/memory.json"))
    ap.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--quick", action="store_true",
                    help=f"the example models only ({', '.join(QUICK)})")
    ap.add_argument("--methods", help=f"comma-separated subset of {', '.join(methods())}")
    args = ap.parse_args(argv)
    keys = QUICK if args.quick else (
        [k.strip() for k in args.models.split(",") if k.strip()] if args.models else
        list(MODELS))
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    names = [m.strip() for m in args.methods.split(",")] if args.methods else None
    if names and any(m not in METHODS for m in names):
        ap.error(f"--methods: known methods are {', '.join(methods())}")
    torch.set_num_threads(1)
    console = console or Console(width=200)
    doc = run(keys, names, log=lambda s: console.print(s, highlight=False, markup=False))
    print_tables(doc, console)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    plot(doc, args.out.parent / "memory.png")
    console.print(f"{args.out}, {args.out.parent / 'memory.png'}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
