"""A fixed fuzz budget in CI (the long run: benchmarks/fuzz_device.py): the generated
training and inference firmware, built with ASan/UBSan, answer every random, mutated and
out-of-order frame (a response or an ERROR), never crash and never hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.fuzz_device import run

pytestmark = pytest.mark.host


def test_fuzzed_frames_are_all_answered_without_a_crash(tmp_path: Path) -> None:
    reports = run(tmp_path, frames=1500, seed=1)
    train, infer = reports["training"], reports["inference"]
    for rep in (train, infer):
        assert rep.crashes == 0 and rep.hangs == 0, rep.problems
        assert rep.answers["ok"] > 0 and rep.answers["BAD_PAYLOAD"] > 0
        assert rep.answers["BAD_STATE"] > 0  # out-of-order frames were sent and refused
        assert rep.answers["UNKNOWN_TYPE"] > 0
    assert train.frames >= 1500 and infer.frames >= 375
