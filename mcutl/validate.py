"""Checks of what a user hands to mcutl: files, arrays, labels, option values.

Every check raises an ``InputError`` (an ``McutlError``: the CLI prints it and exits 2)
whose message names the problem and the fix. The argparse types at the end turn
out-of-range option values into usage errors.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mcutl.errors import McutlError

MODEL_SUFFIXES = (".onnx", ".pt2", ".tflite")
#: float inputs of which more than this fraction fall outside the calibrated input range
#: are refused (they would saturate the int8 input quantiser)
MAX_SATURATED_FRACTION = 0.2


class InputError(McutlError, ValueError):
    """A file, array or option value that mcutl cannot use as given."""


class ModelFileError(InputError):
    """A model file that is missing, of an unknown kind, or cannot be decoded."""


# ---- files -------------------------------------------------------------------------
def check_model_file(path: str | Path) -> Path:
    """``path`` as an existing, non-empty model file with a known suffix."""
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory: give a model file "
                             f"({', '.join(MODEL_SUFFIXES)})")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelFileError(f"{p}: unknown model kind {p.suffix or '(no suffix)'!r}: the file "
                             f"name must end in one of {', '.join(MODEL_SUFFIXES)} (export "
                             "PyTorch models with torch.onnx.export or torch.export.save)")
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file; check the path")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p} is empty (0 bytes); export the model again")
    return p


def check_output_dir(path: str | Path, flag: str = "-o") -> Path:
    """``path`` as a folder to write into: absent or a directory, never a file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p}: this is an existing file, not a folder; give a folder "
                         "path (it is created if missing)")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{flag} {p}: {parent} is a file, not a folder; give another path")
    return p


def load_npz(path: str | Path, what: str, min_arrays: int = 1) -> list[np.ndarray]:
    """The arrays of an .npz file, in order; numeric, at least ``min_arrays`` of them."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory: give an .npz file")
    if not p.is_file():
        raise InputError(f"{what} {p}: no such file; check the path")
    with p.open("rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        arrays = [_load_array(p, what)]  # a single .npy array
    elif not zipfile.is_zipfile(p):
        raise InputError(f"{what} {p} is not a valid .npz file (not a zip archive); write it "
                         "with numpy.savez")
    else:
        arrays = _load_arrays(p, what)
    if len(arrays) < min_arrays:
        need = "inputs then labels" if min_arrays == 2 else "the input batch first"
        raise InputError(f"{what} {p} holds {len(arrays)} array(s), needs {min_arrays}: "
                         f"put {need} (numpy.savez(path, x=..., y=...))")
    return arrays


def _load_arrays(p: Path, what: str) -> list[np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as npz:
            return [np.asarray(npz[k]) for k in npz.files]
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"{what} {p} is not a valid .npz file ({exc}); write it with "
                         "numpy.savez") from exc
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise InputError(f"{what} {p}: {exc}; save numeric arrays (float or int) with "
                         "numpy.savez") from exc


def _load_array(p: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(np.load(p, allow_pickle=False))
    except (EOFError, OSError, ValueError) as exc:
        raise InputError(f"{what} {p} is not a valid .npy file ({exc}); write it with "
                         "numpy.save or numpy.savez") from exc


def load_npz_xy(path: str | Path, what: str = "--data") -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) from an .npz: the first two arrays, checked against each other."""
    x, y = load_npz(path, what, 2)[:2]
    check_numeric(x, f"{what} {path} inputs")
    check_same_length(x, y, f"{what} {path}")
    check_finite(x, f"{what} {path} inputs")
    return x, y


# ---- arrays ------------------------------------------------------------------------
def check_numeric(x: np.ndarray, what: str) -> None:
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.number)):
        raise InputError(f"{what} have dtype {x.dtype}; give numbers (float32, or int8 "
                         "already quantised)")


def first_nonfinite(x: np.ndarray) -> tuple[int, tuple[int, ...], float] | None:
    """(sample, index within the sample, value) of the first NaN/inf in a batch, or None."""
    if not np.issubdtype(x.dtype, np.floating):
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    flat = int(np.flatnonzero(bad.reshape(-1))[0])
    idx = np.unravel_index(flat, x.shape)
    return int(idx[0]), tuple(int(i) for i in idx[1:]), float(x[idx])


def check_finite(x: np.ndarray, what: str) -> None:
    """Refuse NaN/inf, naming the first bad sample (``x``: batch first)."""
    hit = first_nonfinite(np.asarray(x))
    if hit is not None:
        sample, index, value = hit
        raise InputError(f"{what}: sample {sample} has a non-finite value ({value} at index "
                         f"{index}); remove or fix it")


def check_same_length(x: np.ndarray, y: np.ndarray, what: str) -> None:
    if x.ndim == 0 or y.ndim != 1 or len(x) != len(y):
        raise InputError(f"{what}: {x.shape[0] if x.ndim else 0} inputs {tuple(x.shape)} but "
                         f"labels of shape {tuple(y.shape)}; give one label per input")


def check_nonempty(x: np.ndarray, what: str) -> None:
    if x.ndim == 0 or len(x) == 0:
        raise InputError(f"{what} hold no samples; give at least one")


def check_labels(y: np.ndarray, num_classes: int, what: str = "labels") -> np.ndarray:
    """``y`` as int64 class indices in 0..num_classes-1 (integral floats accepted)."""
    y = np.asarray(y)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number):
        raise InputError(f"{what} have dtype {y.dtype}; give integer class indices")
    if np.issubdtype(y.dtype, np.floating):
        frac = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if frac.size:
            i = int(frac[0])
            raise InputError(f"{what}: label {i} is {y[i]!r}, not a class index; give "
                             f"integer labels 0..{num_classes - 1} (not one-hot or scores)")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{what}: label {i} is {y[i]!r}, outside 0..{num_classes - 1} (the "
                         f"build has {num_classes} classes); fix the labels or compile with "
                         "--num-classes matching them")
    return y.astype(np.int64)


def check_input_range(x: np.ndarray, scale: float, zero_point: int, what: str) -> None:
    """Refuse float inputs far outside the range the int8 input was calibrated for."""
    lo = scale * (-128 - zero_point)
    hi = scale * (127 - zero_point)
    if x.size == 0:
        return
    outside = float(np.mean((x < lo - scale / 2) | (x > hi + scale / 2)))
    if outside > MAX_SATURATED_FRACTION:
        raise InputError(
            f"{what} range over [{float(x.min()):.4g}, {float(x.max()):.4g}] but the build "
            f"was calibrated for [{lo:.4g}, {hi:.4g}]: {100 * outside:.0f} % of the values "
            "saturate the int8 input. Scale them like the calibration data (or compile "
            "with calibration data like these)")


def source_sample_shape(nhwc: tuple[int, ...] | list[int], layout: str) -> tuple[int, ...]:
    """One sample's shape in the user's layout, from the IR input shape (batch 1 first)."""
    shape = tuple(int(d) for d in nhwc)
    if layout == "NCHW" and len(shape) == 4:
        return (shape[3], shape[1], shape[2])
    if layout == "NCL" and len(shape) == 4:
        return (shape[3], shape[2])
    return shape[1:]


def check_batch(x: np.ndarray, sample_shape: tuple[int, ...], layout: str, what: str,
                quant: tuple[float, int] | None = None) -> None:
    """A batch of inputs for a model: numeric, (N, *sample_shape) with N >= 1, finite,
    and (float, ``quant`` = the input's (scale, zero point)) within the calibrated range."""
    check_numeric(x, what)
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        want = ", ".join(str(d) for d in sample_shape)
        raise InputError(f"{what} have shape {tuple(x.shape)}, which does not match the model "
                         f"input: it expects a batch of shape (N, {want}) ({layout} layout, "
                         "batch first)")
    check_nonempty(x, what)
    check_finite(x, what)
    if quant is not None and np.issubdtype(x.dtype, np.floating):
        check_input_range(x, quant[0], quant[1], what)


def check_xy(x: np.ndarray, y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """Inputs and labels of a labelled set: as many labels as inputs, at least one
    sample, labels in 0..num_classes-1; returns the labels as int64."""
    x, y = np.asarray(x), np.asarray(y)
    check_same_length(x, y, what)
    check_nonempty(x, f"{what} inputs")
    return check_labels(y, num_classes, f"{what} labels")


def check_train_call(info: Any, x: np.ndarray, y: np.ndarray, eval_x: np.ndarray | None,
                     eval_y: np.ndarray | None, num_classes: int, epochs: int, batch: int
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """The arguments of ``mcutl.train.loop.train`` for the build ``info`` (its BuildInfo):
    inputs its shape, finite and in the calibrated range, labels in 0..num_classes-1;
    returns the labels as int64."""
    check_count(epochs, "epochs")
    check_count(batch, "batch")
    sets = [("training data", x, y)]
    if (eval_x is None) != (eval_y is None):
        raise InputError("give both eval_x and eval_y, or neither")
    if eval_x is not None and eval_y is not None:
        sets.append(("held-out data", eval_x, eval_y))
    labels = []
    for what, xs, ys in sets:
        labels.append(check_xy(xs, ys, num_classes, what))
        check_batch(np.asarray(xs), source_sample_shape(info.input_shape_nhwc,
                                                        info.source_layout),
                    info.source_layout, f"{what} inputs",
                    (info.input_scale, info.input_zero_point))
    return labels[0], labels[1] if len(labels) > 1 else None


def check_verify_call(steps: int, batch: int, data: tuple[np.ndarray, np.ndarray] | None,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The arguments of ``mcutl.verify.harness.verify``; labels come back as int64."""
    check_count(steps, "steps")
    check_count(batch, "batch")
    if data is None:
        return None
    return data[0], check_xy(data[0], data[1], num_classes, "verify data")


# ---- option values -----------------------------------------------------------------
def check_count(value: int, what: str, minimum: int = 1) -> int:
    """An integer option of the Python API (epochs, batch, steps) that must be >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{what} {value!r}: must be an integer >= {minimum}")
    return int(value)


def _arg_type(name: str, check: Callable[[str], object]) -> Callable[[str], object]:
    check.__name__ = name  # argparse names the type in its message
    return check


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def int_at_least(minimum: int) -> Callable[[str], object]:
    """argparse type: an integer >= ``minimum``."""

    def conv(text: str) -> int:
        v = int(_number(text, int))
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} is too small: give an integer >= {minimum}")
        return v

    return _arg_type(f"integer >= {minimum}", conv)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    v = _number(text, float)
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return v


def fraction(lo_open: bool = False, hi_open: bool = True) -> Callable[[str], object]:
    """argparse type: a float in [0, 1) (or other open/closed ends)."""
    interval = f"{'(' if lo_open else '['}0, 1{')' if hi_open else ']'}"

    def conv(text: str) -> float:
        v = _number(text, float)
        ok = math.isfinite(v) and (v > 0 if lo_open else v >= 0) and (
            v < 1 if hi_open else v <= 1)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text} is outside {interval}")
        return v

    return _arg_type(f"fraction in {interval}", conv)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
class_count = int_at_least(2)
