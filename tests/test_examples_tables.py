"""The accuracy-table examples run end to end (a --quick smoke run: one k, one seed, 400
samples per run): they compile, train on the device (host build) and as the PyTorch fp32
twin, and write results.md / results.json / results.png."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parent.parent


def test_imu_example_quick(tmp_path: Path) -> None:
    out = tmp_path / "imu"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "imu_personalization" / "run.py"), "--quick",
         "--methods", "last,repnet", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (res,) = json.loads((out / "results.json").read_text())
    assert set(res["builds"]) == {"last", "repnet"}
    for b in res["builds"].values():  # the plan's SRAM and flash of a stm32f405 build
        assert b["target"] == "stm32f405" and 0 < b["sram"] <= 131072 and b["flash"] > 0
    runs = res["runs"]
    assert [(r["method"], r["k"], r["seed"]) for r in runs] == [("last", 1, 0), ("repnet", 1, 0)]
    for r in runs:
        assert not r["diverged"]
        # 4 new classes from one recording each: above chance on the device, and the
        # device and its fp32 twin trained alike (40 test recordings: 2.5 points each)
        assert r["device_after"] > r["device_before"] and r["device_after"] >= 0.5
        assert abs(r["device_after"] - r["twin_after"]) <= 0.1, r
    md = (out / "results.md").read_text()
    assert "| Rep-Net (repnet) |" in md and "| head only (last) |" in md
    assert "| no adaptation |" in md
    assert (out / "results.png").stat().st_size > 10_000
    assert np.isfinite([r["twin_after"] for r in runs]).all()
