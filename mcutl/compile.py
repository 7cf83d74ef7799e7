"""`mcutl compile`: the one compile driver, for inference and for training builds.

model -> quantised IR -> (a training method's trainable graph) -> C -> plan and budget
check -> firmware, all into one build folder:

build/
  model.tflite        the frozen backbone, int8 (for training: cut before its classifier)
  model.c, model.h / train.c, and model_weights.c, model_weights.h   generated C
  firmware.elf        for the board (no semihosting)
  firmware-qemu.elf   the same with semihosting (exit codes, fault reports) if the target has QEMU
  host/firmware       native build of the same generated C
  build.json          what `run` / `verify` / `train` need: target, model hash, I/O quantisation
  plan.json, plan.png every buffer's offset, size and lifetime; peak vs lower bound; SRAM totals
  report.md, report.json   (inference) per-layer MACs / flash / activation bytes
  trainable.npz       (training) initial parameters, for the host reference

Whether the build fits the target's SRAM is decided from the plan before any firmware
is built.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl import __version__
from mcutl.errors import McutlError
from mcutl.firmware import PROTO_DIR, runtime_sources
from mcutl.ir.graph import Graph
from mcutl.paths import RUNTIME_C
from mcutl.targets import Target, load_target
from mcutl.toolchain import Firmware, FirmwareSpec, build_many
from mcutl.validate import check_finite, check_numeric, check_output_dir, load_npz

if TYPE_CHECKING:
    from mcutl.codegen.backbone import GeneratedBackbone
    from mcutl.ir.trainable import TrainableModel
    from mcutl.train.codegen import GeneratedTraining, TrainOptions

INT8_DIR = RUNTIME_C / "src" / "int8"
F32_DIR = RUNTIME_C / "src" / "f32"
STORE_DIR = RUNTIME_C / "src" / "store"
LIB_DIR = RUNTIME_C / "lib"


class CompileError(McutlError):
    """The model cannot be compiled for this target (the message says why and what to do)."""


@dataclass
class BuildInfo:
    """build.json: the contract between `compile` and `run` / `verify`."""

    mcutl_version: str
    target: str
    model_hash: str
    source: str
    source_layout: str
    input_shape_nhwc: list[int]
    input_scale: float
    input_zero_point: int
    output_shape_nhwc: list[int]
    output_scale: float
    output_zero_point: int
    arena_bytes: int
    firmware: dict[str, str]
    firmware_build_ids: dict[str, str]
    method: str = "none"  # "none": inference of the backbone; "repnet": on-device training
    num_classes: int = 0
    training: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        (folder / "build.json").write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> BuildInfo:
        path = folder / "build.json"
        if not path.is_file():
            raise McutlError(
                f"{folder} is not an mcutl build folder (no build.json). Create one with "
                "`mcutl compile MODEL --target T -o DIR`."
            )
        try:
            data = json.loads(path.read_text())
            info = cls(**data)
            if not isinstance(info.firmware, dict):
                raise TypeError("'firmware' is not a table")
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise McutlError(f"{path} is corrupt ({exc}); compile the build again") from exc
        return info


def load_and_quantize(
    model: Any, calib: np.ndarray | None, input_shape: tuple[int, ...] | None = None
) -> Graph:
    """Any supported model (path or nn.Module) -> quantised IR (tflite files as they are)."""
    from mcutl.frontend import load_model
    from mcutl.quant.ptq import quantize

    graph = load_model(model, input_shape=input_shape)
    if graph.is_quantized:
        return graph
    if calib is None:
        raise CompileError(
            "the model is float: give calibration data with --calib FILE.npz (its first "
            "array: a batch of representative inputs in the model's own layout)"
        )
    return quantize(graph, calib)


def load_calib(path: Path | None) -> np.ndarray | None:
    """The first array of the --calib .npz (checked against the model in ``quantize``)."""
    if path is None:
        return None
    calib = load_npz(path, "--calib")[0]
    check_numeric(calib, f"--calib {path}")
    if calib.ndim:
        check_finite(calib, f"--calib {path}")
    return calib


def model_hash(tflite_bytes: bytes, tm: TrainableModel | None = None,
               options: TrainOptions | None = None) -> bytes:
    """What HELLO carries: SHA-256 of the int8 backbone, and for a training build of its
    initial trainable parameters, the method's options and the optimizer's."""
    h = hashlib.sha256(tflite_bytes)
    if tm is not None:
        for name, arr in tm.parameters():
            h.update(name.encode() + b"\0" + np.ascontiguousarray(arr, np.float32).tobytes())
        h.update(json.dumps({"spec": tm.spec, "options": asdict(options) if options else {}},
                            sort_keys=True, default=str).encode())
    return h.digest()


def firmware_spec(gen_dir: Path, name: str, semihosting: bool, training: bool) -> FirmwareSpec:
    """The runtime, the generated C and the kernels it calls (float ones for training)."""
    generated = ["train.c"] if training else ["model.c"]
    kernels = [*sorted(INT8_DIR.glob("*.c"))]
    if training:
        kernels += [*sorted(F32_DIR.glob("*.c")), STORE_DIR / "checkpoint.c"]
    return FirmwareSpec(
        name=name,
        sources=[*runtime_sources(), *(gen_dir / g for g in generated),
                 gen_dir / "model_weights.c", *kernels],
        include_dirs=[gen_dir],
        semihosting=semihosting,
        store=training,
    )


@dataclass(frozen=True)
class LibraryFile:
    """One file of the exported learner library (`mcutl export --lib`)."""

    src: Path
    dest: str  # path inside the exported folder
    compiled: bool  # a .c file compiled into the static library


def library_sources(build: Path) -> list[LibraryFile]:
    """What the learner of a training build needs outside an mcutl firmware: the generated
    C, the kernels it calls, the protocol buffer helpers and CRC-32 its (unused by the C
    API) handlers reference, the checkpoint format, weak board and store functions (no
    store until the user supplies one), and the public headers. The serial
    server, the app's main() and the board ports are not part of it."""
    groups: list[tuple[str, list[Path]]] = [
        ("src/model", [build / "train.c", build / "model_weights.c", build / "model_weights.h"]),
        ("src/int8", sorted([*INT8_DIR.glob("*.c"), *INT8_DIR.glob("*.h")])),
        ("src/f32", sorted([*F32_DIR.glob("*.c"), *F32_DIR.glob("*.h")])),
        ("src/proto", [PROTO_DIR / "frame.c", PROTO_DIR / "crc32.c"]),
        ("src/store", [STORE_DIR / "checkpoint.c"]),
        ("src/lib", [LIB_DIR / "mcutl_lib_board.c"]),
        ("include/mcutl", sorted((RUNTIME_C / "include" / "mcutl").glob("*.h"))),
    ]
    return [LibraryFile(p, f"{dest}/{p.name}", p.suffix == ".c")
            for dest, paths in groups for p in paths]


def build_firmwares(target: Target, out: Path, training: bool) -> dict[str, Firmware]:
    """Board firmware, QEMU firmware (if the target has a model), host build, in parallel."""
    jobs: dict[str, tuple[Target, FirmwareSpec, Path]] = {}
    if target.is_host:
        jobs["host"] = (target, firmware_spec(out, "firmware", False, training), out / "host")
    else:
        jobs["board"] = (target, firmware_spec(out, "firmware", False, training), out)
        if target.has_qemu:
            jobs["qemu"] = (target, firmware_spec(out, "firmware-qemu", True, training), out)
        jobs["host"] = (load_target("host"), firmware_spec(out, "firmware", False, training),
                        out / "host")
    return build_many(jobs)


@dataclass
class Compiled:
    """What one compile produced (also written to the build folder)."""

    info: BuildInfo
    graph: Graph  # the quantised model as imported
    gen: GeneratedBackbone | GeneratedTraining
    firmware: dict[str, Firmware]
    tm: TrainableModel | None = None
    notes: list[str] = field(default_factory=list)  # choices made for the user


def compile_model(
    model: Any,
    target_name: str,
    out: Path,
    *,
    calib: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    method: str | None = None,
    num_classes: int = 0,
    spec: Any = None,
    cut: str | None = None,
    options: TrainOptions | None = None,
    source_name: str = "",
    head_from_classifier: bool | None = False,
    kernels: str | None = None,
    streaming: str = "auto",
) -> Compiled:
    """The whole pipeline. ``method`` None: inference of the backbone; else a registered
    training method (mcutl/methods/) with its ``spec`` (default options if None).
    ``head_from_classifier``: start the method's head from the model's own classifier
    (True: required; None: when it has ``num_classes`` outputs; False: a fresh head).
    ``kernels``: the int8 kernel set (KERNEL_SETS; None: the target's `kernels`).
    ``streaming``: which layers of the backbone's forward (inference, or the frozen part
    of a training step) run band by band (mcutl.codegen.backbone.STREAMING)."""
    from mcutl.codegen.backbone import generate_backbone
    from mcutl.fit import fit_default, verified_advice
    from mcutl.plan.budget import (
        RUNTIME_STATIC_BYTES,
        MemoryBudgetError,
        check_budget,
        training_static_bytes,
    )
    from mcutl.plan.report import plan_json, plot_plan
    from mcutl.tflite.export import export_tflite

    t0 = time.perf_counter()
    check_output_dir(out)
    if options is not None:
        options.validate()
    target = load_target(target_name)
    graph = load_and_quantize(model, calib, input_shape)
    tm = None
    notes: list[str] = []
    gen: GeneratedBackbone | GeneratedTraining
    if method is None:
        tfl = export_tflite(graph)
        static = RUNTIME_STATIC_BYTES
        room = (target.memory.sram_bytes - static - target.memory.stack_bytes
                if target.memory else None)
        gen = generate_backbone(graph, tfl, target.name, kernels, streaming, room)
        h = gen.model_hash
        budget = check_budget(target, gen.plan, static, what="the backbone's inference",
                              static_what="runtime")
        steps = len(graph.nodes) + 1
        extra: dict[str, Any] = {"schedule": gen.schedule(graph)}
        forward_calls = steps
    else:
        from mcutl.methods import get_method
        from mcutl.methods.common import classifier_head
        from mcutl.train.codegen import TrainOptions, generate_training

        m = get_method(method)
        options = options or TrainOptions(lr=m.lr)
        if spec is None:  # the defaults, or the largest size of the method that fits
            spec, notes = fit_default(graph, method, target, num_classes, options, cut,
                                      streaming)
        tm = m.build(graph, num_classes, spec, cut)
        if head_from_classifier is not False:  # True: required; None: when there is one
            head = classifier_head(graph, num_classes)
            has_head = any(n.name == "head" for n in tm.nodes)
            if head_from_classifier and (head is None or not has_head):
                raise CompileError(
                    f"--head classifier: the model has no {num_classes}-class linear "
                    "classifier at its output to start the head from; use --head new")
            if head is not None and has_head:
                tm.node("head").params = {"weight": head[0], "bias": head[1]}
                if head_from_classifier is None:
                    notes.append(f"the head starts from the model's own {num_classes}-class "
                                 "classifier (--head new: a fresh one)")
        tfl = export_tflite(tm.backbone)
        h = model_hash(tfl, tm, options)
        gen = generate_training(tm, h, target.name, options, kernels, streaming)
        static = training_static_bytes(gen.param_count, gen.opt_state_count)
        what = dict(what="the training step",
                    static_what="parameters/gradients/optimizer state and runtime")
        try:
            budget = check_budget(target, gen.plan, static, **what)
        except MemoryBudgetError:
            total = gen.plan.arena_size() + static + (
                target.memory.stack_bytes if target.memory else 0)
            advice = verified_advice(graph, method, spec, target, num_classes, options, cut,
                                     total, streaming)
            if options.optimizer == "adam":
                advice.append(f"--optimizer sgd ({total - 4 * gen.param_count:,} B)")
            check_budget(target, gen.plan, static, advice=", ".join(advice), **what)
            raise
        steps = len(gen.program.ctx.calls)
        forward_calls = gen.program.forward_end
        extra = {
            "param_count": gen.param_count,
            "params": [{"name": n, "offset": o, "count": c} for n, o, c in gen.param_layout],
            "probes": [{"name": q.name, "bytes": q.nbytes} for q in gen.program.ctx.probes],
            "optimizer": asdict(gen.options),
            "schedule": gen.schedule(tm.backbone),
            "input_kept": gen.input_kept,
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(tfl)
    for name, text in gen.files.items():
        (out / name).write_text(text)
    if tm is not None:  # the profile variant (`mcutl profile` builds it when asked)
        (out / "profile").mkdir(exist_ok=True)
        for name, text in gen.profile_files.items():  # type: ignore[union-attr]
            (out / "profile" / name).write_text(text)
    if tm is not None:
        np.savez(out / "trainable.npz", **{n: a for n, a in tm.parameters()})
    fws = build_firmwares(target, out, training=tm is not None)
    backbone = tm.backbone if tm is not None else graph
    tin = backbone.tensors[backbone.inputs[0]]
    tout = backbone.tensors[backbone.outputs[0]]
    assert tin.quant is not None and tout.quant is not None
    info = BuildInfo(
        mcutl_version=__version__, target=target.name, model_hash=h.hex(),
        source=source_name or str(model), source_layout=graph.source_layout,
        input_shape_nhwc=list(tin.shape), input_scale=float(tin.quant.scale[0]),
        input_zero_point=int(tin.quant.zero_point[0]),
        output_shape_nhwc=list(tout.shape) if tm is None else [1, tm.num_classes],
        output_scale=float(tout.quant.scale[0]) if tm is None else 0.0,
        output_zero_point=int(tout.quant.zero_point[0]) if tm is None else 0,
        arena_bytes=gen.plan.arena_size(),
        firmware={k: str(fw.elf.relative_to(out)) for k, fw in fws.items()},
        firmware_build_ids={k: fw.build_id for k, fw in fws.items()},
    )
    if tm is not None:
        from mcutl.ir.trainable import describe

        info.method, info.num_classes = tm.method, tm.num_classes
        info.training = {"options": asdict(options) if options else {}, "model": describe(tm),
                         "param_count": gen.param_count,  # type: ignore[union-attr]
                         "compile_seconds": round(time.perf_counter() - t0, 2)}
    info.save(out)
    plan = plan_json(gen.plan, target, budget, static, fws, steps, forward_calls, extra)
    (out / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    plot_plan(plan, out / "plan.png", "training step" if tm is not None else "inference")
    if tm is None:
        from mcutl.report import write_reports

        write_reports(out, target, graph, gen, fws,  # type: ignore[arg-type]
                      seconds=time.perf_counter() - t0)
    return Compiled(info, graph, gen, fws, tm, notes)


def compile_backbone(
    model: Any,
    target_name: str,
    out: Path,
    calib: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    source_name: str = "",
    kernels: str | None = None,
    streaming: str = "auto",
) -> tuple[BuildInfo, GeneratedBackbone, dict[str, Firmware]]:
    """Inference of the frozen backbone (``compile_model`` without a method)."""
    c = compile_model(model, target_name, out, calib=calib, input_shape=input_shape,
                      source_name=source_name, kernels=kernels, streaming=streaming)
    return c.info, c.gen, c.firmware  # type: ignore[return-value]


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
    head_from_classifier: bool | None = False,
    kernels: str | None = None,
    streaming: str = "auto",
) -> tuple[BuildInfo, TrainableModel, GeneratedTraining, dict[str, Firmware]]:
    """A firmware that trains with ``method`` (``compile_model`` with a method)."""
    c = compile_model(model, target_name, out, calib=calib, input_shape=input_shape,
                      method=method, num_classes=num_classes, spec=spec, cut=cut,
                      options=options, source_name=source_name,
                      head_from_classifier=head_from_classifier, kernels=kernels,
                      streaming=streaming)
    assert c.tm is not None
    return c.info, c.tm, c.gen, c.firmware  # type: ignore[return-value]
