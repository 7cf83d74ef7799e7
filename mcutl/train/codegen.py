"""Generate the C of a training firmware: plan the step's arena, render the templates."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np

from mcutl import __version__
from mcutl.codegen.context import KernelCall
from mcutl.ir.trainable import TrainableModel
from mcutl.paths import TEMPLATES_DIR
from mcutl.plan.arena import ArenaPlanner
from mcutl.plan.budget import training_static_bytes
from mcutl.plan.kernels import portable_where_scratch_raises_peak
from mcutl.plan.lifetimes import plan_buffers
from mcutl.plan.streaming import Stream, choose_streams, conv_macs, recompute_limits
from mcutl.targets import load_target
from mcutl.train.recipe import SCHEDULES
from mcutl.train.step import StepProgram, build_step, frozen_prefix_ok
from mcutl.validate import InputError

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class TrainOptions:
    optimizer: str = "sgd"  # "sgd" | "adam"
    lr: float = 0.03  # compile without options takes the method's own (Method.lr)
    momentum: float = 0.9
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    label_smoothing: float = 0.0
    # the step guard: a sample whose loss is above this (or not finite) adds no gradient
    max_loss: float = 100.0
    # a checkpoint in the firmware's store every this many updates (0: only on SAVE)
    autosave: int = 100
    # the recipe's defaults (train.h mcutl_train_config_t; CONFIG changes them at run time)
    schedule: str = "constant"  # "constant" | "step" | "cosine"
    warmup: int = 0  # updates of linear warm-up
    period: int = 1  # step: updates between decays; cosine: updates to decay over
    gamma: float = 0.1  # step: decay factor; cosine: final fraction of lr
    clip_norm: float = 0.0  # 0: off
    average: bool = True  # the mean of a mini-batch's gradients (False: their sum)

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise InputError(f"optimizer {self.optimizer!r}: choose 'sgd' or 'adam'")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"learning rate must be a finite number > 0, got {self.lr}")
        for name in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.weight_decay >= 0 and self.eps > 0 and 0 <= self.label_smoothing < 1):
            raise InputError(f"weight_decay >= 0, eps > 0 and 0 <= label_smoothing < 1 are "
                             f"needed, got {self.weight_decay}, {self.eps}, "
                             f"{self.label_smoothing}")
        if not (isinstance(self.autosave, int) and 0 <= self.autosave < 2**32):
            raise InputError(f"autosave must be an integer >= 0, got {self.autosave}")
        if not 0 < self.max_loss < 3.4e38:
            raise InputError(f"max_loss must be a finite number > 0, got {self.max_loss}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if not (self.period >= 1 and self.warmup >= 0 and 0 <= self.gamma <= 1
                and 0 <= self.clip_norm < 3.4e38):
            raise InputError(f"period >= 1, warmup >= 0, 0 <= gamma <= 1 and clip_norm >= 0 "
                             f"are needed, got {self.period}, {self.warmup}, {self.gamma}, "
                             f"{self.clip_norm}")


@dataclass
class GeneratedTraining:
    files: dict[str, str]
    program: StepProgram
    plan: ArenaPlanner
    param_layout: list[tuple[str, int, int]]  # name, offset (floats), count
    param_count: int
    opt_state_count: int
    const_bytes: int
    options: TrainOptions
    extra: dict[str, Any] = field(default_factory=dict)
    profile_files: dict[str, str] = field(default_factory=dict)  # written to BUILD/profile/
    streams: tuple[Stream, ...] = ()  # frozen forward segments run band by band
    input_kept: bool = True  # False: the step reuses the input's memory (plan_step)

    def schedule(self, graph: Any) -> dict[str, object]:
        """plan.json's account of how the frozen forward runs."""
        if not self.streams:
            return {"kind": "layer-by-layer"}
        return {"kind": "row-streamed", "segments": [s.describe(graph) for s in self.streams]}


def plan_step(prog: StepProgram, keep_input: bool = True) -> ArenaPlanner:
    """Every buffer of the step in one arena. The input (SAMPLE writes it before STEP and
    INFER read it) stays live for the whole step, or with ``keep_input`` False through
    the forward only (PROBE and INFER run the forward on it): the backward may then
    overwrite it, and the firmware refuses INFER or PROBE of a sample it has trained on
    (send the SAMPLE again)."""
    x = prog.input_sym.strip("$")
    if keep_input:
        return plan_buffers(prog.ctx.buffers, len(prog.ctx.calls), (x,))
    # INFER and PROBE run the forward on the sample: it is kept through the forward
    buf = prog.ctx.buffers[x]
    buf.last = max(buf.last, prog.forward_end - 1)
    return plan_buffers(prog.ctx.buffers, len(prog.ctx.calls), from_start=(x,))


def _indexed(calls: list[KernelCall], start: int,
             probe_at: dict[int, int] | None = None) -> list[dict[str, Any]]:
    probe_at = probe_at or {}
    return [
        {"comment": c.comment, "func": c.func, "args": c.args, "assign": c.assign,
         "index": start + i, "probe": probe_at.get(start + i)}
        for i, c in enumerate(calls)
    ]


def _referenced(ctx: Any) -> list[Any]:
    """The params structs some call, pointer array or other struct names (an op may declare
    the dims of a gradient nothing asks for; unused, it would fail -Werror)."""
    import re

    text = " ".join([*(a for c in ctx.calls for a in c.args),
                     *(e for p in ctx.ptr_arrays for e in p.exprs),
                     *(v for st in ctx.structs for _, v in st.fields)])
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    return [st for st in ctx.structs if st.name in names]


def choose_step_streams(tm: TrainableModel, target: Any, options: TrainOptions,
                        streaming: str = "auto") -> tuple[Stream, ...]:
    """The frozen forward segments the step runs row-streamed (mcutl.plan.streaming):
    ``streaming`` "auto": none if the step fits the target layer by layer (the forward
    runs at every step: recomputation is not paid for nothing), else the least
    recomputation that fits (AUTO_EXTRA_MACS, x2, x4, x8 of the backbone's MACs, then the
    smallest arena); "max": the smallest arena; "off": none. Segments are proposed on
    the backbone's inference lifetimes and kept only if the step's own arena shrinks."""
    from mcutl.codegen.backbone import AUTO_EXTRA_MACS, STREAMING
    from mcutl.plan.lifetimes import streamed_bound, streamed_profile

    if streaming not in STREAMING:
        raise ValueError(f"streaming {streaming!r}: expected one of {', '.join(STREAMING)}")
    if streaming == "off":
        return ()
    g = tm.backbone
    ok = frozen_prefix_ok(tm)

    def arena(streams: tuple[Stream, ...]) -> tuple[int, int]:
        prog = build_step(tm, "portable", frozenset(), streams)
        n = prog.ctx.param_count
        static = training_static_bytes(n, n if options.optimizer == "sgd" else 2 * n)
        stack = target.memory.stack_bytes if target.memory else 0
        return plan_step(prog).arena_size(), static + stack

    base, rest = arena(())
    room = target.memory.sram_bytes - rest if target.memory else None
    if streaming == "auto" and (room is None or base <= room):
        return ()  # it fits: the forward of every step is not made slower for nothing
    limits = recompute_limits(streaming, False, conv_macs(g), AUTO_EXTRA_MACS)
    best: tuple[int, tuple[Stream, ...]] = (base, ())
    for limit in limits:
        streams = choose_streams(  # the step's input stays in the arena throughout
            g, lambda ss: streamed_bound(g, "portable", ss, g.inputs), limit, allowed=ok,
            profile=lambda ss: streamed_profile(g, "portable", ss, g.inputs))
        if streams:
            size, _ = arena(streams)
            if size < best[0]:
                best = (size, streams)
        if room is None or best[0] <= room:
            break
    return best[1]


def generate_training(tm: TrainableModel, model_hash: bytes, target_name: str,
                      options: TrainOptions, kernels: str | None = None,
                      streaming: str = "auto") -> GeneratedTraining:
    """The training C of ``tm``, and in ``profile_files`` its profile variant (the same C,
    plus a tick read after every kernel call and around the optimizer and a PROFILE
    request: `mcutl profile`) with the calls it times (calls.json)."""
    options.validate()
    target = load_target(target_name)
    kernels = kernels or target.kernels
    streams = choose_step_streams(tm, target, options, streaming)

    def plan_with(release: bool) -> tuple[StepProgram, ArenaPlanner]:
        """The step (the layers whose fast kernel's scratch would raise the peak run the
        portable one) and its plan; ``release``: the input's memory reused (plan_step)."""
        portable = portable_where_scratch_raises_peak(
            tm.backbone, kernels, lambda p: plan_step(
                build_step(tm, kernels, p, streams, release), not release).arena_size())
        prog = build_step(tm, kernels, portable, streams, release)
        return prog, plan_step(prog, keep_input=not release)

    prog, planner = plan_with(False)
    keep_input = True
    if target.memory is not None:  # the input's memory reused within the step, if it must
        n = prog.ctx.param_count
        room = target.memory.sram_bytes - target.memory.stack_bytes - training_static_bytes(
            n, n if options.optimizer == "sgd" else 2 * n)
        if planner.arena_size() > room:
            prog_r, released = plan_with(True)
            if released.arena_size() < planner.arena_size():
                prog, planner, keep_input = prog_r, released, False
    ctx = prog.ctx
    offsets = {b.name: b.offset for b in planner.buffers}
    logits_key = prog.logits_sym.strip("$")
    ctx.resolve(offsets)
    init = np.concatenate(ctx.param_init).astype(np.float32)
    params_init = ctx.const_array("mcutl_params_init", init, "initial trainable parameters")
    assert params_init == "mcutl_params_init", params_init
    n_params = ctx.param_count
    n_state = n_params if options.optimizer == "sgd" else 2 * n_params
    x = tm.backbone.tensors[tm.backbone.inputs[0]]
    banner = (f"Generated by mcutl {__version__} for target {target_name}; model sha256 "
              f"{model_hash.hex()[:16]}; method {tm.method}. Do not edit.")
    values = {
        "banner": banner,
        "method": tm.method,
        "consts": ctx.consts,
        "structs": _referenced(ctx),
        "ptr_arrays": ctx.ptr_arrays,
        "forward_calls": _indexed(ctx.calls[: prog.forward_end], 0,
                                  {q.call: i for i, q in enumerate(ctx.probes)}),
        "probes": [{"name": q.name, "ptr": q.symbol, "bytes": q.nbytes} for q in ctx.probes],
        "ram_tables": ctx.ram_tables,
        "backward_calls": _indexed(ctx.calls[prog.forward_end:], prog.forward_end),
        "model_hash_bytes": [f"0x{b:02x}" for b in model_hash],
        "arena_bytes": planner.arena_size(),
        "param_count": n_params,
        "opt_state_count": n_state,
        "optimizer_state_doc": ("SGD momentum buffer" if options.optimizer == "sgd"
                                else "Adam: exp_avg then exp_avg_sq"),
        "input_bytes": x.nbytes,
        "num_classes": tm.num_classes,
        "input_ptr": f"(mcutl_arena + {offsets[prog.input_sym.strip('$')]})",
        "logits_ptr": f"((float *)(mcutl_arena + {offsets[logits_key]}))",
        "optimizer": options.optimizer,
        "lr": repr(float(np.float32(options.lr))),
        "momentum": repr(float(np.float32(options.momentum))),
        "weight_decay": repr(float(np.float32(options.weight_decay))),
        "beta1": repr(float(np.float32(options.beta1))),
        "beta2": repr(float(np.float32(options.beta2))),
        "eps": repr(float(np.float32(options.eps))),
        "label_smoothing": repr(float(np.float32(options.label_smoothing))),
        "max_loss": repr(float(np.float32(options.max_loss))),
        "schedule": SCHEDULES.index(options.schedule),
        "warmup": int(options.warmup),
        "period": int(options.period),
        "gamma": repr(float(np.float32(options.gamma))),
        "clip_norm": repr(float(np.float32(options.clip_norm))),
        "average": int(bool(options.average)),
        "autosave": int(options.autosave),
        "profile": False,
        "profile_entries": len(ctx.calls) + 1,
        "input_kept": keep_input,
    }
    entries = [{"phase": "forward" if k < prog.forward_end else "backward",
                "what": c.comment, "macs": c.macs} for k, c in enumerate(ctx.calls)]
    entries.append({"phase": "update", "what": "optimizer over the parameter block",
                    "macs": 2 * n_params})
    profile_files = {
        "train.c": _env.get_template("train.c.j2").render({**values, "profile": True}),
        "calls.json": json.dumps(entries, indent=0),
    }
    files = {
        "train.c": _env.get_template("train.c.j2").render(values),
        "model_weights.c": _env.get_template("model_weights.c.j2").render(values),
        "model_weights.h": _env.get_template("model_weights.h.j2").render(values),
    }
    return GeneratedTraining(
        files=files, program=prog, plan=planner, param_layout=list(ctx.param_list),
        param_count=n_params, opt_state_count=n_state,
        const_bytes=sum(a.nbytes for a in ctx.consts), options=options,
        profile_files=profile_files, streams=streams, input_kept=keep_input,
    )
