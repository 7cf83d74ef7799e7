"""Run .tflite models on TFLite's *reference* kernels, the oracles of mcutl's kernels.

* ``run_tflite_ref``: tflite-runtime with ``OpResolverType.BUILTIN_REF`` (the
  default resolver's optimised x86 kernels round some ties differently and are
  not bit-exact with the integer spec; see shared/notes/tflite.md).
* ``run_tflm``: the TFLite Micro interpreter (``tflite_micro`` package), which
  also reports how many bytes of its tensor arena the model used.

Both raise ``OracleError`` (a ``RuntimeError``) with the interpreter's own
message when a model is rejected or fails, and ``ValueError`` for inputs that do
not match the model.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["OracleError", "run_tflite_ref", "run_tflm", "tflm_arena_used"]


class OracleError(RuntimeError):
    """A reference interpreter rejected the model or failed to run it."""


def _check_inputs(
    details: Sequence[dict[str, Any]], inputs: Sequence[npt.ArrayLike], who: str
) -> list[np.ndarray]:
    if len(inputs) != len(details):
        raise ValueError(f"{who}: model has {len(details)} inputs, got {len(inputs)}")
    out = []
    for i, (d, x) in enumerate(zip(details, inputs, strict=True)):
        arr = np.asarray(x)
        want_shape = tuple(int(s) for s in d["shape"])
        want_dtype = np.dtype(d["dtype"])
        if arr.shape != want_shape:
            raise ValueError(f"{who}: input {i} has shape {arr.shape}, model wants {want_shape}")
        if arr.dtype != want_dtype:
            raise ValueError(f"{who}: input {i} has dtype {arr.dtype}, model wants {want_dtype}")
        out.append(np.ascontiguousarray(arr))
    return out


def run_tflite_ref(model_bytes: bytes, inputs: Sequence[npt.ArrayLike]) -> list[np.ndarray]:
    """Run ``model_bytes`` once with tflite-runtime's reference kernels.

    ``inputs`` are in the model's input order, with exactly the model's shapes and
    dtypes. Returns copies of all graph outputs in output order. (Only graph
    outputs are reliable: tflite-runtime may run ADD in place over an input.)
    """
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover - environment problem
        raise OracleError(f"tflite-runtime is not importable: {e}") from e
    try:
        interp = Interpreter(
            model_content=bytes(model_bytes),
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            num_threads=1,
        )
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        raise OracleError(f"tflite-runtime (BUILTIN_REF) rejected the model: {e}") from e
    in_details = interp.get_input_details()
    arrays = _check_inputs(in_details, inputs, "run_tflite_ref")
    for d, arr in zip(in_details, arrays, strict=True):
        interp.set_tensor(d["index"], arr)
    try:
        interp.invoke()
    except RuntimeError as e:
        raise OracleError(f"tflite-runtime (BUILTIN_REF) failed to run the model: {e}") from e
    return [np.array(interp.get_tensor(d["index"]), copy=True)
            for d in interp.get_output_details()]


@contextlib.contextmanager
def _capture_fd(fd: int) -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor ``fd`` (TFLM logs to
    stderr from C++, out of reach of ``sys.stderr`` redirection)."""
    sink: list[str] = []
    stream = sys.stderr if fd == 2 else sys.stdout
    with contextlib.suppress(Exception):
        stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield sink
        finally:
            with contextlib.suppress(Exception):
                stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", errors="replace"))


_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")


def tflm_arena_used(log: str) -> int:
    """Parse the arena size from TFLM's ``PrintAllocations`` log
    (``[RecordingMicroAllocator] Arena allocation total N bytes``)."""
    m = _ARENA_RE.search(log)
    if m is None:
        raise OracleError(f"could not find the arena usage in TFLM's log:\n{log}")
    return int(m.group(1))


def _model_info(model_bytes: bytes) -> tuple[int, int, int]:
    """(number of graph inputs, number of graph outputs, bytes of non-constant
    tensors) of subgraph 0."""
    import tflite

    itemsize = {tflite.TensorType.INT8: 1, tflite.TensorType.UINT8: 1,
                tflite.TensorType.INT16: 2, tflite.TensorType.INT32: 4,
                tflite.TensorType.FLOAT32: 4, tflite.TensorType.INT64: 8}
    try:
        model = tflite.Model.GetRootAs(bytes(model_bytes), 0)
        sg = model.Subgraphs(0)
        act_bytes = 0
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            buf = model.Buffers(t.Buffer())
            if buf is not None and buf.DataLength() > 0:
                continue
            n = int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
            act_bytes += n * itemsize.get(t.Type(), 8)
        return int(sg.InputsLength()), int(sg.OutputsLength()), act_bytes
    except Exception as e:
        raise OracleError(f"not a readable .tflite model: {e}") from e


_TOO_SMALL_RE = re.compile(r"arena|Failed to resize buffer|missing: \d+", re.IGNORECASE)


def run_tflm(
    model_bytes: bytes, inputs: Sequence[npt.ArrayLike], arena_size: int | None = None
) -> tuple[list[np.ndarray], int]:
    """Run ``model_bytes`` once with the TFLite Micro interpreter.

    Returns ``(outputs, arena_used_bytes)``: the graph outputs in order and the
    number of arena bytes TFLM's ``RecordingMicroAllocator`` reports as allocated
    (head + tail: planned tensors, scratch, persistent data). The Python binding
    has no getter for it, so it is parsed from ``PrintAllocations``' log.

    ``arena_size``: bytes to give the interpreter; ``None`` starts at 16 KiB plus
    twice the bytes of the non-constant tensors and doubles (up to 256 MiB) while
    TFLM reports that the arena is too small.
    """
    try:
        from tflite_micro import runtime as tflm_runtime
    except ImportError as e:  # pragma: no cover - environment problem
        raise OracleError(f"tflite_micro is not importable: {e}") from e
    n_in, n_out, act_bytes = _model_info(model_bytes)
    size = int(arena_size) if arena_size is not None else 16 * 1024 + 2 * act_bytes
    limit = size if arena_size is not None else 256 * 1024 * 1024
    while True:
        with _capture_fd(2) as log:
            try:
                interp = tflm_runtime.Interpreter.from_bytes(
                    bytes(model_bytes), arena_size=size
                )
                err: Exception | None = None
            except Exception as e:  # the binding raises RuntimeError or struct.error
                err = e
        text = "".join(log)
        if err is None:
            break
        too_small = bool(_TOO_SMALL_RE.search(text + str(err)))
        if too_small and size < limit:
            size *= 2
            continue
        raise OracleError(f"TFLite Micro rejected the model: {err}\n{text}".rstrip()) from err

    details = [interp.get_input_details(i) for i in range(n_in)]
    arrays = _check_inputs(details, inputs, "run_tflm")
    for i, arr in enumerate(arrays):
        interp.set_input(arr, i)
    with _capture_fd(2) as log:
        try:
            interp.invoke()
            err = None
        except Exception as e:
            err = e
    if err is not None:
        raise OracleError(f"TFLite Micro failed to run the model: {err}\n{''.join(log)}") from err
    outputs = [np.array(interp.get_output(i), copy=True) for i in range(n_out)]
    with _capture_fd(2) as log:
        interp.print_allocations()
    return outputs, tflm_arena_used("".join(log))
