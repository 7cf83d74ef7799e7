"""`mcutl profile BUILD --qemu`: instructions per kernel call of a training step (QEMU
-icount), from the build's profile variant; the calls add up to the step that the plain
firmware measures, and the variant leaves the build's own C unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.cli import main
from mcutl.compile import BuildInfo, compile_training
from mcutl.link.session import open_session
from mcutl.link.trainer import TrainDevice
from mcutl.profile import profile
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.verify.harness import random_samples
from tests.conftest import needs_qemu

pytestmark = [needs_qemu, pytest.mark.qemu]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()
    calib = np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)
    out = tmp_path_factory.mktemp("profile")
    compile_training(model, "stm32f405", out, num_classes=3, calib=calib,
                     input_shape=(1, 6, 100), options=TrainOptions(lr=0.01, autosave=0))
    return out


def test_calls_add_up_to_the_measured_step(build: Path) -> None:
    rep = profile(build, steps=3)
    calls = json.loads((build / "profile" / "calls.json").read_text())
    assert len(rep.rows) == len(calls) and rep.rows[-1].phase == "update"
    assert all(r.instructions > 0 for r in rep.rows if r.macs)
    assert {r.phase for r in rep.rows} == {"forward", "backward", "update"}
    # the plain firmware times whole steps the same way (SysTick under -icount)
    info = BuildInfo.load(build)
    target = load_target(info.target)
    xq, y = random_samples(info, 3, 0)
    with open_session(target, build / info.firmware["qemu"], qemu=True, icount=True) as s:
        dev = TrainDevice(s.device)
        dev.reset()
        ticks = []
        for x, label in zip(xq, y, strict=True):
            dev.sample(x, int(label))
            ticks.append(dev.step(update=True).ticks)
        s.finish(0)
    step = float(np.mean(ticks)) * 1e9 / target.clock_hz
    assert abs(rep.total() - step) <= 0.03 * step, (rep.total(), step)
    # the convolutions cost at least the SMLAD limit (two MACs per instruction) and at
    # most a few dozen instructions per MAC
    conv = [r for r in rep.rows if r.macs >= 10_000]
    assert conv and all(0.5 < (r.per_mac or 0) < 60.0 for r in conv)


def test_cli_profile_writes_json(build: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(build), "--qemu", "--steps", "2",
                 "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "ms at 168 MHz" in out and "forward" in out and "backward" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["step_instructions"] == pytest.approx(
        sum(r["instructions"] for r in data["rows"]))
    assert data["totals"]["update"]["instructions"] > 0


def test_the_build_s_own_c_has_no_marks(build: Path) -> None:
    assert "profile_mark" not in (build / "train.c").read_text()
    assert "profile_mark" in (build / "profile" / "train.c").read_text()
