"""`mcutl run`: run a compiled backbone on a batch of inputs on host, in QEMU or on a board."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcutl.codegen.backbone import quantize_input
from mcutl.compile import BuildInfo
from mcutl.errors import McutlError
from mcutl.ir.layout import from_ir_layout, to_ir_layout
from mcutl.link import protocol as proto
from mcutl.link.session import Session, open_session
from mcutl.targets import Target, load_target
from mcutl.validate import check_batch, source_sample_shape


class ModelMismatchError(McutlError):
    """The device runs firmware built for another model."""


@dataclass
class RunResult:
    y: np.ndarray  # int8 outputs, batch first, in the source layout
    scale: float
    zero_point: int
    ticks: list[int]  # device ticks per inference (cycles on Cortex-M, ns on host)


def prepare_inputs(info: BuildInfo, x: np.ndarray, what: str = "inputs",
                   check_range: bool = False) -> np.ndarray:
    """npz array (source layout, batch first; float or int8) -> int8 NHWC batch.
    ``check_range``: refuse float inputs mostly outside the calibrated range (they would
    saturate; `verify` checks the device on any input, `run` and `train` refuse them)."""
    x = np.asarray(x)
    check_batch(x, source_sample_shape(info.input_shape_nhwc, info.source_layout),
                info.source_layout, what,
                (info.input_scale, info.input_zero_point) if check_range else None)
    if x.dtype == np.int8:
        q = x
    elif np.issubdtype(x.dtype, np.floating):
        q = quantize_input(x, info.input_scale, info.input_zero_point)
    else:
        raise McutlError(
            f"input dtype {x.dtype} is not supported: give float (mcutl quantises with "
            f"scale {info.input_scale}, zero point {info.input_zero_point}) or int8"
        )
    return np.ascontiguousarray(to_ir_layout(q, info.source_layout)).astype(np.int8)


def check_model(info: BuildInfo, hello: proto.Hello) -> None:
    if hello.model_hash.hex() != info.model_hash:
        runs = (
            "no model (base firmware)"
            if not hello.has_model
            else f"model {hello.model_hash.hex()[:16]} (build id {hello.build_id})"
        )
        raise ModelMismatchError(
            f"the device runs {runs}, but this build folder is model "
            f"{info.model_hash[:16]} for {info.target}. Flash this build first "
            "(`mcutl flash BUILD`), or point at the build folder the device was flashed from."
        )


def infer_one(session: Session, sample: np.ndarray, attempts: int = 4) -> tuple[bytes, int]:
    """Send one int8 NHWC sample with RUN (chunked to max_payload); returns (output, ticks).

    The chunk that completes the input runs the model, whose activations overwrite the
    input in the arena: that chunk is not safe to resend alone. If its answer is lost,
    the whole input is sent again (every chunk is idempotent until the last).
    """
    from mcutl.link.client import RepeatUnsafeError

    data = sample.tobytes()
    chunk = session.device.payload() - 4  # smaller on a damaged line
    for attempt in range(attempts):
        try:
            resp = b""
            for off in range(0, len(data), chunk):
                resp = session.device.request(
                    proto.MsgType.RUN, struct.pack("<I", off) + data[off : off + chunk]
                )
            (ticks,) = struct.unpack_from("<I", resp)
            return resp[4:], ticks
        except RepeatUnsafeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def firmware_for(build: Path, info: BuildInfo, *, qemu: bool,
                 port: str | None) -> tuple[Target, Path]:
    """The target and firmware file that run where asked: the host build (default), QEMU
    or a board (--port); a clear error when the build has no such firmware."""
    if port is None and not qemu:
        key, target = "host", load_target("host")
    else:
        key, target = ("qemu" if qemu else "board"), load_target(info.target)
    if key not in info.firmware:
        where = {"qemu": f"QEMU (target {info.target} has no QEMU model: compile for "
                         "stm32f405 or mps2_an386)",
                 "board": f"a board (it was compiled for {info.target}: compile for the "
                          "board's target)",
                 "host": "the host (compile it again)"}[key]
        raise McutlError(f"build {build} has no firmware for {where}")
    return target, build / info.firmware[key]


def run_build(
    build: Path,
    x: np.ndarray,
    *,
    qemu: bool = False,
    port: str | None = None,
    baud: int = 115200,
    progress: Callable[[int], None] | None = None,
    icount: bool = False,
    what: str = "inputs",
) -> RunResult:
    info = BuildInfo.load(build)
    q = prepare_inputs(info, x, what, check_range=True)
    target, elf = firmware_for(build, info, qemu=qemu, port=port)
    outs: list[np.ndarray] = []
    ticks: list[int] = []
    out_shape = tuple(info.output_shape_nhwc)
    with open_session(target, elf, qemu=qemu, port=port, baud=baud, icount=icount) as s:
        check_model(info, s.hello)
        for i, sample in enumerate(q):
            y, t = infer_one(s, sample)
            outs.append(np.frombuffer(y, dtype=np.int8).reshape(out_shape))
            ticks.append(t)
            if progress is not None:
                progress(i + 1)
        if qemu or target.is_host:
            s.finish(0)
    y = np.concatenate(outs, axis=0)
    return RunResult(
        y=from_ir_layout(y, info.source_layout) if y.ndim == 4 else y,
        scale=info.output_scale,
        zero_point=info.output_zero_point,
        ticks=ticks,
    )
