"""The short soak (benchmarks/soak.py for 10,000 steps): QEMU training at 1 % byte faults
against the host build, every digest equal, the stack's high-water mark and the arena
unchanged after the first step, checkpoints saved without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import build, soak
from tests.conftest import needs_qemu


@needs_qemu
@pytest.mark.qemu
def test_short_soak_at_one_percent_faults(tmp_path: Path) -> None:
    rep = soak(build(tmp_path / "imu1d"), steps=120, faults=0.01, every=40)
    assert rep.passed, rep.problems
    assert [m.digest for m in rep.qemu] == [m.digest for m in rep.host]
    assert rep.faults_injected > 50 and rep.resends > 0
    assert rep.checkpoints >= 2  # the first SAVE and the autosave at update 100
    assert rep.qemu[0].stack_unused == rep.qemu[-1].stack_unused > 0
