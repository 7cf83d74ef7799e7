"""The short soak (benchmarks/soak.py for 10,000 steps): QEMU training at 1 % byte faults
against the host build, every digest equal, the stack's high-water mark and the arena
unchanged after the warm-up, checkpoints saved without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import build, soak
from tests.conftest import needs_qemu


@needs_qemu
@pytest.mark.qemu
def test_short_soak_at_one_percent_faults(tmp_path: Path) -> None:
    rep = soak(build(tmp_path / "imu1d"), steps=100, faults=0.01, every=40)
    assert rep.passed, rep.problems
    assert [m.digest for m in rep.qemu] == [m.digest for m in rep.host]
    assert rep.faults_injected > 50 and rep.resends > 0
    assert rep.checkpoints >= 10  # the first SAVE and an autosave every 10 updates
    assert rep.qemu[0].step == 20  # the stack's reference: after every code path ran
    assert rep.qemu[0].stack_unused == rep.qemu[-1].stack_unused > 0
