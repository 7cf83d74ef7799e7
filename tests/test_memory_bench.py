"""benchmarks/memory.py on the two example models (--quick): inference arena against its
lower bound and TFLite Micro's, every training method's step, the fits flags against the
byte totals, the JSON and the plot; a method that cannot be planned is a result, not a
crash."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from benchmarks import memory
from mcutl.compile import load_and_quantize
from mcutl.fit import PlanRow
from mcutl.methods import METHODS
from tests.conftest import needs_arm

pytestmark = [
    pytest.mark.host, pytest.mark.tflite, needs_arm,
    pytest.mark.skipif(importlib.util.find_spec("tflite_micro") is None,
                       reason="tflite-micro not installed (TFLite Micro's arena)"),
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("memory") / "m" / "memory.json"
    cap = Console(width=200, record=True)
    assert memory.main(["--quick", "--out", str(out)], cap) == 0
    return json.loads(out.read_text()), out, cap.export_text()


def _check_fits(row: dict[str, Any], sizes: dict[str, int]) -> None:
    assert set(row["fits"]) == set(sizes) == {"128 KB", "320 KB"}
    for label, size in sizes.items():
        assert row["fits"][label] == (row["total_sram_bytes"] <= size), (label, row)


def test_json_has_every_model_and_method(quick: tuple[dict[str, Any], Path, str]) -> None:
    doc, out, text = quick
    assert doc["sram_sizes"] == {"128 KB": 131072, "320 KB": 327680}
    assert [r["key"] for r in doc["models"]] == memory.QUICK == ["tiny_mbv2", "tiny_imu1d"]
    assert sorted(doc["methods"]) == sorted(METHODS)
    for r in doc["models"]:
        assert [t["method"] for t in r["training"]] == doc["methods"]
        assert r["seconds"] > 0 and r["model"] in text
    assert (out.parent / "memory.png").stat().st_size > 10_000
    assert "Inference SRAM" in text and "Training step SRAM" in text


def test_inference_rows(quick: tuple[dict[str, Any], Path, str]) -> None:
    doc, _, _ = quick
    for r in doc["models"]:
        i = r["inference"]
        assert i["planned_for"] == "stm32f405" and i["budget_errors"] == {}
        # the schedule the build used, as its report says: layer by layer or row-streamed
        segments = (i["schedule_detail"] or {}).get("segments", [])
        if segments:
            extra = sum(s["extra_macs"] for s in segments)
            assert i["schedule"].startswith(f"row-streamed x{len(segments)} ")
            assert extra <= 0.1 * (i["macs"] - extra)  # auto: at most 10 % recomputed
        else:
            assert i["schedule"] == memory.DEFAULT_SCHEDULE
        assert 0 < i["lower_bound_bytes"] <= i["arena_bytes"]
        assert i["arena_over_bound"] == round(i["arena_bytes"] / i["lower_bound_bytes"], 4)
        assert i["tflm_arena_bytes"] and i["arena_bytes"] <= i["tflm_arena_bytes"]
        assert i["arena_over_tflm"] == round(i["arena_bytes"] / i["tflm_arena_bytes"], 4)
        assert i["total_sram_bytes"] == (i["arena_bytes"] + i["runtime_bytes"]
                                         + i["stack_bytes"])
        assert i["stack_bytes"] == doc["stack_bytes"] == 8192
        _check_fits(i, doc["sram_sizes"])
        # the firmware's static RAM (arena + the runtime's own data) is what the plan says
        assert i["firmware_static_ram"] >= i["arena_bytes"]


def test_training_rows(quick: tuple[dict[str, Any], Path, str]) -> None:
    doc, _, _ = quick
    for r in doc["models"]:
        for t in r["training"]:
            assert t["error"] is None, (r["model"], t)
            assert 0 < t["lower_bound_bytes"] <= t["arena_bytes"]
            assert t["arena_over_bound"] == round(t["arena_bytes"] / t["lower_bound_bytes"], 4)
            # parameters, gradients and SGD momentum: 12 B a parameter, and the runtime
            assert t["static_bytes"] >= 12 * t["params"] > 0
            assert t["total_sram_bytes"] == (t["arena_bytes"] + t["static_bytes"]
                                             + t["stack_bytes"])
            _check_fits(t, doc["sram_sizes"])


def test_schedule_comes_from_the_report() -> None:
    assert memory._schedule({}) == "layer-by-layer"
    assert memory._schedule({"schedule": {"kind": "layer-by-layer"}}) == "layer-by-layer"
    rep = {"total_macs": 1100, "schedule": {"kind": "row-streamed", "segments": [
        {"extra_macs": 60}, {"extra_macs": 40}]}}
    assert memory._schedule(rep) == "row-streamed x2 (+10.0 % MAC)"


def test_a_method_that_cannot_be_planned_is_reported(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    case = memory.MODELS["tiny_imu1d"]
    calib = np.random.default_rng(0).random((8, *case.input_shape[1:]), dtype=np.float32)
    graph = load_and_quantize(case.make().eval(), calib, case.input_shape)
    real = memory.plan_config

    def broken(graph: Any, method: str, *args: Any) -> tuple[PlanRow, None]:
        if method == "bias":
            raise RuntimeError("no bias here")
        if method == "last":
            return PlanRow(method, {}, error="cannot cut"), None
        return real(graph, method, *args)  # type: ignore[return-value]

    monkeypatch.setattr(memory, "plan_config", broken)
    rows = [memory.training(graph, case, m) for m in memory.methods()]
    by = {t["method"]: t for t in rows}
    assert by["bias"]["error"] == "RuntimeError: no bias here"
    assert by["last"]["error"] == "cannot cut"
    assert by["repnet"]["error"] is None and by["repnet"]["total_sram_bytes"] > 0
    doc = {"target": "stm32f405", "sram_sizes": memory.sram_sizes(), "stack_bytes": 8192,
           "methods": memory.methods(), "seconds": 1.0,
           "models": [{"model": case.title, "seconds": 1.0, "training": rows,
                       "inference": {"schedule": "layer-by-layer", "arena_bytes": 1,
                                     "lower_bound_bytes": 1, "arena_over_bound": 1.0,
                                     "tflm_arena_bytes": None, "arena_over_tflm": None,
                                     "runtime_bytes": 0, "total_sram_bytes": 1,
                                     "fits": {"128 KB": True, "320 KB": True},
                                     "planned_for": "stm32f405", "seconds": 1.0}}]}
    con = Console(width=200, record=True)
    memory.print_tables(doc, con)
    text = con.export_text()
    assert "—[1]" in text and "—[2]" in text
    assert "no bias here" in text and "cannot cut" in text
    memory.plot(doc, tmp_path / "memory.png")  # no bar, a cross, for what cannot be built
    assert (tmp_path / "memory.png").stat().st_size > 10_000
