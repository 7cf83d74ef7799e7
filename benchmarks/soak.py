"""Soak: a long on-device training run in QEMU over a noisy link, against the host build.

    python benchmarks/soak.py [--steps 10000] [--faults 0.01] [--every 500] [--out soak.json]

Compiles a small Rep-Net training build (TinyIMU1D, stm32f405, autosave every 10 updates;
or reuses --build DIR), streams the same samples (SAMPLE + STEP, an update every step) to
the host build and to the QEMU firmware behind a FaultProxy that damages --faults of the
bytes both ways, and every --every steps reads DIGEST and STATS from both. It passes when
every digest is equal to the host build's, the arena is the same at the end as after step
WARMUP and the stack high-water mark is too, give or take one UART interrupt (every code
path has run by then, an autosave from inside a STEP included: no leak, no growth after),
and no save failed. The interrupt is the one thing whose depth depends on timing: a byte
that arrives while the step is at its deepest adds the FPU exception frame and the
handler's own push (116 B on the F405 build) to the high-water mark; the soak reads that
bound from the firmware's ELF and tolerates it, nothing more.
Prints a table, writes JSON (--out) and soak.png (stack never used, resends and faults
over the steps) next to it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcutl.compile import BuildInfo  # noqa: E402
from mcutl.link.session import Session, open_session  # noqa: E402
from mcutl.link.trainer import TrainDevice  # noqa: E402
from mcutl.targets import load_target  # noqa: E402
from mcutl.verify.harness import random_samples  # noqa: E402

AUTOSAVE = 10  # updates between checkpoints in the soak build
WARMUP = 2 * AUTOSAVE  # steps after which every code path has run (the stack reference)


# Cortex-M exception entry with the FPU context active: r0-r3, r12, lr, pc, xPSR, s0-s15,
# FPSCR and a reserved word (26 words), plus one word to realign the stack to 8 bytes.
EXCEPTION_FRAME_FP = 26 * 4 + 4
IRQ_HANDLER = "mcutl_uart_irq_handler"


def irq_frame_bytes(elf: Path, objdump: str = "arm-none-eabi-objdump") -> int:
    """What one UART interrupt can add to the stack's high-water mark: the exception frame
    and the handler's own frame (its push and any ``sub sp``), read from the disassembly."""
    text = subprocess.run([objdump, "-d", f"--disassemble={IRQ_HANDLER}", str(elf)],
                          capture_output=True, text=True, check=True).stdout
    if f"<{IRQ_HANDLER}>:" not in text:
        raise ValueError(f"{elf}: no {IRQ_HANDLER} to bound the interrupt's stack frame")
    own = 0
    for line in text.splitlines():
        if m := re.search(r"\b(?:v?push|stmdb)(?:\.w)?\s+(?:sp!,\s*)?\{([^}]*)\}", line):
            own += 4 * sum(_count_regs(r) for r in m.group(1).split(","))
        elif m := re.search(r"\bsub(?:\.w)?\s+sp,\s*(?:sp,\s*)?#(\d+)", line):
            own += int(m.group(1))
    return EXCEPTION_FRAME_FP + own


def _count_regs(item: str) -> int:
    """``r4`` is one register, ``r4-r7`` or ``s16-s31`` a range."""
    item = item.strip()
    if "-" not in item:
        return 1
    lo, hi = (int(re.sub(r"\D", "", x)) for x in item.split("-"))
    return hi - lo + 1


@dataclass
class Mark:
    step: int
    digest: int
    stack_unused: int
    arena_bytes: int
    resends: int = 0
    faults: int = 0


def growth_problem(first: Mark, last: Mark, irq_frame: int) -> str | None:
    """What grew between the warm-up mark and the last one, if more than one interrupt."""
    grown = first.stack_unused - last.stack_unused
    if first.arena_bytes == last.arena_bytes and 0 <= grown <= irq_frame:
        return None
    return (f"stack never used {first.stack_unused} -> {last.stack_unused} B (one interrupt "
            f"may take {irq_frame} B), arena {first.arena_bytes} -> {last.arena_bytes} B")


@dataclass
class SoakReport:
    steps: int
    faults_rate: float
    host: list[Mark] = field(default_factory=list)
    qemu: list[Mark] = field(default_factory=list)
    faults_injected: int = 0
    resends: int = 0
    frames_sent: int = 0
    save_errors: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    irq_frame: int = 0  # bytes one interrupt may add to the high-water mark

    @property
    def passed(self) -> bool:
        return not self.problems


def build(folder: Path) -> Path:
    """A TinyIMU1D training build for stm32f405 in ``folder`` (compiled once)."""
    if (folder / "build.json").exists():
        return folder
    import torch

    from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
    from mcutl.compile import compile_training
    from mcutl.train.codegen import TrainOptions

    torch.set_num_threads(1)
    model = randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=1), seed=2), seed=3).eval()
    calib = np.random.default_rng(0).random((32, 6, 100), dtype=np.float32)
    compile_training(model, "stm32f405", folder, num_classes=4, calib=calib,
                     input_shape=(1, 6, 100), source_name="imu1d",
                     options=TrainOptions(lr=0.01, autosave=AUTOSAVE))
    return folder


def _stream(s: Session, xq: np.ndarray, y: np.ndarray, every: int,
            progress: Any = None) -> list[Mark]:
    dev = TrainDevice(s.device)
    dev.reset()
    marks: list[Mark] = []
    n = len(xq)
    for i in range(n):
        dev.sample(xq[i], int(y[i]))
        dev.step()
        if i == 0:
            dev.save()  # the SAVE request's path too
        if i + 1 == WARMUP or (i + 1) % every == 0 or i == n - 1:
            st = dev.stats()
            proxy = getattr(s.qemu, "proxy", None)
            marks.append(Mark(i + 1, dev.digest().crc32, st.stack_unused, st.arena_bytes,
                              s.device.stats.retries,
                              proxy.faults_injected if proxy is not None else 0))
        if progress is not None:
            progress(i + 1)
    return marks


def soak(folder: Path, steps: int, faults: float, every: int, seed: int = 0,
         progress: Any = None) -> SoakReport:
    info = BuildInfo.load(folder)
    rng = np.random.default_rng(seed)
    base_x, base_y = random_samples(info, 64, seed)
    order = rng.integers(0, 64, steps)  # a fixed pool of samples, seen many times
    xq, y = base_x[order], base_y[order]
    rep = SoakReport(steps=steps, faults_rate=faults)
    with open_session(load_target("host"), folder / info.firmware["host"]) as s:
        rep.host = _stream(s, xq, y, every)
        s.finish(0)
    (folder / "mcutl.store").unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open_session(load_target(info.target), folder / info.firmware["qemu"], qemu=True,
                      link_faults=faults) as s:
        rep.qemu = _stream(s, xq, y, every, progress)
        st = TrainDevice(s.device).stats()
        rep.save_errors, rep.checkpoints = st.save_errors, st.checkpoint_seq
        link = s.device.stats
        rep.resends, rep.frames_sent = link.retries, link.frames_out
        proxy = getattr(s.qemu, "proxy", None)
        rep.faults_injected = proxy.faults_injected if proxy is not None else 0
        s.finish(0)
    rep.seconds = time.perf_counter() - t0
    for h, q in zip(rep.host, rep.qemu, strict=True):
        if h.digest != q.digest:
            rep.problems.append(f"step {q.step}: digest 0x{q.digest:08x} in QEMU, "
                                f"0x{h.digest:08x} on the host")
            break
    first, last = rep.qemu[0], rep.qemu[-1]
    rep.irq_frame = irq_frame_bytes(folder / BuildInfo.load(folder).firmware["qemu"])
    if problem := growth_problem(first, last, rep.irq_frame):
        rep.problems.append(problem)
    if rep.save_errors:
        rep.problems.append(f"{rep.save_errors} checkpoint saves failed")
    return rep


def plot(rep: SoakReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m.step for m in rep.qemu]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    a.plot(steps, [m.stack_unused for m in rep.qemu], marker=".")
    a.set_ylabel("stack never used (B)")
    a.set_title(f"soak: {rep.steps} steps in QEMU at {100 * rep.faults_rate:g} % byte faults")
    b.plot(steps, [m.resends for m in rep.qemu], label="resends")
    b.plot(steps, [m.faults for m in rep.qemu], label="faults injected")
    b.set_xlabel("training step")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--faults", type=float, default=0.01)
    ap.add_argument("--every", type=int, default=500, help="steps between DIGEST/STATS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", type=Path, help="training build folder (compiled if missing)")
    ap.add_argument("--out", type=Path, default=Path("soak.json"))
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(args.build or Path(tmp) / "imu1d")
        with Progress(console=console) as bar:
            task = bar.add_task("QEMU steps", total=args.steps)
            rep = soak(folder, args.steps, args.faults, args.every, args.seed,
                       lambda k: bar.update(task, completed=k))
    first, last = rep.qemu[0], rep.qemu[-1]
    console.print(
        f"{rep.steps} steps in QEMU at {100 * rep.faults_rate:g} % byte faults: "
        f"{rep.faults_injected} faults injected, {rep.resends} resends of {rep.frames_sent} "
        f"frames; stack never used {first.stack_unused} B after step {first.step} and "
        f"{last.stack_unused} B after step {last.step}; arena {last.arena_bytes} B; "
        f"{rep.checkpoints} checkpoints, {rep.save_errors} failed saves; final digest "
        f"0x{last.digest:08x} (host 0x{rep.host[-1].digest:08x}); {rep.seconds:.0f} s; "
        + ("PASSED" if rep.passed else "FAILED: " + "; ".join(rep.problems)),
        highlight=False)
    args.out.write_text(json.dumps({**asdict(rep), "passed": rep.passed}, indent=1))
    plot(rep, args.out.with_suffix(".png"))
    sys.exit(0 if rep.passed else 1)


if __name__ == "__main__":
    main()
