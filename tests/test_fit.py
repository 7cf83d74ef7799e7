"""Which method and size fits: `mcutl plan` (every method and size planned with the real
step compiler, no firmware), compile's fallback to the largest size that fits, and fit
advice that lowers the peak on the model at hand. MLPerf-Tiny-style models with random
weights (examples/mlperf_tiny.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyMBV2, randomize_batchnorm_stats, spread_init
from examples.mlperf_tiny import DSCNNKWS, MobileNetV1VWW
from mcutl.cli import main
from mcutl.compile import compile_model, load_and_quantize
from mcutl.fit import choose, fit_default, parse_bytes, plan_all
from mcutl.methods import METHODS
from mcutl.methods.repnet import RepNetSpec
from mcutl.plan.budget import MemoryBudgetError
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions
from mcutl.verify.harness import verify


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _quantised(model: torch.nn.Module, shape: tuple[int, ...]):  # noqa: ANN202
    model = randomize_batchnorm_stats(spread_init(model.eval(), seed=1), seed=2).eval()
    calib = np.random.default_rng(0).random((8, *shape[1:]), dtype=np.float32)
    return model, calib, load_and_quantize(model, calib, shape)


@pytest.fixture(scope="module")
def vww():  # noqa: ANN201
    return _quantised(MobileNetV1VWW(), (1, 3, 96, 96))


def test_parse_bytes() -> None:
    assert parse_bytes("128K") == parse_bytes("128KB") == 131072
    assert parse_bytes("1M") == 1 << 20 and parse_bytes("4096") == 4096


def test_mcutl_plan_lists_every_method(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    model = randomize_batchnorm_stats(spread_init(TinyMBV2(seed=1), seed=2), seed=3).eval()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(tmp_path / "m.onnx"), dynamo=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", x=rng.random((8, 1, 28, 28), dtype=np.float32))
    assert main(["plan", str(tmp_path / "m.onnx"), "--target", "stm32f405", "--num-classes",
                 "10", "--calib", str(tmp_path / "c.npz"), "--budget", "128K",
                 "-o", str(tmp_path / "p")]) == 0
    assert "recommended:" in capsys.readouterr().out
    md = (tmp_path / "p" / "plan.md").read_text()
    for name in METHODS:
        assert f"| {name}" in md, name
    plan = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert plan["budget"] == 131072 and plan["chosen"]
    rows = [r for r in plan["rows"] if r["error"] is None]
    assert all(r["fits"] == (r["total"] <= 131072) for r in rows)
    assert all(r["arena"] >= r["lower_bound"] > 0 for r in rows)
    assert (tmp_path / "p" / "plan.png").stat().st_size > 10_000


def test_dscnn_kws_fits_with_the_defaults() -> None:
    _, _, g = _quantised(DSCNNKWS(), (1, 1, 49, 10))
    spec, notes = fit_default(g, "repnet", load_target("stm32f405"), 12, TrainOptions(), None)
    assert notes == [] and spec == RepNetSpec()


def test_vww_repnet_defaults_do_not_fit_and_compile_picks_a_size_that_does(
        vww, tmp_path: Path) -> None:  # noqa: ANN001
    """MobileNetV1-0.25 @96: the default Rep-Net needs ~1.6 MB; compile chooses the
    largest configuration that fits 128 KB, says so, and the firmware verifies."""
    model, calib, g = vww
    rows = [r for r, _ in plan_all(g, load_target("stm32f405"), 2, TrainOptions(),
                                   methods=["repnet"])]
    assert not rows[0].fits and rows[0].total > 1_000_000
    c = compile_model(model, "stm32f405", tmp_path, calib=calib, input_shape=(1, 3, 96, 96),
                      method="repnet", num_classes=2)
    assert c.notes and "chose repnet" in c.notes[0]
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["total_bytes"] <= 131072
    rep = verify(tmp_path, steps=3)
    assert rep.passed, rep.first_mismatch


def test_fit_advice_is_only_advice_that_lowers_the_peak(vww, tmp_path: Path) -> None:  # noqa: ANN001
    model, calib, _ = vww
    with pytest.raises(MemoryBudgetError) as exc:
        compile_model(model, "stm32f405", tmp_path, calib=calib, input_shape=(1, 3, 96, 96),
                      method="repnet", num_classes=2, spec=RepNetSpec(),
                      options=TrainOptions(optimizer="adam", lr=1e-3))
    msg = str(exc.value)
    need = int(re.search(r"needs (\d+) B", msg).group(1))  # type: ignore[union-attr]
    advised = re.findall(r"(--[a-z-]+ [\w.]+) \(([\d,]+) B\)", msg)
    assert advised, msg
    assert ("--optimizer sgd" in a for a, _ in advised)
    assert all(int(b.replace(",", "")) < need for _, b in advised), msg
    assert not (tmp_path / "firmware.elf").exists()  # decided before any build


def test_when_nothing_of_a_method_fits_the_error_names_what_would(vww) -> None:  # noqa: ANN001
    _, _, g = vww
    t = load_target("stm32f405")
    assert t.memory is not None
    small = dataclasses.replace(t, memory=dataclasses.replace(t.memory, sram_bytes=105_000))
    rows = [r for r, _ in plan_all(g, small, 2, TrainOptions())]
    alt = choose([r for r in rows if r.method != "repnet"])
    assert alt is not None and alt.total <= 105_000
    with pytest.raises(MemoryBudgetError, match=r"no configuration of repnet fits .* the "
                                                r"smallest tried, .* needs .* The most capable "
                                                rf"method that fits is {re.escape(alt.label)}"):
        fit_default(g, "repnet", small, 2, TrainOptions(), None)
