"""`mcutl compile`: model -> quantised IR -> C -> firmware, all into one build folder.

build/
  model.tflite        the quantised backbone (the bit-exact reference for TFLite)
  model.c, model.h, model_weights.c, model_weights.h   generated C
  firmware.elf        for the board (no semihosting)
  firmware-qemu.elf   the same with semihosting (exit codes, fault reports) if the target has QEMU
  host/firmware       native build of the same generated C
  build.json          what `mcutl run` / `verify` need: target, model hash, I/O quantisation
  report.md, report.json   per-layer MACs / flash / activation bytes, memory totals
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mcutl import __version__
from mcutl.codegen.backbone import GeneratedBackbone, generate_backbone
from mcutl.errors import McutlError
from mcutl.firmware import runtime_sources
from mcutl.ir.graph import Graph
from mcutl.paths import RUNTIME_C
from mcutl.targets import Target, load_target
from mcutl.toolchain import Firmware, FirmwareSpec, build_many

INT8_DIR = RUNTIME_C / "src" / "int8"


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
        return cls(**json.loads(path.read_text()))


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
    if path is None:
        return None
    with np.load(path) as npz:
        if not npz.files:
            raise CompileError(f"{path} holds no arrays; put the calibration batch first")
        return np.asarray(npz[npz.files[0]])


def model_spec(gen_dir: Path, name: str, semihosting: bool) -> FirmwareSpec:
    return FirmwareSpec(
        name=name,
        sources=[
            *runtime_sources(),
            gen_dir / "model.c",
            gen_dir / "model_weights.c",
            *sorted(INT8_DIR.glob("*.c")),
        ],
        include_dirs=[gen_dir],
        semihosting=semihosting,
    )


def build_all(target: Target, out: Path) -> dict[str, Firmware]:
    """Board firmware, QEMU firmware (if the target has a model), host build, in parallel."""
    jobs: dict[str, tuple[Target, FirmwareSpec, Path]] = {}
    host = load_target("host")
    if target.is_host:
        jobs["host"] = (target, model_spec(out, "firmware", False), out / "host")
    else:
        jobs["board"] = (target, model_spec(out, "firmware", False), out)
        if target.has_qemu:
            jobs["qemu"] = (target, model_spec(out, "firmware-qemu", True), out)
        jobs["host"] = (host, model_spec(out, "firmware", False), out / "host")
    return build_many(jobs)


def compile_backbone(
    model: Any,
    target_name: str,
    out: Path,
    calib: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    source_name: str = "",
) -> tuple[BuildInfo, GeneratedBackbone, dict[str, Firmware]]:
    """The whole inference-only pipeline; returns what was built."""
    from mcutl.report import write_reports
    from mcutl.tflite.export import export_tflite

    t0 = time.perf_counter()
    target = load_target(target_name)
    graph = load_and_quantize(model, calib, input_shape)
    tfl = export_tflite(graph)
    gen = generate_backbone(graph, tfl, target.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(tfl)
    for name, text in gen.files.items():
        (out / name).write_text(text)
    fws = build_all(target, out)
    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    assert tin.quant is not None and tout.quant is not None
    info = BuildInfo(
        mcutl_version=__version__,
        target=target.name,
        model_hash=gen.model_hash.hex(),
        source=source_name or str(model),
        source_layout=graph.source_layout,
        input_shape_nhwc=list(tin.shape),
        input_scale=float(tin.quant.scale[0]),
        input_zero_point=int(tin.quant.zero_point[0]),
        output_shape_nhwc=list(tout.shape),
        output_scale=float(tout.quant.scale[0]),
        output_zero_point=int(tout.quant.zero_point[0]),
        arena_bytes=gen.plan.arena_size(),
        firmware={k: str(fw.elf.relative_to(out)) for k, fw in fws.items()},
        firmware_build_ids={k: fw.build_id for k, fw in fws.items()},
    )
    info.save(out)
    write_reports(out, target, graph, gen, fws, seconds=time.perf_counter() - t0)
    return info, gen, fws
