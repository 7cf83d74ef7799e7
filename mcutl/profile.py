"""`mcutl profile BUILD --qemu`: where a training step's time goes, per kernel call.

The build's profile variant (BUILD/profile/train.c, written by compile: the same code,
plus a tick read after every kernel call and around the optimizer, and a PROFILE request)
is built for QEMU and run under `-icount shift=0`, where one guest instruction takes 1 ns of virtual
time: instructions = ticks x 1e9 / clock_hz. A few training steps (SAMPLE + STEP with an
update) on random int8 samples are averaged. The step's time at the target's clock
assumes one instruction per cycle (a Cortex-M4 runs this code at roughly 1-1.3 cycles per
instruction: flash wait states, load-use stalls).
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mcutl.compile import BuildInfo, firmware_spec
from mcutl.errors import McutlError
from mcutl.link import protocol as proto
from mcutl.link.session import open_session
from mcutl.link.trainer import TrainDevice
from mcutl.run import check_model
from mcutl.targets import load_target
from mcutl.toolchain import build_firmware


@dataclass
class ProfileRow:
    index: int  # kernel call index in the step (the optimizer: after the last call)
    phase: str  # "forward" | "backward" | "update"
    what: str  # the call's comment in the generated C
    macs: int
    instructions: float  # per step

    @property
    def per_mac(self) -> float | None:
        return self.instructions / self.macs if self.macs else None


@dataclass
class ProfileReport:
    build: str
    target: str
    clock_hz: int
    steps: int
    rows: list[ProfileRow] = field(default_factory=list)

    def total(self, phase: str | None = None) -> float:
        return sum(r.instructions for r in self.rows if phase in (None, r.phase))

    def macs(self, phase: str | None = None) -> int:
        return sum(r.macs for r in self.rows if phase in (None, r.phase))

    def to_json(self) -> str:
        d = asdict(self)
        d["totals"] = {p: {"instructions": self.total(p), "macs": self.macs(p)}
                       for p in ("forward", "backward", "update")}
        d["step_instructions"] = self.total()
        d["step_ms_at_clock"] = 1e3 * self.total() / self.clock_hz if self.clock_hz else None
        return json.dumps(d, indent=1)


def profile_firmware(build: Path) -> tuple[Path, list[tuple[str, str, int]]]:
    """The build's profile variant (BUILD/profile/train.c, written by compile: the same C
    with timing marks) built for QEMU; the (phase, comment, MACs) of each entry."""
    info = BuildInfo.load(build)
    target = load_target(info.target)
    if not target.has_qemu:
        raise McutlError(f"mcutl profile runs the build in QEMU, and {target.name} has no QEMU "
                         "model: compile the model for stm32f405 or mps2_an386 to profile it")
    folder = build / "profile"
    if not (folder / "train.c").is_file() or not (folder / "calls.json").is_file():
        raise McutlError(f"{build} has no profile variant (compiled by an older mcutl): "
                         "compile it again")
    spec = firmware_spec(build, "firmware-profile", True, True)
    spec.sources = [folder / "train.c" if p == build / "train.c" else p for p in spec.sources]
    fw = build_firmware(target, spec, folder)
    entries = [(e["phase"], e["what"], int(e["macs"]))
               for e in json.loads((folder / "calls.json").read_text())]
    return fw.elf, entries


def profile(build: Path, steps: int = 4, seed: int = 0) -> ProfileReport:
    from mcutl.verify.harness import random_samples

    info = BuildInfo.load(build)
    if info.method == "none":
        raise McutlError(f"{build} is an inference build: mcutl profile times training "
                         "steps (compile with --method); `benchmarks/backbone_cost.py` "
                         "measures inference")
    elf, entries = profile_firmware(build)
    target = load_target(info.target)
    xq, y = random_samples(info, steps, seed)
    with open_session(target, elf, qemu=True, icount=True, timeout=60.0) as s:
        check_model(info, s.hello)
        dev = TrainDevice(s.device)
        dev.reset()
        for x, label in zip(xq, y, strict=True):
            dev.sample(x, int(label))
            dev.step(update=True)
        ticks, done = _read(dev, len(entries))
        s.finish(0)
    if done != steps:
        raise McutlError(f"the profile firmware counted {done} steps, {steps} were sent")
    scale = 1e9 / target.clock_hz / steps
    rows = [ProfileRow(k, phase, what, macs, t * scale)
            for k, ((phase, what, macs), t) in enumerate(zip(entries, ticks, strict=True))]
    return ProfileReport(str(build), target.name, target.clock_hz, steps, rows)


def _read(dev: TrainDevice, n: int) -> tuple[list[int], int]:
    """PROFILE, chunked: the ticks of every entry and the steps they sum."""
    ticks: list[int] = []
    steps = 0
    while len(ticks) < n:
        resp = dev.device.request(proto.MsgType.PROFILE, struct.pack("<I", len(ticks)))
        entries, steps = struct.unpack_from("<II", resp)
        if entries != n:
            raise McutlError(f"the profile firmware has {entries} entries, expected {n}")
        got = struct.unpack_from(f"<{(len(resp) - 8) // 4}I", resp, 8)
        if not got:
            raise McutlError("PROFILE answered no entries")
        ticks += got
    return ticks[:n], steps
