"""`mcutl compile --method repnet`: a firmware that trains, its plan and its reports.

build/
  model.tflite            the frozen backbone (cut before its classifier), int8
  train.c, model_weights.c, model_weights.h   generated C
  firmware.elf / firmware-qemu.elf / host/firmware
  build.json              target, model hash, I/O quantisation, parameter layout
  plan.json, plan.png     every buffer's offset, size and lifetime; peak vs lower bound
  trainable.npz           initial parameters (for the host reference)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mcutl import __version__
from mcutl.compile import BuildInfo, CompileError, load_and_quantize
from mcutl.firmware import runtime_sources
from mcutl.ir.trainable import TrainableModel, describe
from mcutl.paths import RUNTIME_C
from mcutl.targets import Target, load_target
from mcutl.toolchain import Firmware, FirmwareSpec, build_many
from mcutl.train.codegen import GeneratedTraining, TrainOptions, generate_training

INT8_DIR = RUNTIME_C / "src" / "int8"
F32_DIR = RUNTIME_C / "src" / "f32"
#: static RAM of the runtime outside the plan: server frame buffers, UART ring, counters
RUNTIME_STATIC_BYTES = 3400


class MemoryBudgetError(CompileError):
    """The training step does not fit the target's SRAM."""


def model_hash(tfl: bytes, tm: TrainableModel, options: TrainOptions) -> bytes:
    h = hashlib.sha256(tfl)
    for name, arr in tm.parameters():
        h.update(name.encode() + b"\0" + np.ascontiguousarray(arr, np.float32).tobytes())
    h.update(json.dumps({"spec": tm.spec, "options": asdict(options)}, sort_keys=True,
                        default=str).encode())
    return h.digest()


def static_bytes(gen: GeneratedTraining) -> int:
    """Parameters + gradients + optimizer state (float32) and the runtime's own state."""
    return 4 * (2 * gen.param_count + gen.opt_state_count) + RUNTIME_STATIC_BYTES


def check_budget(target: Target, gen: GeneratedTraining, advice: str = "") -> dict[str, int]:
    if target.memory is None:
        return {}
    arena = gen.plan.arena_size()
    stat = static_bytes(gen)
    stack = target.memory.stack_bytes
    total = arena + stat + stack
    if total > target.memory.sram_bytes:
        largest = sorted(gen.plan.buffers, key=lambda b: -b.size)[:5]
        names = ", ".join(f"{b.name} {b.size} B" for b in largest)
        raise MemoryBudgetError(
            f"the training step needs {total} B of SRAM on {target.name} but it has "
            f"{target.memory.sram_bytes} B: arena {arena} B + parameters/gradients/optimizer "
            f"state and runtime {stat} B + stack {stack} B. Largest arena buffers: {names}. "
            f"Use {advice + ', ' if advice else ''}SGD instead of Adam, or a target with "
            "more SRAM (`mcutl targets`)."
        )
    return {"arena": arena, "static": stat, "stack": stack, "total": total}


def train_spec(gen_dir: Path, name: str, semihosting: bool) -> FirmwareSpec:
    return FirmwareSpec(
        name=name,
        sources=[*runtime_sources(), gen_dir / "train.c", gen_dir / "model_weights.c",
                 *sorted(INT8_DIR.glob("*.c")), *sorted(F32_DIR.glob("*.c"))],
        include_dirs=[gen_dir],
        semihosting=semihosting,
    )


def build_train_firmware(target: Target, out: Path) -> dict[str, Firmware]:
    """Board, QEMU (semihosting) and host builds of the same generated C, in parallel."""
    jobs: dict[str, tuple[Target, FirmwareSpec, Path]] = {}
    if not target.is_host:
        jobs["board"] = (target, train_spec(out, "firmware", False), out)
        if target.has_qemu:
            jobs["qemu"] = (target, train_spec(out, "firmware-qemu", True), out)
    jobs["host"] = (load_target("host"), train_spec(out, "firmware", False), out / "host")
    return build_many(jobs)


def plan_json(gen: GeneratedTraining, target: Target, budget: dict[str, int],
              fws: dict[str, Firmware]) -> dict[str, Any]:
    plan = gen.plan
    fw = fws.get("board")
    size = fw.size.to_dict() if fw is not None and fw.size is not None else None
    return {
        "peak_bytes": plan.arena_size(),
        "lower_bound_bytes": plan.lower_bound(),
        "peak_over_bound": round(plan.arena_size() / max(1, plan.lower_bound()), 4),
        "static_bytes": static_bytes(gen),
        "stack_bytes": target.memory.stack_bytes if target.memory else None,
        "stack_note": "reserved by the linker script (an upper bound the link enforces); "
                      "STATS reports the measured high-water mark on the device",
        "sram_bytes": target.memory.sram_bytes if target.memory else None,
        "total_bytes": budget.get("total"),
        "firmware_size": size,
        "param_count": gen.param_count,
        "params": [{"name": n, "offset": o, "count": c} for n, o, c in gen.param_layout],
        "probes": [{"name": q.name, "bytes": q.nbytes} for q in gen.program.ctx.probes],
        "optimizer": asdict(gen.options),
        "steps": len(gen.program.ctx.calls),
        "forward_calls": gen.program.forward_end,
        "tensors": [
            {"name": b.name, "offset": b.offset, "size": b.size, "first": b.first,
             "last": b.last}
            for b in plan.buffers
        ],
    }


def plot_plan(plan: dict[str, Any], path: Path) -> None:
    """plan.png: bytes live at each call of the step, and the arena's blocks over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tensors = plan["tensors"]
    steps = plan["steps"] + 1
    live = np.zeros(steps)
    for t in tensors:
        live[t["first"]: t["last"] + 1] += t["size"]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    a.plot(live / 1024, drawstyle="steps-post")
    a.axhline(plan["peak_bytes"] / 1024, color="r", ls="--", label="arena (planned)")
    a.axvline(plan["forward_calls"], color="gray", ls=":", label="forward | backward")
    a.set_ylabel("KiB live")
    a.legend()
    a.set_title(f"training step: arena {plan['peak_bytes']} B, lower bound "
                f"{plan['lower_bound_bytes']} B")
    for t in tensors:
        color = "tab:blue" if t["name"].startswith("i8:") else (
            "tab:green" if t["name"].startswith("m:") else "tab:orange")
        b.broken_barh([(t["first"], t["last"] - t["first"] + 1)],
                      (t["offset"] / 1024, max(t["size"], 1) / 1024), color=color, alpha=0.7)
    b.set_xlabel("call of the step")
    b.set_ylabel("arena offset (KiB)")
    b.set_title("blocks: int8 (blue), float32 (orange), masks (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def classifier_head(graph: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The backbone's own classifier, dequantised, if it is a (num_classes, C) linear layer
    at the graph output: a head that starts where the pre-trained model was."""
    out = graph.outputs[0]
    node = graph.producer(out)
    if node is None or len(node.inputs) != 3:
        return None
    w, b = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
    x = graph.tensors[node.inputs[0]]
    if (w.data is None or b.data is None or w.quant is None or x.quant is None
            or len(w.shape) != 2 or w.shape[0] != num_classes):
        return None
    s_w = np.asarray(w.quant.scale, np.float32).reshape(-1, 1)
    weight = (s_w * w.data.astype(np.float32)).astype(np.float32)
    bias = (b.data.astype(np.float64) * float(x.quant.scale[0]) * s_w.reshape(-1)).astype(
        np.float32)
    return weight, bias


def compile_training(
    model: Any,
    target_name: str,
    out: Path,
    *,
    num_classes: int,
    calib: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    spec: Any = None,
    method: str = "repnet",
    cut: str | None = None,
    options: TrainOptions | None = None,
    source_name: str = "",
    head_from_classifier: bool = False,
) -> tuple[BuildInfo, TrainableModel, GeneratedTraining, dict[str, Firmware]]:
    from mcutl.methods import get_method
    from mcutl.tflite.export import export_tflite

    t0 = time.perf_counter()
    options = options or TrainOptions()
    target = load_target(target_name)
    graph = load_and_quantize(model, calib, input_shape)
    m = get_method(method)
    tm = m.build(graph, num_classes, spec if spec is not None else m.spec(), cut)
    if head_from_classifier:
        head = classifier_head(graph, num_classes)
        if head is None or not any(n.name == "head" for n in tm.nodes):
            raise CompileError(
                f"--head-from-classifier: the model has no {num_classes}-class linear "
                "classifier at its output to start the head from")
        tm.node("head").params = {"weight": head[0], "bias": head[1]}
    tfl = export_tflite(tm.backbone)
    h = model_hash(tfl, tm, options)
    gen = generate_training(tm, h, target.name, options)
    budget = check_budget(target, gen, m.fit_advice)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(tfl)
    for name, text in gen.files.items():
        (out / name).write_text(text)
    np.savez(out / "trainable.npz", **{n: a for n, a in tm.parameters()})
    fws = build_train_firmware(target, out)
    tin, tout = tm.backbone.tensors[tm.backbone.inputs[0]], tm.backbone.tensors[
        tm.backbone.outputs[0]]
    assert tin.quant is not None and tout.quant is not None
    info = BuildInfo(
        mcutl_version=__version__, target=target.name, model_hash=h.hex(),
        source=source_name or str(model), source_layout=graph.source_layout,
        input_shape_nhwc=list(tin.shape), input_scale=float(tin.quant.scale[0]),
        input_zero_point=int(tin.quant.zero_point[0]),
        output_shape_nhwc=[1, tm.num_classes], output_scale=0.0, output_zero_point=0,
        arena_bytes=gen.plan.arena_size(),
        firmware={k: str(fw.elf.relative_to(out)) for k, fw in fws.items()},
        firmware_build_ids={k: fw.build_id for k, fw in fws.items()},
        method=tm.method, num_classes=tm.num_classes,
        training={"options": asdict(options), "model": describe(tm),
                  "param_count": gen.param_count,
                  "compile_seconds": round(time.perf_counter() - t0, 2)},
    )
    info.save(out)
    plan = plan_json(gen, target, budget, fws)
    (out / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    plot_plan(plan, out / "plan.png")
    return info, tm, gen, fws
