"""Targets are data: `targets/<name>/target.toml`. Adding a board adds a folder."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mcutl.errors import TargetError
from mcutl.paths import TARGETS_DIR


@dataclass(frozen=True)
class Memory:
    flash_origin: int
    flash_bytes: int
    sram_origin: int
    sram_bytes: int
    stack_bytes: int


@dataclass(frozen=True)
class Uart:
    driver: str
    base: int
    irq: int
    baud: int = 115200
    rcc_enable_reg: int = 0
    rcc_enable_bit: int = 0
    # Pins routed to the UART: (gpio_base, pin, alternate function).
    pins: tuple[tuple[int, int, int], ...] = ()
    gpio_rcc_reg: int = 0
    gpio_rcc_bits: int = 0


@dataclass(frozen=True)
class Store:
    """`[store]`: where a board keeps its two checkpoint slots (mcutl/store.h)."""

    driver: str  # runtime_c/port/store_<driver>.c
    slot_bytes: int
    slots: tuple[tuple[int, int], ...]  # (address, flash sector) of slot 0 and slot 1
    flash_dcache: bool = False


#: The int8 kernel sets a target can select with `kernels = "..."` in its target.toml:
#: "portable" (runtime_c/src/int8/*.c, the reference, any C99 compiler) or "dsp" (the
#: *_dsp.c variants for Cortex-M4/M7 with the DSP extension, where one exists).
KERNEL_SETS = ("portable", "dsp")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    kind: str  # "cortex-m" | "host"
    folder: Path
    cflags: tuple[str, ...] = ()
    cpu: str = ""
    irq_count: int = 0
    clock_hz: int = 0
    reset_clock_hz: int = 16_000_000
    memory: Memory | None = None
    uart: Uart | None = None
    qemu_machine: str | None = None
    pyocd_target: str | None = None  # `[flash] pyocd_target`: pyOCD target type for `mcutl flash`
    extra_sources: tuple[Path, ...] = field(default_factory=tuple)
    store: Store | None = None  # a board's checkpoint store; None: the board has none
    kernels: str = "portable"  # the int8 kernel set (KERNEL_SETS)

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def has_qemu(self) -> bool:
        return self.qemu_machine is not None


def _require(table: dict, key: str, where: str) -> object:
    if key not in table:
        raise TargetError(f"{where}: missing key '{key}'")
    return table[key]


def load_target(name: str, targets_dir: Path = TARGETS_DIR) -> Target:
    """Load `targets/<name>/target.toml`; raises TargetError naming the known targets."""
    folder = targets_dir / name
    path = folder / "target.toml"
    if not path.is_file():
        known = ", ".join(list_target_names(targets_dir)) or "(none)"
        raise TargetError(
            f"unknown target '{name}': no {path}. Known targets: {known}. "
            f"To add a board, create {folder}/target.toml."
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: invalid TOML: {exc}") from exc
    where = str(path)
    kind = str(_require(data, "kind", where))
    if kind not in ("cortex-m", "host"):
        raise TargetError(f"{where}: kind must be 'cortex-m' or 'host', not '{kind}'")
    memory = uart = None
    if kind == "cortex-m":
        mem = _require(data, "memory", where)
        assert isinstance(mem, dict)
        memory = Memory(**{k: int(mem[k]) for k in Memory.__dataclass_fields__ if k in mem})
        u = dict(_require(data, "uart", where))  # type: ignore[arg-type]
        u["pins"] = tuple(tuple(int(x) for x in p) for p in u.get("pins", ()))
        uart = Uart(**u)
        for key in ("cpu", "irq_count"):
            _require(data, key, where)
    kernels = str(data.get("kernels", "portable"))
    if kernels not in KERNEL_SETS:
        raise TargetError(f"{where}: kernels must be one of {', '.join(KERNEL_SETS)}, "
                          f"not '{kernels}'")
    qemu = data.get("qemu", {})
    flash = data.get("flash", {})
    store = None
    if "store" in data:
        st = data["store"]
        slots = tuple((int(a), int(sec)) for a, sec in st.get("slots", ()))
        if len(slots) != 2:
            raise TargetError(f"{where}: [store] slots must list two [address, sector] pairs")
        store = Store(driver=str(_require(st, "driver", where)),
                      slot_bytes=int(_require(st, "slot_bytes", where)  # type: ignore[arg-type]
                                     ), slots=slots,
                      flash_dcache=bool(st.get("flash_dcache", False)))
    return Target(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        kind=kind,
        folder=folder,
        cflags=tuple(data.get("cflags", ())),
        cpu=str(data.get("cpu", "")),
        irq_count=int(data.get("irq_count", 0)),
        clock_hz=int(data.get("clock_hz", 0)),
        reset_clock_hz=int(data.get("reset_clock_hz", 16_000_000)),
        memory=memory,
        uart=uart,
        qemu_machine=qemu.get("machine"),
        pyocd_target=str(flash["pyocd_target"]) if "pyocd_target" in flash else None,
        extra_sources=tuple(folder / s for s in data.get("sources", ())),
        store=store,
        kernels=kernels,
    )


def list_target_names(targets_dir: Path = TARGETS_DIR) -> list[str]:
    return sorted(p.parent.name for p in targets_dir.glob("*/target.toml"))


def list_targets(targets_dir: Path = TARGETS_DIR) -> list[Target]:
    return [load_target(n, targets_dir) for n in list_target_names(targets_dir)]
