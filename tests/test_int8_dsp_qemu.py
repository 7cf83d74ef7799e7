"""Both int8 kernel sets in QEMU (mps2_an386, a Cortex-M4 with the DSP extension): the
portable kernels and the DSP variants, compiled for the device (SXTB16/SMLAD/SMMULR),
run the same convolution and add cases (odd channel and pixel counts, channel counts that are
not a multiple of four, strides, padding, dilation, depth multipliers, left and right
shifts, exact rounding ties, a layer the DSP kernel hands back to the portable one) and
must equal the numpy model of TFLite's reference kernels (mcutl.quant.int8_ref) bit for
bit. runtime_c/tests/fw_int8_kernels.c reads the cases and writes the outputs through
semihosting."""

from __future__ import annotations

import math
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mcutl.link.qemu import qemu_command
from mcutl.quant import fixedpoint as fp
from mcutl.quant import int8_ref as ref
from mcutl.targets import load_target
from mcutl.tflite.builder import explicit_output_size
from mcutl.toolchain import FirmwareSpec, build_firmware
from tests.conftest import needs_qemu

pytestmark = [pytest.mark.qemu, needs_qemu]
RUNTIME = Path(__file__).resolve().parent.parent / "runtime_c"
KERNEL_SETS = ("portable", "dsp")


@dataclass
class AddCase:
    params: fp.AddParams
    a: np.ndarray
    b: np.ndarray

    def expected(self) -> np.ndarray:
        return ref.add_s8(self.params, self.a, self.b)


def _add_case(rng: np.random.Generator, size: int, out_spread: float) -> AddCase:
    s1, s2 = (float(np.float32(10 ** rng.uniform(-3, 0))) for _ in range(2))
    zp1, zp2, zp_out = (int(v) for v in rng.integers(-128, 128, 3))
    act = str(rng.choice(["NONE", "RELU", "RELU6"]))
    p = fp.add_params(s1, zp1, s2, zp2, float(np.float32(max(s1, s2) * out_spread)), zp_out,
                      act)
    a, b = (rng.integers(-128, 128, size).astype(np.int8) for _ in range(2))
    return AddCase(p, a, b)


@dataclass
class Case:
    op: str  # "conv" | "dw"
    params: fp.ConvParams | fp.DepthwiseConvParams
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    out_hw: tuple[int, int]

    def expected(self) -> np.ndarray:
        if self.op == "conv":
            assert isinstance(self.params, fp.ConvParams)
            return ref.conv2d_s8(self.params, self.x, self.w, self.bias, self.out_hw)
        assert isinstance(self.params, fp.DepthwiseConvParams)
        return ref.depthwise_conv2d_s8(self.params, self.x, self.w, self.bias, self.out_hw)

    def out_shape(self) -> tuple[int, int, int, int]:
        c_out = self.w.shape[0] if self.op == "conv" else self.w.shape[3]
        return (self.x.shape[0], *self.out_hw, c_out)


def _case(rng: np.random.Generator, op: str, c_in: int, c_out: int, k: tuple[int, int],
          hw: tuple[int, int], stride: tuple[int, int] = (1, 1),
          dil: tuple[int, int] = (1, 1), pad: tuple[int, int] | None = None,
          groups: int = 1, spread: float = 1.0, pow2: bool = False, bias_scale: float = 1.0,
          n: int = 1, act: str | None = None) -> Case:
    pad = pad if pad is not None else (k[0] // 2, k[1] // 2)
    out_hw = tuple(explicit_output_size(hw[i], k[i], stride[i], pad[i],
                                        max(0, (k[i] - 1) * dil[i] + 1 - hw[i] - pad[i]) +
                                        pad[i], dil[i]) for i in range(2))
    taps = k[0] * k[1] * (c_in // groups if op == "conv" else 1)
    s_in = float(np.float32(10 ** rng.uniform(-3, 0)))
    s_w = (10 ** rng.uniform(-4, -1) * 10 ** rng.uniform(-0.5, 0.5, c_out)).astype(np.float32)
    s_out = float(np.float32(s_in * float(np.median(s_w)) * 190 * math.sqrt(taps) * spread))
    if pow2:
        s_in = float(2.0 ** round(math.log2(s_in)))
        s_w = (2.0 ** np.round(np.log2(s_w.astype(np.float64)))).astype(np.float32)
        s_out = float(2.0 ** round(math.log2(s_out)))
    zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
    act = str(rng.choice(["NONE", "RELU", "RELU6"])) if act is None else act
    x = rng.integers(-128, 128, (n, *hw, c_in)).astype(np.int8)
    bias = (rng.normal(0, 5400 * math.sqrt(taps) * bias_scale, c_out).round()
            .clip(-2**31, 2**31 - 1).astype(np.int32))
    common = dict(stride=stride, dilation=dil, pad=pad, activation=act)
    if op == "conv":
        p: fp.ConvParams | fp.DepthwiseConvParams = fp.conv_params(
            s_in, zp_in, s_w, s_out, zp_out, c_out, groups=groups, **common)
        w = rng.integers(-127, 128, (c_out, *k, c_in // groups)).astype(np.int8)
    else:
        p = fp.depthwise_conv_params(s_in, zp_in, s_w, s_out, zp_out, c_out,
                                     depth_multiplier=c_out // c_in, **common)
        w = rng.integers(-127, 128, (1, *k, c_out)).astype(np.int8)
    return Case(op, p, x, w, bias, out_hw)  # type: ignore[arg-type]


def cases() -> list[Case | AddCase]:
    rng = np.random.default_rng(12)
    out: list[Case | AddCase] = []
    # the conv kernel's blocking: channel pairs, pixel pairs, groups of four taps
    for c_in in (1, 2, 3, 4, 5, 8, 12, 16, 17, 32):
        for c_out in (1, 2, 3, 7, 8, 16):
            for k in ((1, 1), (3, 3), (1, 5)):
                hw = (int(rng.integers(1, 7)), int(rng.integers(1, 8)))
                out.append(_case(rng, "conv", c_in, c_out, k, hw))
    # strides, dilation, asymmetric kernels, padding, batches, shifts, ties
    out += [
        _case(rng, "conv", 8, 6, (3, 3), (9, 8), stride=(2, 2)),
        _case(rng, "conv", 5, 4, (3, 3), (9, 7), stride=(2, 1), dil=(2, 2)),
        _case(rng, "conv", 16, 5, (10, 4), (13, 6), stride=(2, 2), pad=(4, 1)),
        _case(rng, "conv", 4, 9, (1, 1), (5, 5), n=2),
        _case(rng, "conv", 12, 8, (3, 3), (6, 6), spread=0.001),  # multipliers > 1
        _case(rng, "conv", 16, 8, (1, 1), (6, 6), pow2=True),  # exact ties
        _case(rng, "conv", 6, 6, (3, 3), (5, 5), groups=3),  # grouped: the portable kernel
        _case(rng, "conv", 8, 4, (3, 3), (5, 5), bias_scale=1e5),  # huge bias: portable
    ]
    # depthwise: channel counts around the 4-wide loops, multipliers, strides
    for c_in in (1, 2, 3, 4, 5, 7, 8, 12, 16, 33):
        for k in ((3, 3), (1, 5)):
            hw = (int(rng.integers(1, 8)), int(rng.integers(1, 9)))
            out.append(_case(rng, "dw", c_in, c_in, k, hw))
    out += [
        _case(rng, "dw", 8, 8, (3, 3), (9, 9), stride=(2, 2)),
        _case(rng, "dw", 6, 6, (3, 3), (9, 8), dil=(2, 1)),
        _case(rng, "dw", 3, 6, (3, 3), (5, 5)),  # depth multiplier 2
        _case(rng, "dw", 16, 16, (3, 3), (7, 7), pow2=True),
        _case(rng, "dw", 16, 16, (5, 5), (6, 6), spread=0.001),
    ]
    # the DSP kernels' fast output stage (no activation clamp: SMMLAR + SSAT) on the shapes
    # of the example models: 1 x 1 of 16/64 taps, stems, depthwise rows of 4 .. 7 outputs
    # at stride 1 and 2, the 1 x 5 depthwise at stride 2
    out += [
        _case(rng, "conv", 16, 32, (1, 1), (5, 6), act="NONE"),
        _case(rng, "conv", 64, 8, (1, 1), (5, 5), act="NONE"),
        _case(rng, "conv", 24, 10, (1, 1), (3, 3), act="NONE"),
        _case(rng, "conv", 1, 16, (3, 3), (9, 9), stride=(2, 2), act="NONE"),
        _case(rng, "conv", 1, 8, (10, 4), (15, 10), stride=(2, 2), pad=(4, 1), act="NONE"),
        _case(rng, "conv", 6, 6, (1, 5), (1, 20), act="NONE"),
        _case(rng, "dw", 8, 8, (3, 3), (6, 7), act="NONE"),
        _case(rng, "dw", 12, 12, (3, 3), (5, 5), act="NONE"),
        _case(rng, "dw", 8, 8, (3, 3), (9, 14), stride=(2, 2), act="NONE"),
        _case(rng, "dw", 16, 16, (3, 3), (7, 7), stride=(2, 2), act="NONE"),
        _case(rng, "dw", 8, 8, (1, 5), (1, 20), stride=(1, 2), act="NONE"),
    ]
    # add: odd sizes, output scales from far below to far above the inputs'
    out += [_add_case(rng, size, spread) for size in (1, 7, 64, 301)
            for spread in (0.05, 0.7, 3.0, 40.0)]
    return out


def _pack(case_list: list[Case | AddCase]) -> bytes:
    parts = [struct.pack("<i", 2 * len(case_list))]
    for c in case_list:
        if isinstance(c, AddCase):
            q = c.params
            for kernels in range(2):
                head = [3, kernels, q.input1_zero_point, q.input2_zero_point,
                        q.output_zero_point, q.left_shift, q.input1_multiplier, q.input1_shift,
                        q.input2_multiplier, q.input2_shift, q.output_multiplier,
                        q.output_shift, q.act_min, q.act_max, c.a.size]
                parts.append(np.asarray(head, "<i4").tobytes())
                for arr in (c.a, c.b):
                    raw = arr.tobytes()
                    parts.append(raw + b"\0" * (-len(raw) % 4))
            continue
        p = c.params
        extra = p.groups if isinstance(p, fp.ConvParams) else p.depth_multiplier
        for kernels in range(2):
            head = [1 if c.op == "conv" else 2, kernels, p.input_zero_point,
                    p.output_zero_point, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w,
                    p.pad_top, p.pad_left, extra, p.act_min, p.act_max, c.bias is not None,
                    *c.x.shape, *c.w.shape, *c.out_shape()]
            parts.append(np.asarray(head, "<i4").tobytes())
            parts.append(np.asarray(p.output_multiplier, "<i4").tobytes())
            parts.append(np.asarray(p.output_shift, "<i4").tobytes())
            if c.bias is not None:
                parts.append(np.asarray(c.bias, "<i4").tobytes())
            for a in (c.x, c.w):
                raw = a.tobytes()
                parts.append(raw + b"\0" * (-len(raw) % 4))
    return b"".join(parts)


@pytest.fixture(scope="module")
def firmware(build_root: Path) -> Path:
    target = load_target("mps2_an386")
    spec = FirmwareSpec(name="int8_kernels",
                        sources=[RUNTIME / "tests" / "fw_int8_kernels.c",
                                 *sorted((RUNTIME / "src" / "int8").glob("*.c"))],
                        include_dirs=[RUNTIME / "port"])
    return build_firmware(target, spec, build_root / "int8_kernels").elf


def test_both_kernel_sets_are_bit_exact_in_qemu(firmware: Path, tmp_path: Path) -> None:
    target = load_target("mps2_an386")
    case_list = cases()
    (tmp_path / "kernel_cases.bin").write_bytes(_pack(case_list))
    cmd = qemu_command(target, firmware, "null")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    data = (tmp_path / "kernel_out.bin").read_bytes()
    pos = 0
    for i, c in enumerate(case_list):
        want = c.expected()
        for kernels in KERNEL_SETS:
            (status,) = struct.unpack_from("<i", data, pos)
            pos += 4
            n = want.size
            got = np.frombuffer(data, np.int8, n, pos).reshape(want.shape)
            pos += n + (-n % 4)
            what = "add" if isinstance(c, AddCase) else f"{c.op} {c.x.shape} * {c.w.shape}"
            assert status == 0, f"case {i} ({what}, {kernels}): status {status}"
            np.testing.assert_array_equal(got, want, err_msg=f"case {i} ({what}, {kernels})")
    assert pos == len(data)
