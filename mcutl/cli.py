"""`mcutl` command line: targets, doctor, ping (more commands register themselves here)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcutl import __version__
from mcutl.errors import McutlError
from mcutl.methods import METHODS, Method
from mcutl.targets import list_targets, load_target
from mcutl.train.guard import DEFAULT_MAX_REJECTED
from mcutl.train.recipe import DEFAULT_BATCH, DEFAULT_SAMPLES
from mcutl.validate import (
    check_batch,
    check_labels,
    check_output_dir,
    check_xy,
    class_count,
    fraction,
    int_at_least,
    load_npz,
    load_npz_xy,
    positive_float,
    positive_int,
    source_sample_shape,
)

# Piped or redirected output keeps whole tables and lines (rich would cut them at 80
# columns); a terminal gets its own width.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

Handler = Callable[[argparse.Namespace], int]


def _kib(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n / 1024:.1f} KiB"


def cmd_targets(args: argparse.Namespace) -> int:
    table = Table(title="mcutl targets")
    for col in ("name", "cpu", "flash", "SRAM", "stack", "UART", "int8 kernels",
                "QEMU machine"):
        table.add_column(col)
    rows = []
    for t in list_targets():
        m = t.memory
        row = {
            "name": t.name,
            "cpu": t.cpu or "native",
            "flash_bytes": m.flash_bytes if m else None,
            "sram_bytes": m.sram_bytes if m else None,
            "stack_bytes": m.stack_bytes if m else None,
            "uart": t.uart.driver if t.uart else "stdio",
            "kernels": t.kernels,
            "qemu": t.qemu_machine,
            "description": t.description,
        }
        rows.append(row)
        table.add_row(
            t.name,
            row["cpu"],
            _kib(m.flash_bytes) if m else "-",
            _kib(m.sram_bytes) if m else "-",
            _kib(m.stack_bytes) if m else "-",
            row["uart"],
            t.kernels,
            t.qemu_machine or "-",
        )
    if args.json:
        print(json.dumps(rows))
    else:
        console.print(table)
    return 0


_TOOLS = [
    ("gcc", "host build", "apt-get install gcc"),
    (
        "arm-none-eabi-gcc",
        "Cortex-M build",
        "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi",
    ),
    ("arm-none-eabi-size", "size report", "apt-get install binutils-arm-none-eabi"),
    ("qemu-system-arm", "emulated device", "apt-get install qemu-system-arm"),
]


def _version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.splitlines()[0] if out.stdout else "?"


def _newlib_ok() -> bool:
    """newlib-nano is a separate Debian package; probe for its specs file."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        return False
    out = subprocess.run(
        [gcc, "-print-file-name=nano.specs"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return out not in ("", "nano.specs")


def cmd_doctor(args: argparse.Namespace) -> int:
    missing = []
    table = Table(title="mcutl doctor")
    for col in ("tool", "used for", "status", "fix"):
        table.add_column(col)
    for tool, purpose, fix in _TOOLS:
        path = shutil.which(tool)
        if path:
            table.add_row(tool, purpose, f"[green]ok[/] {_version(tool)}", "")
        else:
            missing.append(fix)
            table.add_row(tool, purpose, "[red]missing[/]", fix)
    nano = _newlib_ok()
    table.add_row(
        "newlib-nano",
        "Cortex-M libc",
        "[green]ok[/]" if nano else "[red]missing[/]",
        "" if nano else "apt-get install libnewlib-arm-none-eabi",
    )
    if not nano:
        missing.append("apt-get install libnewlib-arm-none-eabi")
    for mod, purpose in (("tflite_runtime", "bit-exact oracle"), ("torch", "frontend/reference")):
        try:
            __import__(mod)
            table.add_row(mod, purpose, "[green]ok[/]", "")
        except ImportError:
            table.add_row(mod, purpose, "[red]missing[/]", "pip install -e .")
            missing.append("pip install -e .")
    console.print(table)
    if missing:
        err_console.print("[red]missing:[/] run " + " && ".join(dict.fromkeys(missing)))
        return 1
    console.print("[green]all tools present[/]")
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    from mcutl.firmware import build_base
    from mcutl.link.session import open_session

    target = load_target(args.target)
    fw = build_base(target, semihosting=args.port is None)
    with open_session(target, fw.elf, qemu=args.qemu, port=args.port, baud=args.baud) as s:
        h = s.hello
        info = {
            "protocol_version": h.proto_version,
            "max_payload": h.max_payload,
            "target": h.target,
            "build_id": h.build_id,
            "arena_bytes": h.arena_bytes,
            "model_hash": h.model_hash.hex(),
            "firmware_elf": str(fw.elf),
            "link": "qemu" if args.qemu else (args.port or "host"),
        }
        if fw.size is not None:
            info.update({f"elf_{k}": v for k, v in fw.size.to_dict().items()})
        ended = s.finish(0) if (args.qemu or target.is_host) else None
    if args.json:
        print(json.dumps(info))
        return 0
    table = Table(title=f"HELLO from {h.target}")
    table.add_column("field")
    table.add_column("value")
    for k, v in info.items():
        table.add_row(k, str(v))
    console.print(table)
    if ended is not None:
        code = ended if isinstance(ended, int) else ended.exit_code
        console.print(f"device answered HELLO and exited with code {code}")
    return 0


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError as exc:
        raise McutlError(f"--input-shape {text!r}: give sizes like 1,1,28,28") from exc
    if min(shape) < 1:
        raise McutlError(f"--input-shape {text!r}: every size must be >= 1, e.g. 1,1,28,28")
    return shape


def cmd_compile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcutl.compile import compile_backbone, load_calib

    out = check_output_dir(args.output)
    calib = load_calib(Path(args.calib) if args.calib else None)
    shape = _parse_shape(args.input_shape)
    if args.method in (None, "none"):
        with console.status(f"compiling {args.model} for {args.target}"):
            info, _, _ = compile_backbone(args.model, args.target, out, calib=calib,
                                          input_shape=shape, source_name=str(args.model),
                                          streaming=args.streaming)
        console.print((out / "report.md").read_text(), markup=False, highlight=False)
    else:
        from mcutl.compile import compile_model
        from mcutl.methods import get_method
        from mcutl.train.codegen import TrainOptions

        method = get_method(args.method)
        if not args.num_classes:
            raise McutlError(f"--method {method.name} needs --num-classes N (classes of the "
                             "new task)")
        values = {f.name: getattr(args, f"m_{f.name}", None) for f in method.options()}
        # no option given: the defaults, or the largest size that fits (compile says so)
        spec = method.make_spec(values) if any(v is not None for v in values.values()) \
            else None
        lr = args.lr if args.lr is not None else method.lr
        options = TrainOptions(optimizer=args.optimizer, lr=lr, momentum=args.momentum,
                               max_loss=args.max_loss, autosave=args.autosave)
        with console.status(f"compiling {args.model} with {method.name} for {args.target}"):
            c = compile_model(
                args.model, args.target, out, num_classes=args.num_classes, calib=calib,
                input_shape=shape, spec=spec, method=method.name, cut=args.cut,
                options=options, source_name=str(args.model), streaming=args.streaming,
                head_from_classifier={"auto": None, "classifier": True, "new": False}[args.head])
        info, tm = c.info, c.tm
        assert tm is not None
        for note in c.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        plan = json.loads((out / "plan.json").read_text())
        console.print(
            f"{method.summary(tm)}\n"
            f"arena {plan['peak_bytes']} B (lower bound {plan['lower_bound_bytes']} B), "
            f"static {plan['static_bytes']} B, stack {plan['stack_bytes']} B, "
            f"SRAM {plan['sram_bytes']} B; plan in {out / 'plan.json'} and plan.png",
            highlight=False)
    console.print(f"[green]built[/] {', '.join(str(out / p) for p in info.firmware.values())}")
    return 0


def _list_of_str(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def add_method_options(parser: argparse.ArgumentParser, method: Method) -> None:
    """The method's spec fields as options of `compile` (dest ``m_<field>``)."""
    group = parser.add_argument_group(f"--method {method.name} options ({method.title})")
    for f in method.options():
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = type(default) if default is not None else str
        conv: Any = _list_of_str if "list" in str(f.type) else kind
        extra: dict[str, Any] = {}
        if "choices" in f.metadata:
            extra["choices"] = list(f.metadata["choices"])
        text = f"{f.metadata.get('help', '')} (default: {default})"
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"m_{f.name}", type=conv,
                           metavar=f.name.upper(), default=None, help=text, **extra)


def cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from mcutl.codegen.backbone import quantize_input
    from mcutl.compile import load_and_quantize, load_calib
    from mcutl.fit import choose, estimate_accuracy, parse_bytes, plan_all, write_plan
    from mcutl.ir.layout import to_ir_layout
    from mcutl.train.codegen import TrainOptions

    target = load_target(args.target)
    if target.memory is None and not args.budget:
        raise McutlError(f"target {target.name} has no SRAM size: give --budget")
    budget = parse_bytes(args.budget) if args.budget else target.memory.sram_bytes  # type: ignore[union-attr]
    if args.num_classes < 2:
        raise McutlError(f"--num-classes {args.num_classes}: a classifier needs at least 2")
    out = check_output_dir(args.output)
    data = load_npz_xy(args.data) if args.data else None
    graph = load_and_quantize(args.model, load_calib(Path(args.calib) if args.calib else None),
                              _parse_shape(args.input_shape))
    methods = [m for m in args.methods.split(",") if m] if args.methods else None
    with console.status(f"planning every method on {args.model} for {target.name}"):
        planned = plan_all(graph, target, args.num_classes, TrainOptions(), args.cut, budget,
                           methods)
    rows = [r for r, _ in planned]
    if data is not None:
        x, y = data
        y = check_labels(y, args.num_classes, f"--data {args.data} labels")
        t = graph.tensors[graph.inputs[0]]
        assert t.quant is not None
        check_batch(x, source_sample_shape(t.shape, graph.source_layout), graph.source_layout,
                    f"--data {args.data} inputs",
                    (float(t.quant.scale[0]), int(t.quant.zero_point[0])))
        xq = x if x.dtype == np.int8 else quantize_input(
            x, float(t.quant.scale[0]), int(t.quant.zero_point[0]))
        xq = np.ascontiguousarray(to_ir_layout(xq, graph.source_layout)).astype(np.int8)
        fitting = [(r, tm) for r, tm in planned if r.fits and tm is not None]
        for k, (r, tm) in enumerate(fitting):
            with console.status(f"host accuracy estimate {k + 1}/{len(fitting)}: {r.label}"):
                r.accuracy = estimate_accuracy(tm, xq, y)
    chosen = choose(rows)
    write_plan(rows, chosen, budget, target, out, str(args.model))
    table = Table(title=f"training methods on {target.name}, budget {budget:,} B")
    for col in ("method", "params", "arena", "static", "total SRAM", "fits", "MACs/step",
                *(("accuracy",) if args.data else ())):
        table.add_column(col)
    for r in rows:
        if r.error:
            table.add_row(r.label, "cannot build", r.error[:60], "", "", "", "")
            continue
        table.add_row(r.label, f"{r.params:,}", f"{r.arena:,}", f"{r.static:,}",
                      f"{r.total:,}", "yes" if r.fits else "no", f"{r.macs:,}",
                      *((f"{100 * r.accuracy:.1f} %" if r.accuracy is not None else "-",)
                        if args.data else ()))
    console.print(table)
    if chosen is None:
        err_console.print(f"nothing fits {budget:,} B; the smallest is "
                          f"{min((r for r in rows if not r.error), key=lambda r: r.total).label}"
                          if any(not r.error for r in rows) else "nothing could be built")
        return 1
    console.print(f"recommended: [bold]{chosen.label}[/] ({chosen.total:,} B"
                  + (f", {100 * chosen.accuracy:.1f} % on the held-out part of {args.data}"
                     if chosen.accuracy is not None else ", by capability") + f"); "
                  f"{out / 'plan.md'}, {out / 'plan.png'}", highlight=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcutl.verify.harness import verify

    data = load_npz_xy(args.data) if args.data else None
    table = Table(title=f"verify {args.build}")
    for col in ("step", "label", "loss (device)", "loss (reference)", "rel err",
                "max grad rel err", "int8 flips", "rejected", "digest"):
        table.add_column(col)
    rep = verify(Path(args.build), steps=args.steps, data=data, qemu=args.qemu, port=args.port,
                 baud=args.baud, batch=args.batch, seed=args.seed,
                 flip_margin=args.flip_margin, max_rejected=args.max_rejected,
                 link_faults=args.link_faults, reset_at=args.reset_at)
    for r in rep.steps:
        g = max(r.grad_rel_err.values()) if r.grad_rel_err else None
        table.add_row(str(r.step), str(r.label), f"{r.loss_device:.6f}",
                      f"{r.loss_reference:.6f}", f"{r.loss_rel_err:.1e}",
                      "-" if g is None else f"{g:.1e}", str(r.int8_flips), r.rejected or "-",
                      f"{r.digest:08x}")
    console.print(table)
    console.print(f"max loss rel err {rep.max_loss_rel_err:.2e}, max gradient rel err "
                  f"{rep.max_grad_rel_err:.2e}; int8 rounding flips at requantisation points "
                  f"{rep.int8_flips} of {rep.int8_checked} values (ties, taken from the "
                  f"device); rejected by the device's guard (the reference agreed): "
                  f"{rep.rejected_samples} samples, {rep.rejected_updates} updates; device "
                  f"stats {rep.stats}", highlight=False)
    if rep.resumed:
        console.print(f"restart: {rep.resumed}", highlight=False)
    if rep.stopped:
        err_console.print(f"[red]error:[/] {rep.stopped}", highlight=False)
        return 2
    if not rep.passed:
        err_console.print(f"[red]MISMATCH[/] {rep.first_mismatch}", highlight=False)
        return 1
    console.print(f"[green]verified[/] {len(rep.steps)} steps ({rep.link}); "
                  f"{Path(args.build) / 'verify.json'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from rich.progress import Progress

    from mcutl.run import run_build

    x = load_npz(args.input, "--input")[0]
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("inference", total=len(x))
        res = run_build(
            Path(args.build),
            x,
            qemu=args.qemu,
            port=args.port,
            baud=args.baud,
            progress=lambda i: bar.update(task, completed=i),
            what=f"--input {args.input}",
        )
    np.savez(args.output, y=res.y, scale=np.float32(res.scale),
             zero_point=np.int32(res.zero_point), ticks=np.asarray(res.ticks, dtype=np.uint32))
    console.print(f"wrote {args.output}: y {res.y.shape} int8, scale {res.scale:g}, "
                  f"zero point {res.zero_point}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mcutl.compile import BuildInfo
    from mcutl.train.loop import TrainingStopped, load_state_file, plot_losses, train
    from mcutl.train.recipe import default_epochs

    build = Path(args.build)
    x, y = load_npz_xy(args.data)
    # checked before the holdout split, so that a bad sample is named by its index
    info = BuildInfo.load(build)
    y = check_xy(x, y, info.num_classes, f"--data {args.data}")
    check_batch(x, source_sample_shape(info.input_shape_nhwc, info.source_layout),
                info.source_layout, f"--data {args.data} inputs",
                (info.input_scale, info.input_zero_point))
    if args.resume and args.init_from:
        raise McutlError("--resume continues from the device's checkpoint and --init-from "
                         "from a file: give one of them")
    init = load_state_file(build, Path(args.init_from)) if args.init_from else None
    n_eval = int(round(len(x) * args.holdout))
    if len(x) - n_eval < 1:
        raise McutlError(f"--data {args.data} has {len(x)} samples: none left to train on "
                         f"after --holdout {args.holdout}; give more samples or a smaller "
                         "--holdout")
    order = np.random.default_rng(args.seed).permutation(len(x))
    ev, tr = order[:n_eval], order[n_eval:]
    if args.epochs is None:
        args.epochs = default_epochs(len(tr))
    total_updates = -(-args.epochs * len(tr) // args.batch)
    torch.set_num_threads(1)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[rate]:.1f} samples/s  loss {task.fields[loss]:.4f}"),
                  TimeRemainingColumn(), console=err_console) as bar:
        task = bar.add_task("train", total=args.epochs * len(tr), rate=0.0, loss=float("nan"))
        start = [0.0]

        def progress(done: int, total: int, loss: float) -> None:
            import time

            if done == 1:
                start[0] = time.perf_counter()
            rate = (done - 1) / max(time.perf_counter() - start[0], 1e-9)
            bar.update(task, completed=done, rate=rate, loss=loss)

        try:
            res = train(build, x[tr], y[tr], epochs=args.epochs, batch=args.batch,
                        eval_x=x[ev] if n_eval else None, eval_y=y[ev] if n_eval else None,
                        qemu=args.qemu, port=args.port, baud=args.baud, seed=args.seed,
                        progress=progress, max_rejected=args.max_rejected,
                        init_from=init, link_faults=args.link_faults, resume=args.resume,
                        recipe=_recipe(args, info, total_updates))
        except TrainingStopped as exc:
            bar.stop()
            err_console.print(f"[red]error:[/] {exc}", highlight=False)
            return 130 if exc.interrupted else 2
    plot_losses(res, build / "train.png")
    if args.save:
        torch.save({k: torch.from_numpy(v) for k, v in res.params.items()}, args.save)
    acc = ""
    if res.acc_before is not None and res.acc_after is not None:
        acc = (f"; held-out accuracy on the device {100 * res.acc_before:.1f} % -> "
               f"{100 * res.acc_after:.1f} % ({n_eval} samples)")
    ok = [v for v in res.losses if np.isfinite(v)]
    rejected = ""
    if res.rejected_samples or res.rejected_updates:
        rejected = (f"; the device's guard rejected {res.rejected_samples} samples (loss not "
                    f"finite or above the build's max_loss) and {res.rejected_updates} "
                    "updates (non-finite)")
    if res.stats.get("save_errors"):
        err_console.print(f"[yellow]warning:[/] {res.stats['save_errors']} checkpoint saves "
                          "failed on the device: what it learned since its last good save is "
                          "lost at a reset. Check its store (flash sectors of [store] in the "
                          "target.toml, or the mcutl.store file).", highlight=False)
    share = (res.rejected_samples + res.rejected_updates) / max(res.samples, 1)
    if share > 0.1:
        err_console.print(f"[yellow]warning:[/] the device's guard rejected {100 * share:.0f} % "
                          "of the steps: this training diverges. Compile with a lower --lr "
                          "(or raise --max-loss if such losses are expected).", highlight=False)
    kept = (f"; saved on the device as checkpoint {res.checkpoint} (it survives a reset; "
            "continue with --resume)" if res.checkpoint else
            f"; not saved on the device ({res.store_note})")
    if res.resumed_from:
        kept = f"; continued from the device's checkpoint {res.resumed_from}" + kept
    link = ""
    if res.retries:
        link = f"; link: {res.retries} resends, frames of {res.link_payload} B at the end"
    console.print(f"trained on {res.samples} samples ({args.epochs} epochs of {len(tr)}, "
                  f"batch {args.batch}) at {res.samples_per_s:.1f} samples/s; "
                  f"loss {np.mean(ok[:10]):.3f} -> {np.mean(ok[-10:]):.3f}{acc}{rejected}{kept}"
                  f"{link}; "
                  f"{build / 'train.png'}" + (f"; parameters in {args.save}" if args.save else ""),
                  highlight=False)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcutl.profile import profile

    with console.status(f"profiling {args.build} in QEMU (-icount)"):
        rep = profile(Path(args.build), steps=args.steps, seed=args.seed)
    table = Table(title=f"profile {args.build} ({rep.target}, {rep.steps} steps, "
                        "instructions per step under QEMU -icount)")
    for col in ("#", "phase", "kernel call", "MACs", "instructions", "instr/MAC", "share"):
        table.add_column(col, justify="right" if col not in ("phase", "kernel call") else "left")
    total = rep.total()
    for r in rep.rows:
        table.add_row(str(r.index), r.phase, r.what[:70], f"{r.macs:,}",
                      f"{r.instructions:,.0f}", "-" if r.per_mac is None else f"{r.per_mac:.1f}",
                      f"{100 * r.instructions / total:.1f} %")
    console.print(table)
    parts = [f"{p} {rep.total(p):,.0f} ({100 * rep.total(p) / total:.0f} %, "
             + (f"{rep.total(p) / rep.macs(p):.1f}/MAC" if rep.macs(p) else "-") + ")"
             for p in ("forward", "backward", "update")]
    console.print(f"step: {total:,.0f} instructions = {1e3 * total / rep.clock_hz:.1f} ms at "
                  f"{rep.clock_hz / 1e6:.0f} MHz (1 instruction per cycle); "
                  + "; ".join(parts), highlight=False)
    if args.json:
        Path(args.json).write_text(rep.to_json())
        console.print(f"wrote {args.json}")
    return 0


_RECIPE_FLAGS = ("lr", "momentum", "weight_decay", "schedule", "warmup", "period", "gamma",
                 "clip", "sum")


def _recipe(args: argparse.Namespace, info: Any, total_updates: int) -> Any:
    """The recipe `train` sends (CONFIG): the build's lr, momentum and weight decay with a
    cosine decay over this run (the default schedule, recipe.over_run), and the options
    given over them; None when resuming without options (the device keeps its
    checkpoint's)."""
    from mcutl.train.recipe import Recipe, over_run

    if args.resume and all(getattr(args, k) in (None, False) for k in _RECIPE_FLAGS):
        return None
    base = Recipe.from_options(info.training["options"])
    if args.schedule is None:
        base = over_run(base, total_updates)
    given = {k: getattr(args, k) for k in ("lr", "momentum", "weight_decay", "schedule",
                                           "warmup", "period", "gamma")
             if getattr(args, k) is not None}
    if args.clip is not None:
        given["clip_norm"] = args.clip
    if args.sum:
        given["average"] = False
    if given.get("schedule") == "cosine" and "period" not in given:
        given["period"] = max(1, total_updates)  # decay over this run
    recipe = dataclasses.replace(base, **given)
    recipe.check()
    return recipe


def cmd_flash(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcutl.flash import flash

    with console.status(f"flashing {args.build} via {args.probe}"):
        res = flash(Path(args.build), args.probe, uid=args.uid, frequency=args.frequency,
                    target=args.target, pyocd=args.pyocd, timeout=args.timeout)
    console.print(f"[green]flashed[/] {res.elf} to {res.target} ({res.pyocd_target}) via "
                  f"{res.probe} in {res.seconds:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mcutl.export import export_library

    with console.status(f"exporting {args.build} as a C library"):
        res = export_library(Path(args.build), Path(args.lib), args.target)
    for lib in res.libraries:
        console.print(f"{lib.path}: {lib.target}, text {lib.text} B, data {lib.data} B, "
                      f"bss {lib.bss} B", highlight=False)
    for name, why in res.skipped.items():
        console.print(f"[yellow]no {name} library:[/] {escape(why)}", highlight=False)
    console.print(f"[green]exported[/] {len(res.files)} files to {res.out}; see "
                  f"{res.out / 'README.md'}", highlight=False)
    return 0


def _method_in(argv: list[str]) -> str | None:
    """The value of --method in argv (its options are added to `compile`)."""
    for k, a in enumerate(argv):
        if a == "--method" and k + 1 < len(argv):
            return argv[k + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return None


def build_parser(method: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcutl",
        description="Compile a frozen int8 backbone + Rep-Net side network into MCU firmware "
        "that learns on the device.",
    )
    p.add_argument("--version", action="version", version=f"mcutl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("targets", help="list the targets and their memory")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_targets)

    d = sub.add_parser("doctor", help="check the toolchain and QEMU, say how to install")
    d.set_defaults(func=cmd_doctor)

    g = sub.add_parser("ping", help="build the base firmware, connect, print the device's HELLO")
    g.add_argument("--target", required=True)
    where = g.add_mutually_exclusive_group()
    where.add_argument("--qemu", action="store_true", help="run the firmware in QEMU")
    where.add_argument("--port", help="serial port of a board, e.g. /dev/ttyACM0")
    g.add_argument("--baud", type=positive_int, default=115200)
    g.add_argument("--json", action="store_true", help="one machine-readable JSON line")
    g.set_defaults(func=cmd_ping)

    c = sub.add_parser("compile", help="compile a model into firmware (inference of the backbone)")
    c.add_argument("model", help="model file: .onnx, .pt2 (torch.export) or int8 .tflite")
    c.add_argument("--target", required=True)
    c.add_argument("--calib", help="npz whose first array is a calibration batch (float models)")
    c.add_argument("--input-shape", help="input shape incl. batch, e.g. 1,1,28,28 (if needed)")
    c.add_argument("--method", help="on-device training method (omit: inference only): "
                   + "; ".join(f"{m.name}: {m.title}" for m in METHODS.values())
                   + ". `mcutl compile --method NAME --help` lists its options")
    c.add_argument("--num-classes", type=class_count, help="classes of the new task (training)")
    c.add_argument("--cut", help="node/tensor where the feature extractor ends")
    c.add_argument("--head", choices=["auto", "classifier", "new"], default="auto",
                   help="where the trained head starts: the model's own classifier "
                        "(classifier), a fresh one (new), or the classifier when it has "
                        "--num-classes outputs (auto, the default)")
    if method is not None and method in METHODS:
        add_method_options(c, METHODS[method])
    c.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    c.add_argument("--lr", type=positive_float,
                   help="learning rate (> 0; default: the method's, from the examples' "
                        "tables with `mcutl train`'s default recipe: 0.03 for last and bias, "
                        "0.1 for the others)")
    c.add_argument("--momentum", type=fraction(), default=0.9, help="SGD momentum, 0 <= m < 1")
    c.add_argument("--autosave", type=int_at_least(0), default=100,
                   help="the device saves a checkpoint every this many updates (0: only "
                        "when asked); default: %(default)s")
    c.add_argument("--max-loss", type=positive_float, default=100.0,
                   help="step guard: a sample whose loss is above this (or not finite) adds "
                        "no gradient; the device counts it (default: 100)")
    c.add_argument("--streaming", choices=["auto", "max", "off"], default="auto",
                   help="inference: run early high-resolution layers band by band of rows "
                        "so their maps are never whole in SRAM (training: the frozen part "
                        "before the first connector; auto: where it lowers the "
                        "arena for at most 10%% more MACs, or the least recomputation that "
                        "fits when layer by layer does not fit the target; max: the "
                        "smallest arena whatever it recomputes; off: layer by layer)")
    c.add_argument("-o", "--output", default="build", help="build folder (default: build/)")
    c.set_defaults(func=cmd_compile)

    pl = sub.add_parser("plan", help="plan every training method and size on a model: "
                        "SRAM, flash, MACs, what fits, (with --data) accuracy; recommend one")
    pl.add_argument("model", help="model file: .onnx, .pt2 (torch.export) or int8 .tflite")
    pl.add_argument("--target", required=True)
    pl.add_argument("--num-classes", type=class_count, required=True)
    pl.add_argument("--calib", help="npz whose first array is a calibration batch")
    pl.add_argument("--input-shape", help="input shape incl. batch, e.g. 1,1,28,28")
    pl.add_argument("--cut", help="node/tensor where the feature extractor ends")
    pl.add_argument("--budget", help="SRAM budget, e.g. 128K (default: the target's SRAM)")
    pl.add_argument("--data", help="npz: a few labelled samples (inputs, labels) for a "
                                   "host accuracy estimate of every configuration that fits")
    pl.add_argument("--methods", help="comma-separated subset of the methods")
    pl.add_argument("-o", "--output", default="build/plan", help="where plan.md/png go")
    pl.set_defaults(func=cmd_plan)

    r = sub.add_parser("run", help="run a compiled backbone on a batch of inputs")
    r.add_argument("build", help="build folder from `mcutl compile`")
    r.add_argument("--input", required=True, help="npz: first array = batch, source layout")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--qemu", action="store_true", help="run in QEMU (default: host build)")
    where.add_argument("--port", help="serial port of a board running this build")
    r.add_argument("--baud", type=positive_int, default=115200)
    r.add_argument("-o", "--output", default="out.npz")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="train on the device and check it against the reference")
    v.add_argument("build")
    where = v.add_mutually_exclusive_group()
    where.add_argument("--host", action="store_true", help="the host build (default)")
    where.add_argument("--qemu", action="store_true")
    where.add_argument("--port")
    v.add_argument("--baud", type=positive_int, default=115200)
    v.add_argument("--steps", type=positive_int, default=20)
    v.add_argument("--batch", type=positive_int, default=1, help="samples per optimizer update")
    v.add_argument("--data", help="npz: inputs (model layout) then labels")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-rejected", type=int_at_least(0), default=DEFAULT_MAX_REJECTED,
                   help="stop after the device's guard rejected this many steps in a row "
                        "(0: never; default: %(default)s)")
    v.add_argument("--link-faults", type=fraction(), default=0.0, help=argparse.SUPPRESS)
    v.add_argument("--reset-at", type=int_at_least(1), help="kill and restart the device "
                   "before this step: it must resume from its checkpoint (host or --qemu)")
    v.add_argument("--flip-margin", type=positive_float, default=0.01,
                   help="an int8 value that the device rounds differently from the reference "
                        "is a tie if the reference's m/s is within this many quantisation "
                        "steps of the rounding boundary (default 0.01)")
    v.set_defaults(func=cmd_verify)

    tr = sub.add_parser("train", help="stream a dataset to the device, which trains on it")
    tr.add_argument("build")
    tr.add_argument("--data", required=True, help="npz: inputs (model layout) then labels")
    tr.add_argument("--epochs", type=positive_int,
                    help=f"passes over the data (default: as many as make {DEFAULT_SAMPLES} "
                         "samples, at least 1)")
    tr.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH,
                    help="samples per optimizer update, their gradients averaged "
                         "(default: %(default)s)")
    tr.add_argument("--holdout", type=fraction(), default=0.2,
                    help="fraction kept out of training to measure accuracy (default 0.2)")
    tr.add_argument("--save", help="write the trained parameters as a PyTorch state dict")
    rg = tr.add_argument_group("training recipe (sent to the device: no recompile; default: "
                               "the build's lr and momentum, decayed to 0 over the run by "
                               "a cosine)")
    rg.add_argument("--lr", type=positive_float, help="base learning rate")
    rg.add_argument("--momentum", type=fraction(), help="SGD momentum, 0 <= m < 1")
    rg.add_argument("--weight-decay", type=float, help="L2 coefficient, >= 0")
    rg.add_argument("--schedule", choices=["constant", "step", "cosine"],
                    help="learning-rate schedule over the updates (cosine: decays to "
                         "--gamma x lr over the run unless --period is given)")
    rg.add_argument("--warmup", type=int_at_least(0), help="updates of linear warm-up")
    rg.add_argument("--period", type=int_at_least(1),
                    help="step: updates between decays; cosine: updates to decay over")
    rg.add_argument("--gamma", type=fraction(hi_open=False),
                    help="step: decay factor; cosine: final fraction of lr")
    rg.add_argument("--clip", type=float, help="clip the gradient's L2 norm to this (0: off)")
    rg.add_argument("--sum", action="store_true",
                    help="sum a mini-batch's gradients instead of averaging them")
    tr.add_argument("--resume", action="store_true",
                    help="continue from the newest checkpoint saved on the device (it saves "
                         "at the end of every train, and every --autosave updates)")
    tr.add_argument("--init-from", help="start from these parameters (a state dict written "
                                        "by --save or by an interrupted run) instead of the "
                                        "build's")
    tr.add_argument("--max-rejected", type=int_at_least(0), default=DEFAULT_MAX_REJECTED,
                    help="stop after the device's guard rejected this many steps in a row "
                         "(0: never; default: %(default)s)")
    tr.add_argument("--link-faults", type=fraction(), default=0.0,
                    help="QEMU only, for testing: damage this fraction of the link's bytes")
    tr.add_argument("--seed", type=int, default=0)
    where = tr.add_mutually_exclusive_group()
    where.add_argument("--host", action="store_true", help="the host build (default)")
    where.add_argument("--qemu", action="store_true")
    where.add_argument("--port")
    tr.add_argument("--baud", type=positive_int, default=115200)
    tr.set_defaults(func=cmd_train)

    ex = sub.add_parser("export", help="the learner of a training build as a C library "
                        "for your own firmware (sources, Makefile, example, static libraries)")
    ex.add_argument("build", help="training build folder from `mcutl compile --method ...`")
    ex.add_argument("--lib", required=True, metavar="DIR", help="folder to write the library to")
    ex.add_argument("--target", action="append", help="build a static library for this target "
                    "(repeatable; default: the build's target and host, where a toolchain is "
                    "installed)")
    ex.set_defaults(func=cmd_export)

    pf = sub.add_parser("profile", help="instructions per kernel call of a training step "
                                        "(QEMU -icount)")
    pf.add_argument("build")
    pf.add_argument("--qemu", action="store_true", required=True,
                    help="run in QEMU under -icount (the only way for now)")
    pf.add_argument("--steps", type=positive_int, default=4, help="steps averaged")
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--json", help="also write the table as JSON")
    pf.set_defaults(func=cmd_profile)

    from mcutl.flash import PROBES, parse_frequency

    fl = sub.add_parser("flash", help="write a build's firmware.elf to a board with pyOCD")
    fl.add_argument("build", help="build folder from `mcutl compile`")
    fl.add_argument("--probe", required=True, choices=list(PROBES), help="stlink or cmsis-dap")
    fl.add_argument("--uid", help="probe unique ID or a unique part of it (see `pyocd list`)")
    fl.add_argument("--frequency", type=parse_frequency, help="SWD clock, e.g. 4m, 500k")
    fl.add_argument("--target", help="refuse unless the build is for this target")
    fl.add_argument("--pyocd", default="pyocd", help="pyocd executable (default: pyocd)")
    fl.add_argument("--timeout", type=positive_float, default=300.0)
    fl.set_defaults(func=cmd_flash)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_method_in(argv)).parse_args(argv)
    func: Handler = args.func
    try:
        return func(args)
    except McutlError as exc:
        # escaped: messages quote shapes like [batch, 2, length], not rich markup
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
