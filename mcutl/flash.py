"""`mcutl flash`: write a build folder's `firmware.elf` to a real board through pyOCD.

pyOCD is driven through its command line (no `import pyocd`), so mcutl and its CI do not need it:

    pyocd flash --no-wait --target stm32f405rgtx --uid stlink: --erase sector --format elf \\
        /abs/build/firmware.elf

- The target type comes from `[flash] pyocd_target` in targets/<target>/target.toml. STM32F405
  and STM32F746 are not built into pyOCD: they come from CMSIS-Packs, installed once with
  `pyocd pack install <pyocd_target>`.
- The probe type is selected by pyOCD's unique-ID syntax `<plugin>:<uid>` (`--uid`, alias
  `--probe`): the plugin is `stlink` or `cmsisdap`, and the uid part is a full or partial
  (substring) match; empty matches every probe of that type. Since a uid is always given, pyOCD
  never prompts for a probe on stdin; if several match it exits and lists them.
- `--no-wait` makes pyOCD fail at once when no probe is connected instead of waiting forever.
- After programming, pyOCD resets the target, so the new firmware runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcutl.errors import McutlError, TargetError, ToolMissingError
from mcutl.targets import Target, load_target

# mcutl's probe names -> pyOCD probe plugin names (entry points in pyOCD's `pyocd.probe` group).
PROBES: dict[str, str] = {"stlink": "stlink", "cmsis-dap": "cmsisdap"}
PROBE_LABELS: dict[str, str] = {"stlink": "ST-Link", "cmsis-dap": "CMSIS-DAP"}

DEFAULT_TIMEOUT = 300.0  # seconds: a full 1 MB image at a slow SWD clock takes about a minute
FIRMWARE_ELF = "firmware.elf"
_EM_ARM = 40
_TAIL_LINES = 15
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class FlashError(McutlError):
    """Flashing failed; the message says why and what to do."""


class PyocdNotFoundError(FlashError, ToolMissingError):
    """The pyocd command line tool is not installed."""


class BuildFolderError(FlashError):
    """The build folder lacks build.json or firmware.elf, or they are not a board build."""


class TargetMismatchError(FlashError):
    """The build was compiled for another target than the one asked for."""


class NotFlashableError(FlashError, TargetError):
    """The target has no pyOCD target type (host build, or QEMU-only board)."""


class ProbeNotFoundError(FlashError):
    """No debug probe of the requested type (and uid) is connected."""


class AmbiguousProbeError(FlashError):
    """Several probes match; the user has to pick one with --uid."""


class PyocdTargetMissingError(FlashError):
    """pyOCD does not know the target type: its CMSIS-Pack is not installed."""


class PyocdFailedError(FlashError):
    """pyocd exited non-zero for another reason; the message has its output's tail."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class FlashTimeoutError(FlashError):
    """pyocd did not finish in time."""


@dataclass(frozen=True)
class FlashPlan:
    """What will be flashed: the checked build folder and the target's pyOCD type."""

    build: Path
    target: Target
    pyocd_target: str
    elf: Path


@dataclass(frozen=True)
class FlashResult:
    command: list[str]
    target: str  # mcutl target name
    pyocd_target: str
    probe: str  # 'stlink' | 'cmsis-dap'
    elf: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class ProbeInfo:
    """One connected probe as pyOCD reports it (`pyocd json --probes`)."""

    unique_id: str
    description: str  # board name if pyOCD knows the board, else vendor + product
    vendor_name: str
    product_name: str
    board_name: str
    target: str  # pyOCD's default target type for it ("cortex_m" if unknown)
    kind: str | None  # 'stlink' | 'cmsis-dap' | None (other, e.g. J-Link)


# ---------------------------------------------------------------------------------------------
# checks and command construction (pure: no subprocess)


def _probe_plugin(probe: str) -> str:
    if probe not in PROBES:
        raise FlashError(f"unknown probe '{probe}': choose one of {', '.join(PROBES)}")
    return PROBES[probe]


def probe_selector(probe: str, uid: str | None = None) -> str:
    """pyOCD's `--uid` value: `<plugin>:<uid or empty>` (empty = any probe of that type)."""
    plugin = _probe_plugin(probe)
    uid = (uid or "").strip()
    if ":" in uid:
        prefix, rest = uid.split(":", 1)
        if prefix.lower() != plugin:
            raise FlashError(
                f"--uid {uid} names a '{prefix}' probe but --probe is {probe}: give only the "
                f"probe's unique ID (see `pyocd list`), or use the matching --probe"
            )
        uid = rest
    return f"{plugin}:{uid}"


def parse_frequency(text: str) -> int:
    """SWD clock: '4000000', '4m', '500k', '1.8MHz' -> Hz (an argparse `type=`)."""
    value = text.strip().lower().removesuffix("hz")
    scale = {"k": 1_000, "m": 1_000_000}.get(value[-1:], 1)
    try:
        hz = int(float(value[:-1] if scale != 1 else value) * scale)
    except ValueError:
        raise FlashError(f"--frequency {text!r}: give Hz like 4000000, 4m or 500k") from None
    if hz <= 0:
        raise FlashError(f"--frequency {text!r}: must be positive")
    return hz


def _is_arm_elf(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(20)
    return (
        len(head) == 20
        and head[:4] == b"\x7fELF"
        and head[4] == 1  # ELFCLASS32
        and int.from_bytes(head[18:20], "little" if head[5] == 1 else "big") == _EM_ARM
    )


def check_build(build: Path, target: str | None = None) -> FlashPlan:
    """Validate a build folder for flashing; raises a FlashError subclass saying what to do."""
    build = Path(build)
    rebuild = f"`mcutl compile MODEL --target T -o {build}`"
    if not build.is_dir():
        raise BuildFolderError(f"build folder {build} does not exist; create it with {rebuild}")
    info_path = build / "build.json"
    if not info_path.is_file():
        raise BuildFolderError(
            f"{build} is not an mcutl build folder (no build.json); create it with {rebuild}"
        )
    try:
        info = json.loads(info_path.read_text())
        built_for = str(info["target"])
        firmware = dict(info.get("firmware", {}))
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{info_path} is unreadable ({exc}); rebuild with {rebuild}"
        raise BuildFolderError(msg) from exc
    if target is not None and target != built_for:
        raise TargetMismatchError(
            f"{build} was built for {built_for}, not {target}: flash a build for {target} "
            f"(`mcutl compile MODEL --target {target} -o DIR`), or drop --target to flash "
            f"this one to a {built_for}"
        )
    tgt = load_target(built_for)
    if tgt.is_host:
        raise NotFlashableError(
            f"{build} is a host build (target {built_for}): there is nothing to flash; run it "
            f"with `mcutl run {build} --input X.npz`"
        )
    if tgt.pyocd_target is None:
        if tgt.has_qemu:
            raise NotFlashableError(
                f"target {built_for} is QEMU-only ({tgt.qemu_machine}): it has no board to "
                f"flash; run it in QEMU with `mcutl run {build} --qemu --input X.npz`"
            )
        raise NotFlashableError(
            f"target {built_for} has no pyOCD target type: add `[flash]` with "
            f'`pyocd_target = "<part>"` to {tgt.folder / "target.toml"} '
            "(names: `pyocd list --targets`, or `pyocd pack find <part>`)"
        )
    elf = build / firmware.get("board", FIRMWARE_ELF)
    if not elf.is_file():
        raise BuildFolderError(
            f"{build} has no board firmware ({elf.name} missing): rebuild with "
            f"`mcutl compile MODEL --target {built_for} -o {build}`"
        )
    if not _is_arm_elf(elf):
        raise BuildFolderError(
            f"{elf} is not a 32-bit ARM ELF (a host build?): rebuild with "
            f"`mcutl compile MODEL --target {built_for} -o {build}`"
        )
    return FlashPlan(build=build, target=tgt, pyocd_target=tgt.pyocd_target, elf=elf)


def pyocd_flash_args(
    plan: FlashPlan,
    probe: str,
    *,
    uid: str | None = None,
    frequency: int | None = None,
    pyocd: str = "pyocd",
) -> list[str]:
    cmd = [
        pyocd, "flash", "--no-wait",
        "--target", plan.pyocd_target,
        "--uid", probe_selector(probe, uid),
    ]  # fmt: skip
    if frequency is not None:
        if frequency <= 0:
            raise FlashError(f"--frequency {frequency}: must be a positive number of Hz")
        cmd += ["--frequency", str(int(frequency))]
    cmd += ["--erase", "sector", "--format", "elf", str(plan.elf.resolve())]
    return cmd


def flash_command(
    build: Path,
    probe: str,
    *,
    uid: str | None = None,
    frequency: int | None = None,
    pyocd: str = "pyocd",
    target: str | None = None,
) -> list[str]:
    """The pyocd invocation that flashes `build/firmware.elf` (checks the build folder first).

    probe: 'stlink' | 'cmsis-dap'. uid: full or partial unique ID of the probe (`pyocd list`).
    frequency: SWD clock in Hz. target: if given, the build must be for this mcutl target.
    """
    plan = check_build(build, target)
    return pyocd_flash_args(plan, probe, uid=uid, frequency=frequency, pyocd=pyocd)


# ---------------------------------------------------------------------------------------------
# running pyocd


def find_pyocd(pyocd: str = "pyocd") -> str:
    """Path of the pyocd executable: as given if a path, else PATH, else next to this Python
    (a venv's bin/ that is not on PATH). Raises PyocdNotFoundError."""
    candidates: list[str | None]
    if os.sep in pyocd or (os.altsep and os.altsep in pyocd):
        candidates = [pyocd]
    else:
        candidates = [shutil.which(pyocd), str(Path(sys.executable).parent / pyocd)]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise _not_installed(pyocd)


def _not_installed(pyocd: str) -> PyocdNotFoundError:
    return PyocdNotFoundError(
        f"pyocd is not installed (no executable '{pyocd}'): `pip install pyocd` into the same "
        "environment as mcutl (then, once per chip family, `pyocd pack install <part>`), or pass "
        "the path of the pyocd executable"
    )


def _clean(text: str) -> str:
    return _ANSI.sub("", text or "")


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = [ln.rstrip() for ln in _clean(text).strip().splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def _run(
    cmd: Sequence[str], runner: Runner, timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    try:
        return runner(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,  # pyocd must never wait for an answer on the console
            check=False,
        )
    except (FileNotFoundError, PermissionError) as exc:
        raise _not_installed(cmd[0]) from exc
    except subprocess.TimeoutExpired as exc:
        out = _tail(_text(exc.stderr) + "\n" + _text(exc.stdout))
        raise FlashTimeoutError(
            f"{what} did not finish within {timeout:g} s: check the probe's SWD wiring and that "
            "the board is powered, try a lower --frequency (e.g. 1000000), or raise the timeout"
            + (f"\npyocd said:\n{out}" if out else "")
        ) from exc


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _ambiguous_ids(output: str) -> list[str]:
    # pyocd prints "<description> | <unique id>" for each matching probe
    return [m.group(1) for m in re.finditer(r"^.+ \| (\S+)\s*$", output, re.MULTILINE)]


def classify_failure(
    proc: subprocess.CompletedProcess[str], plan: FlashPlan, probe: str, uid: str | None
) -> FlashError:
    """Turn a non-zero pyocd exit into the FlashError that says what to do."""
    stdout, stderr = _clean(proc.stdout), _clean(proc.stderr)
    both = stdout + "\n" + stderr
    label = PROBE_LABELS.get(probe, probe)
    which = f"{label} probe" + (f" matching uid '{uid}'" if uid else "")
    if "No connected debug probe" in both or "No available debug probes" in both:
        return ProbeNotFoundError(
            f"no {which} is connected: plug it in (USB), check the board is powered"
            + (" and the uid" if uid else "")
            + "; `pyocd list` shows the probes pyOCD sees. On Linux, a probe that is "
            "plugged in but not listed needs pyOCD's udev rules (see pyocd.io/docs/installing)"
        )
    if "More than one debug probe matches" in both:
        ids = _ambiguous_ids(stdout)
        return AmbiguousProbeError(
            f"several {label} probes are connected"
            + (f" ({', '.join(ids)})" if ids else "")
            + ": choose one with --uid <unique ID or a unique part of it> (see `pyocd list`)"
        )
    if re.search(r"Target type \S+ not recognized", both):
        return PyocdTargetMissingError(
            f"pyOCD does not know target type '{plan.pyocd_target}' (for {plan.target.name}): "
            f"install its CMSIS-Pack once with `pyocd pack install {plan.pyocd_target}` "
            "(downloads from the internet), then flash again"
        )
    tail = _tail(stderr) or _tail(stdout)
    hint = "retry with a lower --frequency (e.g. 1000000), or check the wiring and power"
    low = both.lower()
    if "libusb_error_access" in low or "access denied" in low or "permission denied" in low:
        hint = "the USB device is not accessible: install pyOCD's udev rules or run as a user "
        hint += "with access to it"
    elif "libusb" in low and ("no backend" in low or "not found" in low):
        hint = "pyOCD cannot find libusb: install it (apt-get install libusb-1.0-0)"
    return PyocdFailedError(
        f"pyocd failed (exit code {proc.returncode}) flashing {plan.elf} to "
        f"{plan.pyocd_target} via {label}: {hint}" + (f"\npyocd said:\n{tail}" if tail else ""),
        proc.returncode,
        stderr,
    )


def flash(
    build: Path,
    probe: str,
    *,
    uid: str | None = None,
    frequency: int | None = None,
    pyocd: str = "pyocd",
    target: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    runner: Runner = subprocess.run,
) -> FlashResult:
    """Flash `build`'s board firmware with pyOCD; raises a FlashError subclass on failure.

    `runner` is subprocess.run's seam (tests inject a fake); it is called once.
    """
    plan = check_build(build, target)
    exe = find_pyocd(pyocd)
    cmd = pyocd_flash_args(plan, probe, uid=uid, frequency=frequency, pyocd=exe)
    t0 = time.perf_counter()
    proc = _run(cmd, runner, timeout, "pyocd flash")
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise classify_failure(proc, plan, probe, uid)
    return FlashResult(
        command=cmd,
        target=plan.target.name,
        pyocd_target=plan.pyocd_target,
        probe=probe,
        elf=plan.elf,
        returncode=proc.returncode,
        stdout=proc.stdout or "",
        stderr=proc.stderr or "",
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# listing probes


def probe_kind(vendor_name: str, product_name: str) -> str | None:
    """'stlink' | 'cmsis-dap' | None from USB names (CMSIS-DAP requires "CMSIS-DAP" in the
    product string; ST-Links are "STM32 STLink", "STLINK-V3", ...)."""
    text = f"{vendor_name} {product_name}".lower()
    if "cmsis-dap" in text or "daplink" in text:
        return "cmsis-dap"
    if "stlink" in text or "st-link" in text:
        return "stlink"
    return None


def parse_probes_json(text: str) -> list[ProbeInfo]:
    """Parse `pyocd json --probes` output (format version 1.x)."""
    try:
        obj = json.loads(_clean(text))
    except ValueError as exc:
        raise FlashError(f"cannot parse `pyocd json --probes` output: {exc}") from exc
    if not isinstance(obj, dict):
        raise FlashError("cannot parse `pyocd json --probes` output: not a JSON object")
    if obj.get("status", 0) != 0:
        err = _tail(str(obj.get("error", "")), 5)
        raise FlashError(f"pyocd could not list probes: {err or 'unknown error'}")
    probes = []
    for b in obj.get("boards", []):
        vendor, product = str(b.get("vendor_name") or ""), str(b.get("product_name") or "")
        probes.append(
            ProbeInfo(
                unique_id=str(b.get("unique_id", "")),
                description=str(b.get("info") or f"{vendor} {product}".strip()),
                vendor_name=vendor,
                product_name=product,
                board_name=str(b.get("board_name") or ""),
                target=str(b.get("target") or "cortex_m"),
                kind=probe_kind(vendor, product),
            )
        )
    return probes


def list_probes(
    pyocd: str = "pyocd", *, timeout: float = 60.0, runner: Runner = subprocess.run
) -> list[ProbeInfo]:
    """Connected probes via `pyocd json --probes` (machine-readable; `pyocd list` is a colored
    table for humans). Empty list when none are connected."""
    cmd = [find_pyocd(pyocd), "json", "--probes"]
    proc = _run(cmd, runner, timeout, "pyocd json --probes")
    if proc.returncode != 0 and not (proc.stdout or "").strip():
        tail = _tail(proc.stderr or "")
        raise FlashError(
            f"`pyocd json --probes` failed (exit code {proc.returncode})"
            + (f":\n{tail}" if tail else "")
        )
    return parse_probes_json(proc.stdout or "")
