"""Test helper: build runtime_c/src/int8/*.c into a host shared library and call the
kernels through ctypes.

The library is compiled with the project's strict flags (``-std=c99 -O2 -Wall -Wextra
-Werror -pedantic -ffp-contract=off``) plus ``-fPIC -shared`` into a directory keyed
by a hash of the sources and flags, so a session builds it once. A generated C file
exports ``sizeof``/``offsetof`` of every params struct; ``load_int8_lib`` checks them
against the ctypes mirrors below, so a header change that the mirrors miss fails
loudly instead of passing garbage.

``MCUTL_TEST_CFLAGS`` (environment) adds compile-and-link flags, e.g.
``MCUTL_TEST_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all"``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mcutl.quant.fixedpoint import (
    AddParams,
    ConvParams,
    DepthwiseConvParams,
    FullyConnectedParams,
    PoolParams,
    ReluParams,
)

REPO = Path(__file__).resolve().parents[1]
INT8_SRC = REPO / "runtime_c" / "src" / "int8"
INCLUDE = REPO / "runtime_c" / "include"

HOST_CFLAGS = [
    "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off",
]
ARM_CFLAGS = [
    "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
    "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off",
]

MCUTL_KERNEL_OK = 0
MCUTL_KERNEL_ARG_ERROR = -1

_i32 = ctypes.c_int32
_p_i32 = ctypes.POINTER(ctypes.c_int32)
_p_i8 = ctypes.POINTER(ctypes.c_int8)


class Dims(ctypes.Structure):
    _fields_ = [("n", _i32), ("h", _i32), ("w", _i32), ("c", _i32)]


class CConvParams(ctypes.Structure):
    _fields_ = [
        ("input_zero_point", _i32), ("output_zero_point", _i32),
        ("stride_h", _i32), ("stride_w", _i32), ("dilation_h", _i32), ("dilation_w", _i32),
        ("pad_top", _i32), ("pad_left", _i32), ("groups", _i32),
        ("act_min", _i32), ("act_max", _i32),
        ("output_multiplier", _p_i32), ("output_shift", _p_i32),
    ]


class CDwConvParams(ctypes.Structure):
    _fields_ = [
        ("input_zero_point", _i32), ("output_zero_point", _i32),
        ("stride_h", _i32), ("stride_w", _i32), ("dilation_h", _i32), ("dilation_w", _i32),
        ("pad_top", _i32), ("pad_left", _i32), ("depth_multiplier", _i32),
        ("act_min", _i32), ("act_max", _i32),
        ("output_multiplier", _p_i32), ("output_shift", _p_i32),
    ]


class CFcParams(ctypes.Structure):
    _fields_ = [
        ("input_zero_point", _i32), ("output_zero_point", _i32),
        ("act_min", _i32), ("act_max", _i32),
        ("output_multiplier", _p_i32), ("output_shift", _p_i32),
    ]


class CAddParams(ctypes.Structure):
    _fields_ = [
        ("input1_zero_point", _i32), ("input2_zero_point", _i32), ("output_zero_point", _i32),
        ("left_shift", _i32),
        ("input1_multiplier", _i32), ("input1_shift", _i32),
        ("input2_multiplier", _i32), ("input2_shift", _i32),
        ("output_multiplier", _i32), ("output_shift", _i32),
        ("act_min", _i32), ("act_max", _i32),
    ]


class CPoolParams(ctypes.Structure):
    _fields_ = [
        ("filter_h", _i32), ("filter_w", _i32), ("stride_h", _i32), ("stride_w", _i32),
        ("pad_top", _i32), ("pad_left", _i32), ("act_min", _i32), ("act_max", _i32),
    ]


class CReluParams(ctypes.Structure):
    _fields_ = [
        ("input_zero_point", _i32), ("output_zero_point", _i32),
        ("output_multiplier", _i32), ("output_shift", _i32),
        ("act_min", _i32), ("act_max", _i32),
    ]


# C type name -> ctypes mirror (checked against the compiler's layout)
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "mcutl_dims_t": Dims,
    "mcutl_conv_params_t": CConvParams,
    "mcutl_dw_conv_params_t": CDwConvParams,
    "mcutl_fc_params_t": CFcParams,
    "mcutl_add_params_t": CAddParams,
    "mcutl_pool_params_t": CPoolParams,
    "mcutl_relu_params_t": CReluParams,
}


def int8_sources() -> list[Path]:
    return sorted(INT8_SRC.glob("*.c"))


def _layout_source() -> str:
    lines = ["#include <stddef.h>", '#include "mcutl/int8.h"',
             "const long mcutl_test_layout[] = {"]
    for cname, cls in STRUCTS.items():
        lines.append(f"    (long)sizeof({cname}),")
        for fname, _ in cls._fields_:
            lines.append(f"    (long)offsetof({cname}, {fname}),")
    lines.append("    -1L\n};")
    return "\n".join(lines) + "\n"


# Exposes the internal static inline fixed-point helpers to the tests.
_SHIM_SOURCE = """#include <stdint.h>
#include "fixedpoint.h"
int32_t mcutl_test_requantize(int32_t x, int32_t m, int32_t s);
int32_t mcutl_test_requantize(int32_t x, int32_t m, int32_t s)
{
    return mcutl_requantize(x, m, s);
}
int32_t mcutl_test_srdhm(int32_t a, int32_t b);
int32_t mcutl_test_srdhm(int32_t a, int32_t b)
{
    return mcutl_sat_rounding_doubling_high_mul(a, b);
}
int32_t mcutl_test_rdbpot(int32_t x, int32_t e);
int32_t mcutl_test_rdbpot(int32_t x, int32_t e)
{
    return mcutl_rounding_divide_by_pot(x, e);
}
"""


def _expected_layout() -> list[int]:
    out: list[int] = []
    for cls in STRUCTS.values():
        out.append(ctypes.sizeof(cls))
        for fname, _ in cls._fields_:
            out.append(getattr(cls, fname).offset)
    return out


def compile_objects(
    compiler: str, flags: Sequence[str], out_dir: Path, sources: Sequence[Path] | None = None
) -> list[Path]:
    """Compile each source to an object file in ``out_dir`` (raises CalledProcessError
    with the compiler's message on any warning/error)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in sources if sources is not None else int8_sources():
        obj = out_dir / (src.stem + ".o")
        subprocess.run(
            [compiler, *flags, f"-I{INCLUDE}", "-c", str(src), "-o", str(obj)],
            check=True, capture_output=True, text=True,
        )
        objs.append(obj)
    return objs


def build_int8_lib(cache_dir: Path, compiler: str = "gcc") -> Path:
    """Build (or reuse) ``libmcutl_int8.so`` under ``cache_dir``; return its path."""
    if shutil.which(compiler) is None:
        raise FileNotFoundError(f"{compiler} not found")
    layout = _layout_source()
    extra = shlex.split(os.environ.get("MCUTL_TEST_CFLAGS", ""))
    h = hashlib.sha256()
    for p in [*int8_sources(), *sorted(INT8_SRC.glob("*.h")), INCLUDE / "mcutl" / "int8.h"]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join([compiler, *HOST_CFLAGS, *extra]).encode())
    h.update(layout.encode())
    h.update(_SHIM_SOURCE.encode())
    out = cache_dir / f"int8-{h.hexdigest()[:16]}"
    lib = out / "libmcutl_int8.so"
    if lib.exists():
        return lib
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "layout.c").write_text(layout)
    (tmp / "fixedpoint_shim.c").write_text(_SHIM_SOURCE)
    sources = [*int8_sources(), tmp / "layout.c", tmp / "fixedpoint_shim.c"]
    try:
        objs = compile_objects(compiler, [*HOST_CFLAGS, *extra, "-fPIC", f"-I{INT8_SRC}"], tmp,
                               sources)
        subprocess.run(
            [compiler, "-shared", *extra, "-o", str(tmp / lib.name), *map(str, objs)],
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"building the int8 kernels failed:\n{e.stderr}") from e
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return lib


def _ptr_i8(a: np.ndarray) -> Any:
    return a.ctypes.data_as(_p_i8)


def _ptr_i32(a: np.ndarray | None) -> Any:
    return None if a is None else a.ctypes.data_as(_p_i32)


def _i8(a: npt.ArrayLike) -> np.ndarray:
    arr = np.ascontiguousarray(a)
    if arr.dtype != np.int8:
        raise TypeError(f"expected int8, got {arr.dtype}")
    return arr


def _opt_i32(a: npt.ArrayLike | None) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(np.asarray(a, dtype=np.int32))


def _dims(shape: Sequence[int]) -> Dims:
    n, h, w, c = (int(s) for s in shape)
    return Dims(n, h, w, c)


def _conv_params(p: ConvParams, mult: np.ndarray, shift: np.ndarray) -> CConvParams:
    return CConvParams(p.input_zero_point, p.output_zero_point, p.stride_h, p.stride_w,
                       p.dilation_h, p.dilation_w, p.pad_top, p.pad_left, p.groups,
                       p.act_min, p.act_max, _ptr_i32(mult), _ptr_i32(shift))


class KernelError(RuntimeError):
    """A C kernel returned a status other than MCUTL_KERNEL_OK."""


class Int8Lib:
    """ctypes front-end of the C kernels with the same signatures as
    ``mcutl.quant.int8_ref`` (so tests can compare them directly)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_dw_buffer_size = -1  # what the last DSP depthwise call asked for
        self.lib = ctypes.CDLL(str(path))
        got = list((ctypes.c_long * len(_expected_layout())).in_dll(self.lib, "mcutl_test_layout"))
        if got != _expected_layout():
            raise RuntimeError(f"ctypes mirrors do not match int8.h: {got} vs {_expected_layout()}")
        L = self.lib
        pD = ctypes.POINTER(Dims)
        for name, argtypes in {
            "mcutl_conv2d_s8": [ctypes.POINTER(CConvParams), pD, _p_i8, pD, _p_i8, _p_i32, pD,
                                _p_i8],
            "mcutl_conv2d_s8_dsp": [ctypes.POINTER(CConvParams), pD, _p_i8, pD, _p_i8, _p_i32,
                                    pD, _p_i8, ctypes.c_void_p],  # scratch: an address
            "mcutl_conv2d_s8_dsp_get_buffer_size": [ctypes.POINTER(CConvParams), pD],
            "mcutl_depthwise_conv2d_s8": [ctypes.POINTER(CDwConvParams), pD, _p_i8, pD, _p_i8,
                                          _p_i32, pD, _p_i8],
            "mcutl_depthwise_conv2d_s8_dsp": [ctypes.POINTER(CDwConvParams), pD, _p_i8, pD,
                                              _p_i8, _p_i32, pD, _p_i8, ctypes.c_void_p],
            "mcutl_depthwise_conv2d_s8_dsp_get_buffer_size": [ctypes.POINTER(CDwConvParams),
                                                              pD, pD, pD],
            "mcutl_fully_connected_s8": [ctypes.POINTER(CFcParams), _i32, _i32, _p_i8, _i32,
                                         _p_i8, _p_i32, _p_i8],
            "mcutl_add_s8": [ctypes.POINTER(CAddParams), _p_i8, _p_i8, _p_i8, _i32],
            "mcutl_add_s8_dsp": [ctypes.POINTER(CAddParams), _p_i8, _p_i8, _p_i8, _i32],
            "mcutl_avg_pool_s8": [ctypes.POINTER(CPoolParams), pD, _p_i8, pD, _p_i8],
            "mcutl_max_pool_s8": [ctypes.POINTER(CPoolParams), pD, _p_i8, pD, _p_i8],
            "mcutl_global_avg_pool_s8": [pD, _p_i8, _i32, _i32, _p_i8],
            "mcutl_relu_s8": [ctypes.POINTER(CReluParams), _p_i8, _p_i8, _i32],
            "mcutl_concatenation_s8": [ctypes.POINTER(_p_i8), _p_i32, _i32, _i32, _p_i8],
            "mcutl_pad_s8": [pD, _p_i8, _i32, _i32, _i32, _i32, _i32, _p_i8],
            "mcutl_test_requantize": [_i32, _i32, _i32],
            "mcutl_test_srdhm": [_i32, _i32],
            "mcutl_test_rdbpot": [_i32, _i32],
        }.items():
            fn = getattr(L, name)
            fn.argtypes = argtypes
            fn.restype = (_i32 if name.startswith("mcutl_test_") or name.endswith("_size")
                          else ctypes.c_int)

    @staticmethod
    def _check(status: int, name: str) -> None:
        if status != MCUTL_KERNEL_OK:
            raise KernelError(f"{name} returned {status}")

    def conv2d_s8(self, p: ConvParams, x: npt.ArrayLike, f: npt.ArrayLike,
                  bias: npt.ArrayLike | None, out_hw: tuple[int, int],
                  kernels: str = "portable", scratch: bool = True,
                  scratch_offset: int = 0) -> np.ndarray:
        """``kernels="dsp"``: mcutl_conv2d_s8_dsp with a scratch buffer of the size its
        get_buffer_size partner asks, filled with garbage (nothing may read it unwritten);
        ``scratch=False`` passes NULL instead; ``scratch_offset`` moves it by that many
        bytes (a misaligned buffer)."""
        xa, fa, ba = _i8(x), _i8(f), _opt_i32(bias)
        mult = np.ascontiguousarray(p.output_multiplier, dtype=np.int32)
        shift = np.ascontiguousarray(p.output_shift, dtype=np.int32)
        cp = _conv_params(p, mult, shift)
        out = np.empty((xa.shape[0], out_hw[0], out_hw[1], fa.shape[0]), dtype=np.int8)
        args = [ctypes.byref(cp), ctypes.byref(_dims(xa.shape)), _ptr_i8(xa),
                ctypes.byref(_dims(fa.shape)), _ptr_i8(fa), _ptr_i32(ba),
                ctypes.byref(_dims(out.shape)), _ptr_i8(out)]
        if kernels == "dsp":
            size = self.lib.mcutl_conv2d_s8_dsp_get_buffer_size(ctypes.byref(cp),
                                                                 ctypes.byref(_dims(fa.shape)))
            buf = np.full((size + 3) // 4 + 2, 0x5A5A5A5A, np.int32)
            st = self.lib.mcutl_conv2d_s8_dsp(
                *args, buf.ctypes.data + scratch_offset if scratch else None)
            self._check(st, "mcutl_conv2d_s8_dsp")
        else:
            st = self.lib.mcutl_conv2d_s8(*args)
            self._check(st, "mcutl_conv2d_s8")
        return out

    def conv2d_s8_dsp_buffer_size(self, p: ConvParams, filter_shape: Sequence[int]) -> int:
        mult = np.ascontiguousarray(p.output_multiplier, dtype=np.int32)
        shift = np.ascontiguousarray(p.output_shift, dtype=np.int32)
        return int(self.lib.mcutl_conv2d_s8_dsp_get_buffer_size(
            ctypes.byref(_conv_params(p, mult, shift)), ctypes.byref(_dims(filter_shape))))

    def depthwise_conv2d_s8(self, p: DepthwiseConvParams, x: npt.ArrayLike, f: npt.ArrayLike,
                            bias: npt.ArrayLike | None, out_hw: tuple[int, int],
                            kernels: str = "portable", scratch: bool = True) -> np.ndarray:
        """``kernels="dsp"``: the DSP variant, as ``conv2d_s8``."""
        xa, fa, ba = _i8(x), _i8(f), _opt_i32(bias)
        mult = np.ascontiguousarray(p.output_multiplier, dtype=np.int32)
        shift = np.ascontiguousarray(p.output_shift, dtype=np.int32)
        cp = CDwConvParams(p.input_zero_point, p.output_zero_point, p.stride_h, p.stride_w,
                           p.dilation_h, p.dilation_w, p.pad_top, p.pad_left,
                           p.depth_multiplier, p.act_min, p.act_max,
                           _ptr_i32(mult), _ptr_i32(shift))
        out = np.empty((xa.shape[0], out_hw[0], out_hw[1], fa.shape[3]), dtype=np.int8)
        args = [ctypes.byref(cp), ctypes.byref(_dims(xa.shape)), _ptr_i8(xa),
                ctypes.byref(_dims(fa.shape)), _ptr_i8(fa), _ptr_i32(ba),
                ctypes.byref(_dims(out.shape)), _ptr_i8(out)]
        if kernels == "dsp":
            size = self.lib.mcutl_depthwise_conv2d_s8_dsp_get_buffer_size(
                ctypes.byref(cp), ctypes.byref(_dims(xa.shape)), ctypes.byref(_dims(fa.shape)),
                ctypes.byref(_dims(out.shape)))
            self.last_dw_buffer_size = int(size)
            buf = np.full((size + 3) // 4 + 1, 0x5A5A5A5A, np.int32)
            st = self.lib.mcutl_depthwise_conv2d_s8_dsp(
                *args, buf.ctypes.data_as(ctypes.c_void_p) if scratch else None)
            self._check(st, "mcutl_depthwise_conv2d_s8_dsp")
        else:
            st = self.lib.mcutl_depthwise_conv2d_s8(*args)
            self._check(st, "mcutl_depthwise_conv2d_s8")
        return out

    def fully_connected_s8(self, p: FullyConnectedParams, x: npt.ArrayLike, f: npt.ArrayLike,
                           bias: npt.ArrayLike | None) -> np.ndarray:
        xa, fa, ba = _i8(x), _i8(f), _opt_i32(bias)
        out_f, in_f = fa.shape
        mult = np.ascontiguousarray(np.broadcast_to(p.output_multiplier, (out_f,)), np.int32)
        shift = np.ascontiguousarray(np.broadcast_to(p.output_shift, (out_f,)), np.int32)
        cp = CFcParams(p.input_zero_point, p.output_zero_point, p.act_min, p.act_max,
                       _ptr_i32(mult), _ptr_i32(shift))
        batches = xa.size // in_f
        out = np.empty((batches, out_f), dtype=np.int8)
        st = self.lib.mcutl_fully_connected_s8(ctypes.byref(cp), batches, in_f, _ptr_i8(xa),
                                               out_f, _ptr_i8(fa), _ptr_i32(ba), _ptr_i8(out))
        self._check(st, "mcutl_fully_connected_s8")
        return out

    def add_s8(self, p: AddParams, a: npt.ArrayLike, b: npt.ArrayLike,
               out: np.ndarray | None = None, kernels: str = "portable") -> np.ndarray:
        """``out`` may be ``a`` or ``b`` (in place); ``kernels="dsp"``: mcutl_add_s8_dsp."""
        aa, bb = _i8(a), _i8(b)
        res = np.empty_like(aa) if out is None else out
        cp = CAddParams(p.input1_zero_point, p.input2_zero_point, p.output_zero_point,
                        p.left_shift, p.input1_multiplier, p.input1_shift, p.input2_multiplier,
                        p.input2_shift, p.output_multiplier, p.output_shift, p.act_min,
                        p.act_max)
        name = "mcutl_add_s8_dsp" if kernels == "dsp" else "mcutl_add_s8"
        st = getattr(self.lib, name)(ctypes.byref(cp), _ptr_i8(aa), _ptr_i8(bb), _ptr_i8(res),
                                     aa.size)
        self._check(st, name)
        return res

    def _pool(self, name: str, p: PoolParams, x: npt.ArrayLike,
              out_hw: tuple[int, int]) -> np.ndarray:
        xa = _i8(x)
        cp = CPoolParams(p.filter_h, p.filter_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left,
                         p.act_min, p.act_max)
        out = np.empty((xa.shape[0], out_hw[0], out_hw[1], xa.shape[3]), dtype=np.int8)
        st = getattr(self.lib, name)(ctypes.byref(cp), ctypes.byref(_dims(xa.shape)),
                                     _ptr_i8(xa), ctypes.byref(_dims(out.shape)), _ptr_i8(out))
        self._check(st, name)
        return out

    def avg_pool_s8(self, p: PoolParams, x: npt.ArrayLike, out_hw: tuple[int, int]) -> np.ndarray:
        return self._pool("mcutl_avg_pool_s8", p, x, out_hw)

    def max_pool_s8(self, p: PoolParams, x: npt.ArrayLike, out_hw: tuple[int, int]) -> np.ndarray:
        return self._pool("mcutl_max_pool_s8", p, x, out_hw)

    def global_avg_pool_s8(self, x: npt.ArrayLike, act_min: int = -128,
                           act_max: int = 127) -> np.ndarray:
        xa = _i8(x)
        out = np.empty((xa.shape[0], xa.shape[3]), dtype=np.int8)
        st = self.lib.mcutl_global_avg_pool_s8(ctypes.byref(_dims(xa.shape)), _ptr_i8(xa),
                                               act_min, act_max, _ptr_i8(out))
        self._check(st, "mcutl_global_avg_pool_s8")
        return out

    def relu_s8(self, p: ReluParams, x: npt.ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        xa = _i8(x)
        res = np.empty_like(xa) if out is None else out
        cp = CReluParams(p.input_zero_point, p.output_zero_point, p.output_multiplier,
                         p.output_shift, p.act_min, p.act_max)
        st = self.lib.mcutl_relu_s8(ctypes.byref(cp), _ptr_i8(xa), _ptr_i8(res), xa.size)
        self._check(st, "mcutl_relu_s8")
        return res

    def concatenation_s8(self, inputs: Sequence[npt.ArrayLike], axis: int = -1) -> np.ndarray:
        arrs = [_i8(a) for a in inputs]
        ref_shape = list(arrs[0].shape)
        ax = axis % len(ref_shape)
        outer = int(np.prod(ref_shape[:ax], dtype=np.int64))
        sizes = np.array([int(np.prod(a.shape[ax:], dtype=np.int64)) for a in arrs], np.int32)
        out_shape = ref_shape.copy()
        out_shape[ax] = sum(a.shape[ax] for a in arrs)
        out = np.empty(out_shape, dtype=np.int8)
        ptrs = (_p_i8 * len(arrs))(*[_ptr_i8(a) for a in arrs])
        st = self.lib.mcutl_concatenation_s8(ptrs, _ptr_i32(sizes), len(arrs), outer,
                                             _ptr_i8(out))
        self._check(st, "mcutl_concatenation_s8")
        return out

    def pad_s8(self, x: npt.ArrayLike, pad_top: int, pad_bottom: int, pad_left: int,
               pad_right: int, pad_value: int) -> np.ndarray:
        xa = _i8(x)
        n, h, w, c = xa.shape
        out = np.empty((n, h + pad_top + pad_bottom, w + pad_left + pad_right, c), np.int8)
        st = self.lib.mcutl_pad_s8(ctypes.byref(_dims(xa.shape)), _ptr_i8(xa), pad_top,
                                   pad_bottom, pad_left, pad_right, pad_value, _ptr_i8(out))
        self._check(st, "mcutl_pad_s8")
        return out


def load_int8_lib(cache_dir: Path) -> Int8Lib:
    return Int8Lib(build_int8_lib(cache_dir))
