"""Compile and link C for a target: arm-none-eabi-gcc for Cortex-M, gcc for `host`.

Everything a build needs that depends on the target (linker script, target_config.h)
is rendered from `targets/<name>/target.toml` into the build folder, so the C
sources stay target independent.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from mcutl import __version__
from mcutl.errors import BuildError, ToolMissingError
from mcutl.paths import RUNTIME_C, TEMPLATES_DIR
from mcutl.targets import Target

#: Flags every build gets: C99, all warnings fatal, no contraction of a*b+c into an FMA
#: (host and device must round the same way), deterministic output.
COMMON_CFLAGS = (
    "-std=c99",
    "-O2",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffp-contract=off",
    "-fno-common",
    "-fno-strict-aliasing",  # float views into the int8 arena
    "-fno-math-errno",
    "-ffunction-sections",
    "-fdata-sections",
)
CORTEXM_CFLAGS = ("-fno-tree-loop-distribute-patterns",)
CORTEXM_LDFLAGS = (
    "-nostartfiles",
    "--specs=nano.specs",
    "--specs=nosys.specs",
    "-Wl,--gc-sections",
)
PORT_DIR = RUNTIME_C / "port"
INCLUDE_DIR = RUNTIME_C / "include"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class SizeReport:
    """Section sizes of an ELF, from `size -A`, split by where they live."""

    text: int  # code + read-only data + vector table (flash)
    data: int  # initialised data (flash copy + RAM)
    bss: int  # zero-initialised RAM
    stack: int  # reserved stack region (RAM)
    flash_capacity: int
    sram_capacity: int

    @property
    def flash_used(self) -> int:
        return self.text + self.data

    @property
    def static_ram(self) -> int:
        return self.data + self.bss

    def to_dict(self) -> dict[str, int]:
        return {
            "text": self.text,
            "data": self.data,
            "bss": self.bss,
            "stack": self.stack,
            "flash_used": self.flash_used,
            "flash_capacity": self.flash_capacity,
            "static_ram": self.static_ram,
            "sram_capacity": self.sram_capacity,
        }


@dataclass
class FirmwareSpec:
    """What to build: sources and settings beyond the target's own port."""

    name: str
    sources: list[Path]
    include_dirs: list[Path] = field(default_factory=list)
    defines: dict[str, str] = field(default_factory=dict)
    semihosting: bool = True
    sanitize: bool = False  # host only: -fsanitize=address,undefined
    store: bool = False  # link a checkpoint store backend (store_source)


@dataclass(frozen=True)
class Firmware:
    target: Target
    elf: Path
    build_id: str
    size: SizeReport | None


def compiler_for(target: Target) -> str:
    return "gcc" if target.is_host else "arm-none-eabi-gcc"


def require_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        hint = {
            "arm-none-eabi-gcc": "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi",
            "arm-none-eabi-size": "apt-get install binutils-arm-none-eabi",
            "gcc": "apt-get install gcc",
            "qemu-system-arm": "apt-get install qemu-system-arm",
        }.get(tool, f"install {tool}")
        raise ToolMissingError(f"'{tool}' not found on PATH. Install it with: {hint}")
    return path


def store_source(target: Target, semihosting: bool) -> Path:
    """The checkpoint store backend (mcutl/store.h) of a firmware: a file on the host, a
    file through semihosting under QEMU, the target's [store] driver on a board."""
    if target.is_host:
        return PORT_DIR / "store_file_host.c"
    if semihosting:
        return PORT_DIR / "store_semihost.c"
    if target.store is None:
        return PORT_DIR / "store_none.c"
    driver = PORT_DIR / f"store_{target.store.driver}.c"
    if not driver.is_file():
        known = sorted(p.stem.removeprefix("store_") for p in PORT_DIR.glob("store_*.c"))
        raise BuildError(f"target {target.name}: store driver '{target.store.driver}' does not "
                         f"exist (no {driver}). Known drivers: {', '.join(known)}")
    return driver


def port_sources(target: Target) -> list[Path]:
    """The board support C files of a target: startup + UART driver, or the host board."""
    if target.is_host:
        return [PORT_DIR / "board_host.c", *target.extra_sources]
    assert target.uart is not None
    driver = PORT_DIR / f"uart_{target.uart.driver}.c"
    if not driver.is_file():
        known = sorted(p.stem.removeprefix("uart_") for p in PORT_DIR.glob("uart_*.c"))
        raise BuildError(
            f"target {target.name}: UART driver '{target.uart.driver}' does not exist "
            f"(no {driver}). Known drivers: {', '.join(known)}"
        )
    return [PORT_DIR / "startup_cortexm.c", driver, *target.extra_sources]


def _uart_divisor(target: Target) -> int:
    assert target.uart is not None
    return max(16, round(target.reset_clock_hz / target.uart.baud))


def render_target_files(target: Target, out_dir: Path, build_id: str, semihosting: bool) -> None:
    """Write target_config.h (and the linker script for Cortex-M) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = {
        "name": target.name,
        "build_id": build_id,
        "semihosting": semihosting,
        "uart": target.uart,
        "irq_count": target.irq_count,
        "uart_brr": _uart_divisor(target) if target.uart else 0,
        "mem": target.memory,
        # a board keeps code out of its store's flash sectors
        "store": None if semihosting else target.store,
        "code_flash_bytes": _code_flash_bytes(target, semihosting),
    }
    (out_dir / "target_config.h").write_text(_env.get_template("target_config.h.j2").render(ctx))
    if not target.is_host:
        (out_dir / "linker.ld").write_text(_env.get_template("cortexm.ld.j2").render(ctx))


def _code_flash_bytes(target: Target, semihosting: bool) -> int:
    """Flash the linker may fill: up to the first store slot on a board with a store."""
    if target.memory is None:
        return 0
    if semihosting or target.store is None:
        return target.memory.flash_bytes
    return min(a for a, _ in target.store.slots) - target.memory.flash_origin


def _build_id(
    target: Target, spec: FirmwareSpec, files: Sequence[Path], flags: Sequence[str]
) -> str:
    h = hashlib.sha256()
    h.update(f"mcutl {__version__}\0{target.name}\0{spec.name}\0".encode())
    h.update("\0".join(flags).encode())
    for f in sorted(files):
        h.update(str(f.name).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


_OVERFLOW_RE = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def _explain_link_failure(target: Target, stderr: str) -> str | None:
    hits = _OVERFLOW_RE.findall(stderr)
    if not hits or target.memory is None:
        return None
    mem = target.memory
    lines = []
    for region, over in hits:
        over_b = int(over)
        if region == "RAM":
            lines.append(
                f"firmware does not fit the SRAM of {target.name}: static data + "
                f"{mem.stack_bytes} B reserved stack exceed {mem.sram_bytes} B by {over_b} B. "
                "Shrink the model or the arena (e.g. a smaller side network), lower "
                "stack_bytes in target.toml if the measured stack allows, or pick a "
                "target with more SRAM (`mcutl targets`)."
            )
        else:
            lines.append(
                f"firmware does not fit the flash of {target.name}: it exceeds "
                f"{mem.flash_bytes} B by {over_b} B. Use a smaller backbone or a target "
                "with more flash (`mcutl targets`)."
            )
    return "\n".join(lines)


#: Runtime sources that depend on nothing of a build (no target_config.h, no generated
#: header): compiled once per compiler, flags and content, and reused by every build.
SHARED_RUNTIME_DIRS = tuple(RUNTIME_C / "src" / d for d in ("int8", "f32", "proto", "store"))


def _shared_runtime(path: Path) -> bool:
    return any(path.parent == d for d in SHARED_RUNTIME_DIRS)


def object_cache_dir() -> Path:
    """Where compiled runtime objects are kept: $MCUTL_CACHE_DIR, else ~/.cache/mcutl."""
    root = os.environ.get("MCUTL_CACHE_DIR") or str(Path.home() / ".cache" / "mcutl")
    return Path(root) / "obj"


_compiler_ids: dict[str, str] = {}


def _compiler_id(cc: str) -> str:
    """The compiler's path and version (a new compiler compiles everything again)."""
    if cc not in _compiler_ids:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
        _compiler_ids[cc] = f"{Path(cc).resolve()}\0{out}"
    return _compiler_ids[cc]


def _runtime_headers_digest() -> bytes:
    h = hashlib.sha256()
    for p in sorted([*INCLUDE_DIR.rglob("*.h"), *(RUNTIME_C / "src").rglob("*.h")]):
        h.update(str(p.relative_to(RUNTIME_C)).encode() + b"\0" + p.read_bytes())
    return h.digest()


def compile_shared(cc: str, flags: Sequence[str], sources: Sequence[Path]) -> list[Path]:
    """Objects of shared runtime sources, from the cache or compiled into it (in parallel);
    keyed by the compiler, the flags, the source and every runtime header."""
    if not sources:
        return []
    cache = object_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    base = hashlib.sha256()
    base.update(_compiler_id(cc).encode() + b"\0" + "\0".join(flags).encode())
    base.update(_runtime_headers_digest())
    wanted: list[tuple[Path, Path]] = []
    for src in sources:
        h = base.copy()
        h.update(str(src.relative_to(RUNTIME_C)).encode() + b"\0" + src.read_bytes())
        wanted.append((src, cache / f"{src.stem}-{h.hexdigest()[:24]}.o"))

    def compile_one(src: Path, obj: Path) -> None:
        tmp = obj.with_name(f"{obj.name}.{os.getpid()}.{id(src)}.tmp")
        cmd = [cc, *flags, f"-I{INCLUDE_DIR}", "-c", str(src), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"compiling {src.name} failed\n--- {Path(cc).name} said:\n"
                             f"{proc.stderr.strip()[-4000:]}")
        os.replace(tmp, obj)  # atomic: a concurrent build sees the whole object or none

    missing = [(s, o) for s, o in wanted if not o.exists()]
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            for f in [pool.submit(compile_one, s, o) for s, o in missing]:
                f.result()
    return [o for _, o in wanted]


def build_firmware(target: Target, spec: FirmwareSpec, out_dir: Path) -> Firmware:
    """Compile and link spec for target into out_dir/<spec.name>(.elf); cached by build id."""
    cc = require_tool(compiler_for(target))
    out_dir.mkdir(parents=True, exist_ok=True)
    gen_dir = out_dir / f"{spec.name}.gen"
    sources = [*spec.sources, *port_sources(target)]
    if spec.store:
        sources.append(store_source(target, spec.semihosting))
    includes = [gen_dir, INCLUDE_DIR, PORT_DIR, *spec.include_dirs]
    flags = [*COMMON_CFLAGS, *target.cflags]
    if target.is_host:
        if spec.sanitize:
            flags += ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    else:
        flags += list(CORTEXM_CFLAGS)
    flags += [f"-D{k}={v}" for k, v in sorted(spec.defines.items())]
    headers = [
        p
        for d in includes
        if d.is_dir() and d != gen_dir
        for p in d.rglob("*.h")
        if not any(part.endswith(".gen") for part in p.parts)
    ]
    build_id = _build_id(target, spec, [*sources, *headers], flags + [str(spec.semihosting)])
    elf = out_dir / (spec.name if target.is_host else f"{spec.name}.elf")
    stamp = out_dir / f"{spec.name}.buildid"
    if not (elf.exists() and stamp.exists() and stamp.read_text() == build_id):
        render_target_files(target, gen_dir, build_id, spec.semihosting)
        shared = [p for p in sources if _shared_runtime(p)]
        objects = compile_shared(cc, flags, shared)
        own = [p for p in sources if not _shared_runtime(p)]
        cmd = [cc, *flags, *(f"-I{d}" for d in includes), *map(str, own),
               *map(str, objects), "-o", str(elf)]
        if not target.is_host:
            cmd += [f"-T{gen_dir / 'linker.ld'}", *CORTEXM_LDFLAGS]
            cmd += [f"-Wl,-Map={out_dir / (spec.name + '.map')}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            stamp.unlink(missing_ok=True)
            explained = _explain_link_failure(target, proc.stderr)
            detail = proc.stderr.strip()[-4000:]
            head = explained or f"building {spec.name} for {target.name} failed"
            raise BuildError(f"{head}\n--- {Path(cc).name} said:\n{detail}")
        stamp.write_text(build_id)
    size = None if target.is_host else size_report(target, elf)
    return Firmware(target=target, elf=elf, build_id=build_id, size=size)


def build_many(jobs: dict[str, tuple[Target, FirmwareSpec, Path]]) -> dict[str, Firmware]:
    """Several builds at once (one compiler process per core); same results as one by one."""
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {k: pool.submit(build_firmware, *job) for k, job in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def size_report(target: Target, elf: Path) -> SizeReport:
    """Per-region sizes of a Cortex-M ELF, from `arm-none-eabi-size -A`."""
    tool = require_tool("arm-none-eabi-size")
    out = subprocess.run([tool, "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    assert target.memory is not None
    flash_sections = (".isr_vector", ".text", ".ARM.exidx", ".rodata")
    return SizeReport(
        text=sum(sections.get(s, 0) for s in flash_sections),
        data=sections.get(".data", 0),
        bss=sections.get(".bss", 0),
        stack=sections.get(".stack", 0),
        flash_capacity=target.memory.flash_bytes,
        sram_capacity=target.memory.sram_bytes,
    )
