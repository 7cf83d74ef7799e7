"""The short soak (benchmarks/soak.py for 10,000 steps): QEMU training at 1 % byte faults
against the host build, every digest equal, the stack's high-water mark and the arena
unchanged after the warm-up, checkpoints saved without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import EXCEPTION_FRAME_FP, Mark, build, growth_problem, irq_frame_bytes, soak
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
    # the high-water mark may move by one UART interrupt arriving at the deepest point
    # (FPU exception frame + the handler's push: 116 B), and by nothing more
    assert rep.irq_frame == 26 * 4 + 4 + 8
    assert 0 <= rep.qemu[0].stack_unused - rep.qemu[-1].stack_unused <= rep.irq_frame
    assert rep.qemu[-1].stack_unused > 0


def test_stack_growth_beyond_one_interrupt_is_a_problem() -> None:
    first = Mark(20, 1, stack_unused=104500, arena_bytes=14264)
    assert growth_problem(first, Mark(100, 2, 104500, 14264), 116) is None
    assert growth_problem(first, Mark(100, 2, 104384, 14264), 116) is None  # seen on CI
    assert "104383" in (growth_problem(first, Mark(100, 2, 104383, 14264), 116) or "")
    assert "arena 14264 -> 14272" in (growth_problem(first, Mark(100, 2, 104500, 14272), 116)
                                      or "")


@needs_qemu
def test_irq_frame_is_read_from_the_handler(tmp_path: Path) -> None:
    elf = build(tmp_path / "imu1d") / "firmware-qemu.elf"
    assert irq_frame_bytes(elf) == EXCEPTION_FRAME_FP + 8  # push {r4, r5}
