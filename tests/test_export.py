"""`mcutl export BUILD --lib DIR`: the learner as a C library for the user's own firmware.
The example learns with the C API alone; the library builds for a Cortex-M7; and it is the
learner of the build, bit for bit: the same samples give the host firmware's loss bits,
parameters (DIGEST) and logits."""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import compile_training
from mcutl.export import export_library
from mcutl.link.session import open_session
from mcutl.link.trainer import TrainDevice
from mcutl.run import prepare_inputs
from mcutl.targets import load_target
from mcutl.toolchain import render_target_files
from mcutl.train.codegen import TrainOptions
from mcutl.verify.harness import load_trainable
from tests.conftest import HAVE_ARM, needs_arm

pytestmark = pytest.mark.host

STRICT = ["-Wall", "-Wextra", "-Werror", "-std=c99", "-ffp-contract=off", "-O2"]
ARM = "stm32f746"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    out = tmp_path_factory.mktemp("build")
    # the example trains in mini-batches of 4 whose gradients are averaged: lr 0.04 moves
    # as far per sample as 0.01 on the sum did
    compile_training(model, "host", out, num_classes=3, calib=calib, input_shape=(1, 6, 100),
                     options=TrainOptions(lr=0.04))
    return out


@pytest.fixture(scope="module")
def lib(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "lib"
    res = export_library(build, out, ["host", ARM] if HAVE_ARM else ["host"])
    assert {x.target for x in res.libraries} == ({"host", ARM} if HAVE_ARM else {"host"})
    return out


def _plan(build: Path) -> dict[str, Any]:
    return json.loads((build / "plan.json").read_text())


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _num(pattern: str, out: str) -> float:
    m = re.search(pattern, out)
    assert m is not None, f"{pattern!r} not in:\n{out}"
    return float(m[1])


def _learned(out: str) -> None:
    """The example's output: accuracy up, the mean loss of the last samples well below the
    first's."""
    before = _num(r"accuracy before: (\d+) %", out)
    after = _num(r"accuracy after: (\d+) %", out)
    first = _num(r"loss ([\d.]+) ->", out)
    last = _num(r"-> ([\d.]+);", out)
    assert after > before and after >= 90, out
    assert last < 0.5 * first, out


def test_export_writes_sources_headers_example_readme(build: Path, lib: Path) -> None:
    for f in ["README.md", "Makefile", "example/main.c", "include/mcutl/train.h",
              "src/model/train.c", "src/model/model_weights.c", "src/model/model_weights.h",
              "src/int8/conv2d.c", "src/int8/fixedpoint.h", "src/f32/optim.c",
              "src/proto/frame.c", "src/proto/crc32.c", "src/lib/mcutl_lib_board.c",
              "lib/host/libmcutl.a"]:
        assert (lib / f).is_file(), f
    assert not (lib / "src/proto/server.c").exists()  # no serial server in the library
    readme = (lib / "README.md").read_text()
    for needle in ["-ffp-contract=off", "-fno-strict-aliasing", "-std=c99", "mcutl_train_reset",
                   "-I{DIR}/include", "weak", f"{_plan(build)['peak_bytes']} B arena"]:
        assert needle in readme, needle


def test_example_learns_with_the_c_api_on_host(lib: Path, tmp_path: Path) -> None:
    exe = tmp_path / "example"
    _run(["gcc", *STRICT, f"-I{lib / 'include'}", str(lib / "example/main.c"),
          str(lib / "lib/host/libmcutl.a"), "-o", str(exe)])
    _learned(_run([str(exe)]).stdout)


def test_makefile_builds_the_library_and_example_from_sources(lib: Path) -> None:
    _run(["make", "-s", "-j2", "-C", str(lib), "example", "CFLAGS=-Werror"])
    _learned(_run([str(lib / "build/example")]).stdout)


@needs_arm
@pytest.mark.qemu
def test_library_and_example_build_for_stm32f746(build: Path, lib: Path, tmp_path: Path) -> None:
    """Compiled for the Cortex-M7 and linked into a bare-metal image with the target's
    memory map: every symbol resolves and the learner fits its SRAM and flash."""
    target = load_target(ARM)
    archive = lib / "lib" / ARM / "libmcutl.a"
    attrs = _run(["arm-none-eabi-readelf", "-A", str(archive)]).stdout
    assert "Tag_CPU_name: \"7E-M\"" in attrs or "Cortex-M7" in attrs, attrs[:400]
    render_target_files(target, tmp_path, "export-test", semihosting=False)
    elf = tmp_path / "example.elf"
    # main is the entry (the user's startup code would call it): the gc root, so the
    # image holds everything the example reaches in the library. The example's printf
    # needs newlib's heap start `end`, which a firmware's own linker script defines
    # (mcutl's has no heap).
    _run(["arm-none-eabi-gcc", *STRICT, *target.cflags, f"-I{lib / 'include'}",
          str(lib / "example/main.c"), str(archive), f"-T{tmp_path / 'linker.ld'}",
          "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
          "-Wl,-e,main", "-Wl,--defsym=end=_ebss", "-o", str(elf)])
    sizes = _run(["arm-none-eabi-size", "-A", str(elf)]).stdout
    sec = {p[0]: int(p[1]) for p in map(str.split, sizes.splitlines())
           if len(p) >= 2 and p[0].startswith(".") and p[1].isdigit()}
    plan = _plan(build)
    # the arena, parameters, gradients and momentum are all there
    assert sec[".bss"] >= plan["peak_bytes"] + 3 * 4 * plan["param_count"]
    assert sec[".text"] > 10_000
    # the README gives the C API's worst-case stack from GCC's call graph for the M7
    stack = re.search(r"on stm32f746, .*`mcutl_train_step\(\)` (\d+) B",
                      (lib / "README.md").read_text())
    assert stack is not None and 64 <= int(stack[1]) <= 4096
    syms = _run(["arm-none-eabi-nm", str(elf)]).stdout
    for fn in ["mcutl_train_step", "mcutl_infer", "mcutl_sgd_step_f32"]:
        assert f" {fn}\n" in syms, fn


CHECK_C = r"""
#include <stdio.h>
#include <string.h>
#include "mcutl/app.h"
#include "mcutl/proto.h"
#include "mcutl/train.h"

static uint32_t bits(float v) { uint32_t b; memcpy(&b, &v, 4); return b; }

int main(int argc, char **argv)
{
    uint32_t n, batch, outcome, i, k;
    int32_t label;
    float loss, logits[NUM_CLASSES];
    uint8_t data[64];
    mcutl_buf_t resp;
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (f == NULL || fread(&n, 4, 1, f) != 1 || fread(&batch, 4, 1, f) != 1) return 2;
    mcutl_train_reset();
    for (i = 0; i < n; i++) {
        if (fread(&label, 4, 1, f) != 1 ||
            fread(mcutl_train_input(), 1, mcutl_train_input_bytes(), f) !=
                mcutl_train_input_bytes()) return 3;
        mcutl_train_set_label(label);
        if (mcutl_train_step(&loss, (i + 1u) % batch == 0u, &outcome) != 0) return 4;
        printf("step %08x %u\n", (unsigned)bits(loss), (unsigned)outcome);
    }
    if (mcutl_infer(logits) != 0) return 5;
    for (k = 0; k < NUM_CLASSES; k++) printf("logit %08x\n", (unsigned)bits(logits[k]));
    /* the parameters' CRC-32, from the library's own DIGEST handler */
    mcutl_buf_init(&resp, data, sizeof data);
    for (k = 0; k < mcutl_app.n_handlers; k++) {
        if (mcutl_app.handlers[k].type == MCUTL_MSG_DIGEST &&
            mcutl_app.handlers[k].fn(NULL, NULL, 0, &resp) != MCUTL_OK) return 6;
    }
    for (k = 0; k < resp.len; k += 4) {
        printf("digest %u\n", (unsigned)(data[k] | data[k + 1] << 8 | data[k + 2] << 16 |
                                        (uint32_t)data[k + 3] << 24));
    }
    return 0;
}
"""


def test_library_trains_bit_identically_to_the_host_firmware(build: Path, lib: Path,
                                                            tmp_path: Path) -> None:
    info, tm = load_trainable(build)
    rng = np.random.default_rng(3)
    n, batch = 24, 4
    y = rng.integers(0, 3, n)
    x = 0.3 * rng.standard_normal((n, 6, 100)).astype(np.float32)
    x[np.arange(n), y] += 1.5 * np.sin(np.linspace(0, 4 * np.pi, 100, dtype=np.float32))
    xq = prepare_inputs(info, x)
    blob = struct.pack("<II", n, batch) + b"".join(
        struct.pack("<i", int(label)) + xi.tobytes() for label, xi in zip(y, xq, strict=True))
    (tmp_path / "samples.bin").write_bytes(blob)
    (tmp_path / "check.c").write_text(CHECK_C)
    exe = tmp_path / "check"
    _run(["gcc", *STRICT, f"-DNUM_CLASSES={tm.num_classes}", f"-I{lib / 'include'}",
          str(tmp_path / "check.c"), str(lib / "lib/host/libmcutl.a"), "-o", str(exe)])
    out = _run([str(exe), str(tmp_path / "samples.bin")]).stdout.split("\n")
    lib_steps = [(int(s.split()[1], 16), int(s.split()[2])) for s in out if s.startswith("step")]
    lib_logits = [int(s.split()[1], 16) for s in out if s.startswith("logit")]
    lib_digest = tuple(int(s.split()[1]) for s in out if s.startswith("digest"))

    with open_session(load_target("host"), build / info.firmware["host"]) as s:
        dev = TrainDevice(s.device)
        dev.reset()
        fw_steps = []
        for i, (xi, label) in enumerate(zip(xq, y, strict=True)):
            dev.sample(xi, int(label))
            r = dev.step(update=(i + 1) % batch == 0)
            fw_steps.append((r.loss_bits, r.outcome))
        fw_logits = dev.infer(tm.num_classes).view(np.uint32).tolist()
        d = dev.digest()
        s.finish(0)

    assert lib_steps == fw_steps
    assert sum(o & 1 for _, o in lib_steps) == n // batch  # every update applied
    assert lib_logits == fw_logits
    assert lib_digest == (d.crc32, d.param_bytes, d.steps, d.updates)
    assert d.updates == n // batch and d.steps == n


def test_export_refuses_bad_input(build: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    infer_only = tmp_path / "infer"
    infer_only.mkdir()
    (infer_only / "build.json").write_text((build / "build.json").read_text()
                                           .replace('"method": "repnet"', '"method": "none"'))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "missing"), "--lib", str(tmp_path / "o1")], "no such build folder"),
        ([str(infer_only), "--lib", str(tmp_path / "o2")], "inference-only build"),
        ([str(build), "--lib", str(a_file)], "existing file"),
        ([str(tmp_path), "--lib", str(tmp_path / "o3")], "not an mcutl build folder"),
        ([str(build), "--lib", str(tmp_path / "o4"), "--target", "nope"], "unknown target"),
    ]
    for argv, msg in cases:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err
    assert not (tmp_path / "o4").exists()  # nothing written before the checks pass
