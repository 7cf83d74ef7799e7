"""Test helper: build runtime_c/src/f32/*.c into a host shared library and call the
float32 training kernels through ctypes.

The library is compiled with the project's strict flags plus ``-fno-math-errno``
(``-std=c99 -O2 -Wall -Wextra -Werror -pedantic -ffp-contract=off -fno-math-errno
-fPIC -shared``) into a directory keyed by a hash of the sources and flags, so a
session builds it once. A generated C file exports ``sizeof``/``offsetof`` of every
struct of ``mcutl/f32.h``; ``F32Lib`` checks them against the ctypes mirrors below.
A test-only shim adds array versions of the scalar math functions.

The wrappers take and return numpy float32 arrays in the C layouts (NHWC
activations, OHWI conv weights, [out, in] linear weights). Functions that
accumulate into a caller buffer take it as ``init`` (a copy is updated and
returned; ``None`` means zeros), so tests can check "+=" semantics.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
F32_SRC = REPO / "runtime_c" / "src" / "f32"
INCLUDE = REPO / "runtime_c" / "include"
HEADER = INCLUDE / "mcutl" / "f32.h"

STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off",
          "-fno-math-errno"]
HOST_CFLAGS = list(STRICT)
ARM_CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", *STRICT]

MCUTL_F32_OK = 0
MCUTL_F32_ARG_ERROR = -1
MASK_RELU = 0
MASK_RELU6 = 1

_i32 = ctypes.c_int32
_f32 = ctypes.c_float
_pf = ctypes.POINTER(ctypes.c_float)
_pi8 = ctypes.POINTER(ctypes.c_int8)
_pu8 = ctypes.POINTER(ctypes.c_uint8)
_pi32 = ctypes.POINTER(ctypes.c_int32)

F32Array = npt.NDArray[np.float32]


class Dims(ctypes.Structure):
    _fields_ = [("n", _i32), ("h", _i32), ("w", _i32), ("c", _i32)]


class CConvParams(ctypes.Structure):
    _fields_ = [("stride_h", _i32), ("stride_w", _i32), ("dilation_h", _i32),
                ("dilation_w", _i32), ("pad_top", _i32), ("pad_left", _i32), ("groups", _i32)]


class CSgdParams(ctypes.Structure):
    _fields_ = [("lr", _f32), ("momentum", _f32), ("weight_decay", _f32)]


class CAdamParams(ctypes.Structure):
    _fields_ = [("lr", _f32), ("beta1", _f32), ("beta2", _f32), ("eps", _f32),
                ("weight_decay", _f32)]


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "mcutl_f32_dims_t": Dims,
    "mcutl_f32_conv_params_t": CConvParams,
    "mcutl_f32_sgd_params_t": CSgdParams,
    "mcutl_f32_adam_params_t": CAdamParams,
}

_SHIM_SOURCE = """#include <stdint.h>
#include "mcutl/f32.h"
#define MAP(name, fn) \\
    void name(const float *x, int32_t n, float *y); \\
    void name(const float *x, int32_t n, float *y) \\
    { int32_t i; for (i = 0; i < n; i++) { y[i] = fn(x[i]); } }
MAP(mcutl_test_expf, mcutl_expf)
MAP(mcutl_test_logf, mcutl_logf)
MAP(mcutl_test_log1pf, mcutl_log1pf)
MAP(mcutl_test_sqrtf, mcutl_sqrtf)
"""


def f32_sources() -> list[Path]:
    return sorted(F32_SRC.glob("*.c"))


def _layout_source() -> str:
    lines = ["#include <stddef.h>", '#include "mcutl/f32.h"',
             "const long mcutl_test_f32_layout[] = {"]
    for cname, cls in STRUCTS.items():
        lines.append(f"    (long)sizeof({cname}),")
        lines.extend(f"    (long)offsetof({cname}, {fname})," for fname, _ in cls._fields_)
    lines.append("    -1L\n};")
    return "\n".join(lines) + "\n"


def _expected_layout() -> list[int]:
    out: list[int] = []
    for cls in STRUCTS.values():
        out.append(ctypes.sizeof(cls))
        out.extend(getattr(cls, fname).offset for fname, _ in cls._fields_)
    return [*out, -1]


def compile_objects(compiler: str, flags: Sequence[str], out_dir: Path,
                    sources: Sequence[Path]) -> list[Path]:
    """Compile each source to ``out_dir/<stem>.o``; raises RuntimeError with the
    compiler's message on any warning or error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in sources:
        obj = out_dir / (src.stem + ".o")
        proc = subprocess.run([compiler, *flags, f"-I{INCLUDE}", f"-I{F32_SRC}", "-c", str(src),
                               "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {src.name}:\n{proc.stderr}")
        objs.append(obj)
    return objs


def build_f32_lib(cache_dir: Path, extra_flags: Sequence[str] = (),
                  compiler: str = "gcc") -> Path:
    """Build (or reuse) ``libmcutl_f32.so`` under ``cache_dir``; return its path."""
    if shutil.which(compiler) is None:
        raise FileNotFoundError(f"{compiler} not found")
    flags = [*HOST_CFLAGS, *extra_flags, "-fPIC"]
    layout = _layout_source()
    h = hashlib.sha256()
    for p in [*f32_sources(), *sorted(F32_SRC.glob("*.h")), HEADER]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join([compiler, *flags]).encode())
    h.update(layout.encode())
    h.update(_SHIM_SOURCE.encode())
    out = cache_dir / f"f32-{h.hexdigest()[:16]}"
    lib = out / "libmcutl_f32.so"
    if lib.exists():
        return lib
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "layout.c").write_text(layout)
    (tmp / "math_shim.c").write_text(_SHIM_SOURCE)
    objs = compile_objects(compiler, flags, tmp,
                           [*f32_sources(), tmp / "layout.c", tmp / "math_shim.c"])
    proc = subprocess.run([compiler, "-shared", "-o", str(tmp / lib.name), *map(str, objs)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"linking the f32 kernels failed:\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return lib


@dataclass(frozen=True)
class ConvGeom:
    """mcutl_f32_conv_params_t as a Python value."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    groups: int = 1

    def c(self) -> CConvParams:
        return CConvParams(self.stride_h, self.stride_w, self.dilation_h, self.dilation_w,
                           self.pad_top, self.pad_left, self.groups)


class KernelError(RuntimeError):
    """A C kernel returned a status other than MCUTL_F32_OK."""


def f32(a: npt.ArrayLike) -> F32Array:
    """A C-contiguous float32 copy-or-view of ``a``."""
    return np.ascontiguousarray(a, dtype=np.float32)


def _pf32(a: np.ndarray | None) -> Any:
    if a is None:
        return None
    assert a.dtype == np.float32 and a.flags.c_contiguous
    return a.ctypes.data_as(_pf)


def _pint8(a: np.ndarray) -> Any:
    assert a.dtype == np.int8 and a.flags.c_contiguous
    return a.ctypes.data_as(_pi8)


def _pu8a(a: np.ndarray) -> Any:
    assert a.dtype == np.uint8 and a.flags.c_contiguous
    return a.ctypes.data_as(_pu8)


def _dims(shape: Sequence[int]) -> Dims:
    n, h, w, c = (int(s) for s in shape)
    return Dims(n, h, w, c)


def _acc(init: npt.ArrayLike | None, shape: Sequence[int]) -> tuple[F32Array, int]:
    """(buffer, accumulate flag): a copy of ``init`` to add to, or a fresh buffer
    filled with NaN (so a kernel that should overwrite but reads it shows up)."""
    if init is None:
        return np.full(tuple(shape), np.nan, dtype=np.float32), 0
    buf = f32(init).copy()
    assert buf.shape == tuple(shape)
    return buf, 1


def _accum(init: npt.ArrayLike | None, shape: Sequence[int]) -> F32Array:
    """A copy of ``init`` (or zeros) for the "+=" parameter gradients."""
    if init is None:
        return np.zeros(tuple(shape), dtype=np.float32)
    buf = f32(init).copy()
    assert buf.shape == tuple(shape)
    return buf


def mask_bytes(size: int) -> int:
    return (size + 7) // 8


class F32Lib:
    """ctypes front-end of the float32 kernels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        exp = _expected_layout()
        got = list((ctypes.c_long * len(exp)).in_dll(self.lib, "mcutl_test_f32_layout"))
        if got != exp:
            raise RuntimeError(f"ctypes mirrors do not match f32.h: {got} vs {exp}")
        pD = ctypes.POINTER(Dims)
        pC = ctypes.POINTER(CConvParams)
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "mcutl_expf": (_f32, [_f32]),
            "mcutl_logf": (_f32, [_f32]),
            "mcutl_log1pf": (_f32, [_f32]),
            "mcutl_sqrtf": (_f32, [_f32]),
            "mcutl_cosf_pi": (_f32, [_f32]),
            "mcutl_test_expf": (None, [_pf, _i32, _pf]),
            "mcutl_test_logf": (None, [_pf, _i32, _pf]),
            "mcutl_test_log1pf": (None, [_pf, _i32, _pf]),
            "mcutl_test_sqrtf": (None, [_pf, _i32, _pf]),
            "mcutl_conv2d_f32": (_i32, [pC, pD, _pf, pD, _pf, _pf, pD, _pf]),
            "mcutl_conv2d_grad_input_f32": (_i32, [pC, pD, _pf, pD, _pf, pD, _pf, _i32]),
            "mcutl_conv2d_grad_weight_f32": (_i32, [pC, pD, _pf, pD, _pf, pD, _pf]),
            "mcutl_conv2d_grad_bias_f32": (_i32, [pD, _pf, _pf]),
            "mcutl_conv2d_grad_input_s8w_f32": (_i32, [pC, pD, _pf, pD, _pi8, _pf, pD, _pf,
                                                       _i32]),
            "mcutl_depthwise_conv2d_grad_input_s8w_f32": (_i32, [pC, pD, _pf, pD, _pi8, _pf,
                                                                 pD, _pf, _i32]),
            "mcutl_linear_f32": (_i32, [_i32, _i32, _pf, _i32, _pf, _pf, _pf]),
            "mcutl_linear_grad_input_f32": (_i32, [_i32, _i32, _i32, _pf, _pf, _pf, _i32]),
            "mcutl_linear_grad_weight_f32": (_i32, [_i32, _i32, _pf, _i32, _pf, _pf]),
            "mcutl_linear_grad_bias_f32": (_i32, [_i32, _i32, _pf, _pf]),
            "mcutl_linear_grad_input_s8w_f32": (_i32, [_i32, _i32, _i32, _pi8, _pf, _pf, _pf,
                                                       _i32]),
            "mcutl_act_mask_from_s8": (_i32, [_pi8, _i32, _i32, _i32, _i32, _pu8]),
            "mcutl_relu_f32": (_i32, [_pf, _i32, _pf, _pu8]),
            "mcutl_relu6_f32": (_i32, [_pf, _i32, _pf, _pu8]),
            "mcutl_clamp_f32": (_i32, [_pf, _i32, _f32, _f32, _pf]),
            "mcutl_act_grad_input_f32": (_i32, [_pf, _pu8, _i32, _pf, _i32]),
            "mcutl_group_norm_f32": (_i32, [pD, _pf, _i32, _f32, _pf, _pf, _pf, _pf, _pf,
                                            _pf]),
            "mcutl_group_norm_grad_f32": (_i32, [pD, _i32, _pf, _pf, _pf, _pf, _pf, _i32, _pf,
                                                 _pf]),
            "mcutl_scale_shift_f32": (_i32, [pD, _pf, _pf, _pf, _pf]),
            "mcutl_scale_shift_grad_f32": (_i32, [pD, _pf, _pf, _pf, _pf, _i32, _pf, _pf]),
            "mcutl_avg_pool_f32": (_i32, [pD, _pf, _i32, _i32, _pf]),
            "mcutl_avg_pool_grad_input_f32": (_i32, [pD, _i32, _i32, _pf, _pf, _i32]),
            "mcutl_global_avg_pool_f32": (_i32, [pD, _pf, _pf]),
            "mcutl_global_avg_pool_grad_input_f32": (_i32, [pD, _pf, _pf, _i32]),
            "mcutl_upsample_nearest_f32": (_i32, [pD, _pf, _i32, _i32, _pf]),
            "mcutl_upsample_nearest_grad_input_f32": (_i32, [pD, _i32, _i32, _pf, _pf, _i32]),
            "mcutl_add_f32": (_i32, [_pf, _pf, _i32, _pf]),
            "mcutl_axpy_f32": (_i32, [_i32, _f32, _pf, _pf]),
            "mcutl_softmax_xent_f32": (_f32, [_pf, _pi32, _i32, _i32, _f32, _f32, _pf, _pf]),
            "mcutl_sgd_step_f32": (_i32, [ctypes.POINTER(CSgdParams), _i32, _pf, _pf, _pf,
                                          _i32]),
            "mcutl_sgd_accum_begin_f32": (_i32, [ctypes.POINTER(CSgdParams), _i32, _pf]),
            "mcutl_sgd_accum_step_f32": (_i32, [ctypes.POINTER(CSgdParams), _i32, _pf, _pf]),
            "mcutl_adam_step_f32": (_i32, [ctypes.POINTER(CAdamParams), _i32, _i32, _pf, _pf,
                                           _pf, _pf, _i32]),
            "mcutl_sgd_step_finite_f32": (_i32, [ctypes.POINTER(CSgdParams), _i32, _pf, _pf,
                                                 _pf]),
            "mcutl_adam_step_finite_f32": (_i32, [ctypes.POINTER(CAdamParams), _i32, _i32, _pf,
                                                  _pf, _pf, _pf]),
            "mcutl_dequantize_s8_f32": (_i32, [_pi8, _i32, _f32, _i32, _pf]),
            "mcutl_dequantize_avg_pool_s8_f32": (_i32, [pD, _pi8, _i32, _i32, _f32, _i32,
                                                        _pf]),
            "mcutl_quantize_bias_f32_s32": (_i32, [_pf, _i32, _pf, _pi32]),
            "mcutl_quantize_f32_s8": (_i32, [_pf, _i32, _f32, _i32, _pi8]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    def call(self, name: str, *args: Any) -> None:
        """Call a status-returning kernel; raise KernelError unless MCUTL_F32_OK."""
        st = getattr(self.lib, name)(*args)
        if st != MCUTL_F32_OK:
            raise KernelError(f"{name} returned {st}")

    def status(self, name: str, *args: Any) -> int:
        return int(getattr(self.lib, name)(*args))

    # ------------------------------------------------------------------ math
    def map_math(self, name: str, x: npt.ArrayLike) -> F32Array:
        xa = f32(x).ravel()
        y = np.empty_like(xa)
        getattr(self.lib, f"mcutl_test_{name}")(_pf32(xa), xa.size, _pf32(y))
        return y

    # ------------------------------------------------------------------ conv
    def conv2d(self, g: ConvGeom, x: F32Array, w: F32Array, b: F32Array | None,
               out_hw: tuple[int, int]) -> F32Array:
        out = np.empty((x.shape[0], *out_hw, w.shape[0]), np.float32)
        self.call("mcutl_conv2d_f32", ctypes.byref(g.c()), ctypes.byref(_dims(x.shape)),
                  _pf32(x), ctypes.byref(_dims(w.shape)), _pf32(w), _pf32(b),
                  ctypes.byref(_dims(out.shape)), _pf32(out))
        return out

    def conv2d_grad_input(self, g: ConvGeom, go: F32Array, w: F32Array,
                          in_shape: Sequence[int], init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_conv2d_grad_input_f32", ctypes.byref(g.c()),
                  ctypes.byref(_dims(go.shape)), _pf32(go), ctypes.byref(_dims(w.shape)),
                  _pf32(w), ctypes.byref(_dims(in_shape)), _pf32(gi), acc)
        return gi

    def conv2d_grad_weight(self, g: ConvGeom, x: F32Array, go: F32Array,
                           w_shape: Sequence[int], init: F32Array | None = None) -> F32Array:
        gw = _accum(init, w_shape)
        self.call("mcutl_conv2d_grad_weight_f32", ctypes.byref(g.c()),
                  ctypes.byref(_dims(x.shape)), _pf32(x), ctypes.byref(_dims(go.shape)),
                  _pf32(go), ctypes.byref(_dims(w_shape)), _pf32(gw))
        return gw

    def conv2d_grad_bias(self, go: F32Array, init: F32Array | None = None) -> F32Array:
        gb = _accum(init, (go.shape[3],))
        self.call("mcutl_conv2d_grad_bias_f32", ctypes.byref(_dims(go.shape)), _pf32(go),
                  _pf32(gb))
        return gb

    def conv2d_grad_input_s8w(self, g: ConvGeom, go: F32Array, wq: np.ndarray,
                              scale: F32Array, in_shape: Sequence[int],
                              init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_conv2d_grad_input_s8w_f32", ctypes.byref(g.c()),
                  ctypes.byref(_dims(go.shape)), _pf32(go), ctypes.byref(_dims(wq.shape)),
                  _pint8(wq), _pf32(scale), ctypes.byref(_dims(in_shape)), _pf32(gi), acc)
        return gi

    def depthwise_conv2d_grad_input_s8w(self, g: ConvGeom, go: F32Array, wq: np.ndarray,
                                        scale: F32Array, in_shape: Sequence[int],
                                        init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_depthwise_conv2d_grad_input_s8w_f32", ctypes.byref(g.c()),
                  ctypes.byref(_dims(go.shape)), _pf32(go), ctypes.byref(_dims(wq.shape)),
                  _pint8(wq), _pf32(scale), ctypes.byref(_dims(in_shape)), _pf32(gi), acc)
        return gi

    # ---------------------------------------------------------------- linear
    def linear(self, x: F32Array, w: F32Array, b: F32Array | None) -> F32Array:
        out = np.empty((x.shape[0], w.shape[0]), np.float32)
        self.call("mcutl_linear_f32", x.shape[0], x.shape[1], _pf32(x), w.shape[0], _pf32(w),
                  _pf32(b), _pf32(out))
        return out

    def linear_grad_input(self, w: F32Array, go: F32Array,
                          init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, (go.shape[0], w.shape[1]))
        self.call("mcutl_linear_grad_input_f32", go.shape[0], w.shape[1], w.shape[0],
                  _pf32(w), _pf32(go), _pf32(gi), acc)
        return gi

    def linear_grad_weight(self, x: F32Array, go: F32Array,
                           init: F32Array | None = None) -> F32Array:
        gw = _accum(init, (go.shape[1], x.shape[1]))
        self.call("mcutl_linear_grad_weight_f32", x.shape[0], x.shape[1], _pf32(x),
                  go.shape[1], _pf32(go), _pf32(gw))
        return gw

    def linear_grad_bias(self, go: F32Array, init: F32Array | None = None) -> F32Array:
        gb = _accum(init, (go.shape[1],))
        self.call("mcutl_linear_grad_bias_f32", go.shape[0], go.shape[1], _pf32(go),
                  _pf32(gb))
        return gb

    def linear_grad_input_s8w(self, wq: np.ndarray, scale: F32Array, go: F32Array,
                              init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, (go.shape[0], wq.shape[1]))
        self.call("mcutl_linear_grad_input_s8w_f32", go.shape[0], wq.shape[1], wq.shape[0],
                  _pint8(wq), _pf32(scale), _pf32(go), _pf32(gi), acc)
        return gi

    # ----------------------------------------------------------- activations
    def act(self, name: str, x: F32Array, inplace: bool = False) -> tuple[F32Array, np.ndarray]:
        """``name`` in {"relu", "relu6"}: returns (output, mask)."""
        out = x if inplace else np.empty_like(x)
        mask = np.full(mask_bytes(x.size), 0xA5, np.uint8)
        self.call(f"mcutl_{name}_f32", _pf32(x), x.size, _pf32(out), _pu8a(mask))
        return out, mask

    def act_grad_input(self, go: F32Array, mask: np.ndarray, init: F32Array | None = None,
                       inplace: bool = False) -> F32Array:
        if inplace:
            gi, acc = go, 0
        else:
            gi, acc = _acc(init, go.shape)
        self.call("mcutl_act_grad_input_f32", _pf32(go), _pu8a(mask), go.size, _pf32(gi), acc)
        return gi

    def act_mask_from_s8(self, q: np.ndarray, act_min: int, act_max: int,
                         mode: int) -> np.ndarray:
        mask = np.full(mask_bytes(q.size), 0xA5, np.uint8)
        self.call("mcutl_act_mask_from_s8", _pint8(q), q.size, act_min, act_max, mode,
                  _pu8a(mask))
        return mask

    # ----------------------------------------------------------------- norms
    def group_norm(self, x: F32Array, groups: int, eps: float, gamma: F32Array | None,
                   beta: F32Array | None, inplace: str = ""
                   ) -> tuple[F32Array, F32Array, F32Array, F32Array]:
        """Returns (out, xhat, mean, rstd). ``inplace``: "" / "out" (out over the input) /
        "xhat" (xhat over the input); the input array is then overwritten."""
        n = x.shape[0]
        out = x if inplace == "out" else np.empty_like(x)
        xhat = x if inplace == "xhat" else np.empty_like(x)
        mean = np.empty((n, groups), np.float32)
        rstd = np.empty((n, groups), np.float32)
        self.call("mcutl_group_norm_f32", ctypes.byref(_dims(x.shape)), _pf32(x), groups, eps,
                  _pf32(gamma), _pf32(beta), _pf32(out), _pf32(xhat), _pf32(mean),
                  _pf32(rstd))
        return out, xhat, mean, rstd

    def group_norm_grad(self, xhat: F32Array, rstd: F32Array, gamma: F32Array | None,
                        go: F32Array, groups: int, init: F32Array | None = None,
                        grad_gamma: F32Array | None = None, grad_beta: F32Array | None = None,
                        inplace: bool = False) -> tuple[F32Array, F32Array, F32Array]:
        """Returns (grad_in, grad_gamma, grad_beta); ``inplace`` writes grad_in over
        ``go``."""
        c = xhat.shape[3]
        if inplace:
            gi, acc = go, 0
        else:
            gi, acc = _acc(init, xhat.shape)
        gg = _accum(grad_gamma, (c,))
        gb = _accum(grad_beta, (c,))
        self.call("mcutl_group_norm_grad_f32", ctypes.byref(_dims(xhat.shape)), groups,
                  _pf32(xhat), _pf32(rstd), _pf32(gamma), _pf32(go), _pf32(gi), acc,
                  _pf32(gg), _pf32(gb))
        return gi, gg, gb

    def scale_shift(self, x: F32Array, scale: F32Array, shift: F32Array | None,
                    inplace: bool = False) -> F32Array:
        out = x if inplace else np.empty_like(x)
        self.call("mcutl_scale_shift_f32", ctypes.byref(_dims(x.shape)), _pf32(x),
                  _pf32(scale), _pf32(shift), _pf32(out))
        return out

    def scale_shift_grad(self, x: F32Array, scale: F32Array, go: F32Array,
                         init: F32Array | None = None, grad_scale: F32Array | None = None,
                         grad_shift: F32Array | None = None
                         ) -> tuple[F32Array, F32Array, F32Array]:
        gi, acc = _acc(init, x.shape)
        gs = _accum(grad_scale, (x.shape[3],))
        gb = _accum(grad_shift, (x.shape[3],))
        self.call("mcutl_scale_shift_grad_f32", ctypes.byref(_dims(x.shape)), _pf32(x),
                  _pf32(scale), _pf32(go), _pf32(gi), acc, _pf32(gs), _pf32(gb))
        return gi, gs, gb

    # ----------------------------------------------------------------- pools
    def avg_pool(self, x: F32Array, ph: int, pw: int) -> F32Array:
        n, h, w, c = x.shape
        out = np.empty((n, h // ph, w // pw, c), np.float32)
        self.call("mcutl_avg_pool_f32", ctypes.byref(_dims(x.shape)), _pf32(x), ph, pw,
                  _pf32(out))
        return out

    def avg_pool_grad_input(self, in_shape: Sequence[int], ph: int, pw: int, go: F32Array,
                            init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_avg_pool_grad_input_f32", ctypes.byref(_dims(in_shape)), ph, pw,
                  _pf32(go), _pf32(gi), acc)
        return gi

    def global_avg_pool(self, x: F32Array) -> F32Array:
        out = np.empty((x.shape[0], x.shape[3]), np.float32)
        self.call("mcutl_global_avg_pool_f32", ctypes.byref(_dims(x.shape)), _pf32(x),
                  _pf32(out))
        return out

    def global_avg_pool_grad_input(self, in_shape: Sequence[int], go: F32Array,
                                   init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_global_avg_pool_grad_input_f32", ctypes.byref(_dims(in_shape)),
                  _pf32(go), _pf32(gi), acc)
        return gi

    def upsample(self, x: F32Array, fh: int, fw: int) -> F32Array:
        n, h, w, c = x.shape
        out = np.empty((n, h * fh, w * fw, c), np.float32)
        self.call("mcutl_upsample_nearest_f32", ctypes.byref(_dims(x.shape)), _pf32(x), fh, fw,
                  _pf32(out))
        return out

    def upsample_grad_input(self, in_shape: Sequence[int], fh: int, fw: int, go: F32Array,
                            init: F32Array | None = None) -> F32Array:
        gi, acc = _acc(init, in_shape)
        self.call("mcutl_upsample_nearest_grad_input_f32", ctypes.byref(_dims(in_shape)), fh,
                  fw, _pf32(go), _pf32(gi), acc)
        return gi

    # ---------------------------------------------------------- element-wise
    def add(self, a: F32Array, b: F32Array, out: F32Array | None = None) -> F32Array:
        res = np.empty_like(a) if out is None else out
        self.call("mcutl_add_f32", _pf32(a), _pf32(b), a.size, _pf32(res))
        return res

    def axpy(self, alpha: float, x: F32Array, y: F32Array) -> None:
        """y += alpha * x, in place on ``y``."""
        self.call("mcutl_axpy_f32", x.size, alpha, _pf32(x), _pf32(y))

    # ------------------------------------------------------------------ loss
    def softmax_xent(self, logits: F32Array, labels: npt.ArrayLike, smoothing: float,
                     grad_scale: float) -> tuple[float, F32Array, F32Array]:
        """Returns (mean loss, probs, grad_logits)."""
        lab = np.ascontiguousarray(labels, dtype=np.int32)
        probs = np.empty_like(logits)
        grad = np.empty_like(logits)
        b, k = logits.shape
        loss = self.lib.mcutl_softmax_xent_f32(_pf32(logits), lab.ctypes.data_as(_pi32), b, k,
                                               smoothing, grad_scale, _pf32(probs),
                                               _pf32(grad))
        if loss < 0:
            raise KernelError("mcutl_softmax_xent_f32 rejected its arguments")
        return float(loss), probs, grad

    # ------------------------------------------------------------- optimizers
    def sgd_step(self, lr: float, momentum: float, wd: float, w: F32Array, g: F32Array,
                 buf: F32Array | None, zero_grad: bool) -> None:
        p = CSgdParams(lr, momentum, wd)
        self.call("mcutl_sgd_step_f32", ctypes.byref(p), w.size, _pf32(w), _pf32(g),
                  _pf32(buf), int(zero_grad))

    def sgd_accum_begin(self, momentum: float, buf: F32Array) -> None:
        p = CSgdParams(0.0, momentum, 0.0)
        self.call("mcutl_sgd_accum_begin_f32", ctypes.byref(p), buf.size, _pf32(buf))

    def sgd_accum_step(self, lr: float, momentum: float, wd: float, w: F32Array,
                       buf: F32Array) -> None:
        p = CSgdParams(lr, momentum, wd)
        self.call("mcutl_sgd_accum_step_f32", ctypes.byref(p), w.size, _pf32(w), _pf32(buf))

    def adam_step(self, lr: float, beta1: float, beta2: float, eps: float, wd: float,
                  step: int, w: F32Array, g: F32Array, m: F32Array, v: F32Array,
                  zero_grad: bool) -> None:
        p = CAdamParams(lr, beta1, beta2, eps, wd)
        self.call("mcutl_adam_step_f32", ctypes.byref(p), step, w.size, _pf32(w), _pf32(g),
                  _pf32(m), _pf32(v), int(zero_grad))

    def sgd_step_finite(self, lr: float, momentum: float, wd: float, w: F32Array,
                        g: F32Array, buf: F32Array | None) -> int:
        """The guard's status: 0 finite, 1 a value would be non-finite, -1 bad arguments."""
        p = CSgdParams(lr, momentum, wd)
        return self.status("mcutl_sgd_step_finite_f32", ctypes.byref(p), w.size, _pf32(w),
                           _pf32(g), _pf32(buf))

    def adam_step_finite(self, lr: float, beta1: float, beta2: float, eps: float, wd: float,
                         step: int, w: F32Array, g: F32Array, m: F32Array, v: F32Array) -> int:
        p = CAdamParams(lr, beta1, beta2, eps, wd)
        return self.status("mcutl_adam_step_finite_f32", ctypes.byref(p), step, w.size,
                           _pf32(w), _pf32(g), _pf32(m), _pf32(v))

    # ----------------------------------------------------------- quantisation
    def quantize_bias(self, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
        b = np.ascontiguousarray(b, np.float32)
        sc = np.ascontiguousarray(scale, np.float32)
        out = np.zeros(b.size, np.int32)
        self.call("mcutl_quantize_bias_f32_s32", _pf32(b), b.size, _pf32(sc),
                  out.ctypes.data_as(_pi32))
        return out

    def dequantize_avg_pool(self, q: np.ndarray, ph: int, pw: int, scale: float,
                            zp: int) -> F32Array:
        n, h, w, c = q.shape
        out = np.zeros((n, h // ph, w // pw, c), np.float32)
        q = np.ascontiguousarray(q, np.int8)
        self.call("mcutl_dequantize_avg_pool_s8_f32", ctypes.byref(_dims(q.shape)), _pint8(q),
                  ph, pw, scale, zp, _pf32(out))
        return out

    def dequantize(self, q: np.ndarray, scale: float, zp: int) -> F32Array:
        out = np.empty(q.shape, np.float32)
        self.call("mcutl_dequantize_s8_f32", _pint8(q), q.size, scale, zp, _pf32(out))
        return out

    def quantize(self, x: F32Array, scale: float, zp: int) -> np.ndarray:
        out = np.empty(x.shape, np.int8)
        self.call("mcutl_quantize_f32_s8", _pf32(x), x.size, scale, zp, _pint8(out))
        return out


def load_f32_lib(cache_dir: Path, extra_flags: Sequence[str] = ()) -> F32Lib:
    return F32Lib(build_f32_lib(cache_dir, extra_flags))
