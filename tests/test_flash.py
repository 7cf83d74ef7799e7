"""`mcutl flash` through pyOCD, without hardware: command lines, and every failure turned into
an error that says what to do. pyocd is replaced by a fake `runner` (the subprocess seam) or by
a stub executable; pyocd itself need not be installed."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcutl.errors import McutlError, TargetError, ToolMissingError
from mcutl.flash import (
    AmbiguousProbeError,
    BuildFolderError,
    FlashError,
    FlashTimeoutError,
    NotFlashableError,
    ProbeNotFoundError,
    PyocdFailedError,
    PyocdNotFoundError,
    PyocdTargetMissingError,
    TargetMismatchError,
    check_build,
    flash,
    flash_command,
    list_probes,
    parse_frequency,
    parse_probes_json,
    probe_kind,
    probe_selector,
)
from mcutl.targets import load_target

# A 32-bit little-endian ARM ELF header (e_machine = 40 at offset 18), enough for the check.
ARM_ELF = b"\x7fELF\x01\x01\x01" + bytes(11) + (40).to_bytes(2, "little") + bytes(32)
X86_64_ELF = b"\x7fELF\x02\x01\x01" + bytes(11) + (62).to_bytes(2, "little") + bytes(32)


def make_build(
    folder: Path, target: str = "stm32f405", elf: bytes | None = ARM_ELF, **extra: Any
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    firmware = {"board": "firmware.elf", "host": "host/firmware"}
    info = {"mcutl_version": "0", "target": target, "model_hash": "00", "firmware": firmware}
    info.update(extra)
    (folder / "build.json").write_text(json.dumps(info))
    if elf is not None:
        (folder / "firmware.elf").write_bytes(elf)
    return folder


@pytest.fixture
def build(tmp_path: Path) -> Path:
    return make_build(tmp_path / "build")


@pytest.fixture
def pyocd_exe(tmp_path: Path) -> str:
    """An executable named pyocd that the fake runner stands in for (never executed)."""
    exe = tmp_path / "bin" / "pyocd"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 99\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


class FakeRunner:
    """Stands in for subprocess.run: records the call, returns a canned result."""

    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "",
                 raises: BaseException | None = None) -> None:
        self.result = (returncode, stdout, stderr)
        self.raises = raises
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((cmd, kwargs))
        if self.raises is not None:
            raise self.raises
        rc, out, err = self.result
        return subprocess.CompletedProcess(cmd, rc, out, err)


# --- targets ---------------------------------------------------------------------------------


def test_targets_have_pyocd_types() -> None:
    assert load_target("stm32f405").pyocd_target == "stm32f405rgtx"
    assert load_target("stm32f746").pyocd_target == "stm32f746zgtx"
    assert load_target("mps2_an386").pyocd_target is None
    assert load_target("host").pyocd_target is None


# --- command construction --------------------------------------------------------------------


def test_command_stlink(build: Path) -> None:
    elf = str((build / "firmware.elf").resolve())
    assert flash_command(build, "stlink") == [
        "pyocd", "flash", "--no-wait", "--target", "stm32f405rgtx", "--uid", "stlink:",
        "--erase", "sector", "--format", "elf", elf,
    ]  # fmt: skip


def test_command_cmsis_dap_with_uid_and_frequency(build: Path) -> None:
    elf = str((build / "firmware.elf").resolve())
    cmd = flash_command(build, "cmsis-dap", uid="0240000034", frequency=4_000_000,
                        pyocd="/opt/pyocd/bin/pyocd")
    assert cmd == [
        "/opt/pyocd/bin/pyocd", "flash", "--no-wait", "--target", "stm32f405rgtx",
        "--uid", "cmsisdap:0240000034", "--frequency", "4000000",
        "--erase", "sector", "--format", "elf", elf,
    ]  # fmt: skip


def test_command_f746_and_explicit_target(tmp_path: Path) -> None:
    b = make_build(tmp_path / "f7", target="stm32f746")
    cmd = flash_command(b, "stlink", uid="066EFF55", target="stm32f746")
    assert cmd[3:7] == ["--target", "stm32f746zgtx", "--uid", "stlink:066EFF55"]
    assert "--frequency" not in cmd


def test_uid_may_carry_the_matching_probe_prefix() -> None:
    assert probe_selector("stlink", "stlink:066E") == "stlink:066E"
    assert probe_selector("cmsis-dap", "CMSISDAP:0240") == "cmsisdap:0240"
    assert probe_selector("cmsis-dap", None) == "cmsisdap:"
    assert probe_selector("stlink", "  ") == "stlink:"
    with pytest.raises(FlashError, match="names a 'cmsisdap' probe but --probe is stlink"):
        probe_selector("stlink", "cmsisdap:0240")
    with pytest.raises(FlashError, match="unknown probe 'jlink'.*stlink, cmsis-dap"):
        probe_selector("jlink")


def test_frequency_parsing_and_checks(build: Path) -> None:
    assert parse_frequency("4000000") == 4_000_000
    assert parse_frequency("4m") == 4_000_000
    assert parse_frequency("500k") == 500_000
    assert parse_frequency("1.8MHz") == 1_800_000
    for bad in ("fast", "", "0", "-1k"):
        with pytest.raises(FlashError, match="--frequency"):
            parse_frequency(bad)
    with pytest.raises(FlashError, match="positive"):
        flash_command(build, "stlink", frequency=0)


# --- build folder and target errors ----------------------------------------------------------


def test_missing_build_folder(tmp_path: Path) -> None:
    with pytest.raises(BuildFolderError, match="does not exist.*mcutl compile"):
        flash_command(tmp_path / "nope", "stlink")


def test_missing_build_json(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "firmware.elf").write_bytes(ARM_ELF)
    with pytest.raises(BuildFolderError, match="no build.json.*mcutl compile"):
        flash_command(tmp_path / "b", "stlink")


def test_unreadable_build_json(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "build.json").write_text("{not json")
    with pytest.raises(BuildFolderError, match="unreadable"):
        flash_command(tmp_path / "b", "stlink")


def test_missing_firmware_elf(tmp_path: Path) -> None:
    b = make_build(tmp_path / "b", elf=None)
    with pytest.raises(BuildFolderError, match="firmware.elf missing.*--target stm32f405"):
        flash_command(b, "stlink")


def test_elf_for_the_host_is_refused(tmp_path: Path) -> None:
    b = make_build(tmp_path / "b", elf=X86_64_ELF)
    with pytest.raises(BuildFolderError, match="not a 32-bit ARM ELF"):
        flash_command(b, "stlink")


def test_build_for_another_target(build: Path) -> None:
    with pytest.raises(TargetMismatchError, match="built for stm32f405, not stm32f746"):
        flash_command(build, "stlink", target="stm32f746")


def test_qemu_only_target(tmp_path: Path) -> None:
    b = make_build(tmp_path / "b", target="mps2_an386")
    with pytest.raises(NotFlashableError, match="QEMU-only.*--qemu") as exc:
        flash_command(b, "stlink")
    assert isinstance(exc.value, TargetError)


def test_host_build(tmp_path: Path) -> None:
    b = make_build(tmp_path / "b", target="host", elf=None)
    with pytest.raises(NotFlashableError, match="host build.*mcutl run"):
        flash_command(b, "stlink")


def test_board_without_flash_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = (load_target("stm32f746").folder / "target.toml").read_text()
    tdir = tmp_path / "targets" / "myboard"
    tdir.mkdir(parents=True)
    (tdir / "target.toml").write_text(src.split("[flash]")[0])
    import mcutl.flash

    monkeypatch.setattr(mcutl.flash, "load_target",
                        lambda name: load_target(name, tmp_path / "targets"))
    b = make_build(tmp_path / "b", target="myboard")
    with pytest.raises(NotFlashableError, match=r"no pyOCD target type: add `\[flash\]`"):
        check_build(b)


def test_build_errors_come_before_looking_for_pyocd(tmp_path: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(BuildFolderError):
        flash(tmp_path / "nope", "stlink", pyocd="/nonexistent/pyocd", runner=runner)
    assert runner.calls == []


# --- pyocd not installed ---------------------------------------------------------------------


def test_pyocd_not_installed_path(build: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(PyocdNotFoundError, match="pip install pyocd") as exc:
        flash(build, "stlink", pyocd="/nonexistent/bin/pyocd", runner=runner)
    assert isinstance(exc.value, ToolMissingError) and isinstance(exc.value, McutlError)
    assert runner.calls == []


def test_pyocd_not_installed_name(build: Path) -> None:
    with pytest.raises(PyocdNotFoundError, match="pip install pyocd"):
        flash(build, "stlink", pyocd="pyocd-not-installed-anywhere", runner=FakeRunner())
    with pytest.raises(PyocdNotFoundError, match="pip install pyocd"):
        list_probes("pyocd-not-installed-anywhere", runner=FakeRunner())


def test_pyocd_vanishing_before_exec(build: Path, pyocd_exe: str) -> None:
    runner = FakeRunner(raises=FileNotFoundError(2, "No such file", pyocd_exe))
    with pytest.raises(PyocdNotFoundError, match="pip install pyocd"):
        flash(build, "stlink", pyocd=pyocd_exe, runner=runner)


# --- running pyocd ---------------------------------------------------------------------------


def test_flash_success(build: Path, pyocd_exe: str) -> None:
    runner = FakeRunner(0, "", "[====================] 100%\n")
    res = flash(build, "cmsis-dap", uid="0240", frequency=1_000_000, pyocd=pyocd_exe,
                runner=runner, timeout=42)
    (cmd, kwargs), = runner.calls
    assert cmd == res.command
    assert cmd[:2] == [pyocd_exe, "flash"] and "cmsisdap:0240" in cmd
    assert kwargs["timeout"] == 42 and kwargs["stdin"] is subprocess.DEVNULL
    assert kwargs["capture_output"] and kwargs["text"]
    assert (res.target, res.pyocd_target, res.probe) == ("stm32f405", "stm32f405rgtx", "cmsis-dap")
    assert res.elf == build / "firmware.elf" and res.returncode == 0 and res.seconds >= 0


# What pyocd prints (helpers.py: colored print() to stdout; logging to stderr) and exits 1.
NO_PROBE_OUT = "\x1b[31mNo connected debug probe matches unique ID 'stlink:'\x1b[0m\n"
NO_TARGET_ERR = "0000512 C No target device available [load_cmd]\n"


@pytest.mark.parametrize("uid", [None, "066E"])
def test_no_probe(build: Path, pyocd_exe: str, uid: str | None) -> None:
    runner = FakeRunner(1, NO_PROBE_OUT, NO_TARGET_ERR)
    with pytest.raises(ProbeNotFoundError, match="no ST-Link probe.*is connected.*pyocd list"):
        flash(build, "stlink", uid=uid, pyocd=pyocd_exe, runner=runner)


def test_several_probes_match(build: Path, pyocd_exe: str) -> None:
    out = ("\x1b[31mMore than one debug probe matches unique ID 'cmsisdap:':\x1b[0m\n"
           "Arm DAPLink CMSIS-DAP | 02400b0129164e45\n"
           "ARM DAPLink CMSIS-DAP | 0240000034544e45\n")
    runner = FakeRunner(1, out, NO_TARGET_ERR)
    with pytest.raises(AmbiguousProbeError,
                       match="02400b0129164e45, 0240000034544e45.*--uid"):
        flash(build, "cmsis-dap", pyocd=pyocd_exe, runner=runner)


def test_pack_not_installed(build: Path, pyocd_exe: str) -> None:
    err = ("0001234 C Target type stm32f405rgtx not recognized. Use 'pyocd list --targets' to "
           "see currently available target types. See <https://pyocd.io/docs/target_support.html>"
           " for how to install additional target support. [__main__]\n")
    runner = FakeRunner(1, "", err)
    with pytest.raises(PyocdTargetMissingError, match="pyocd pack install stm32f405rgtx"):
        flash(build, "stlink", pyocd=pyocd_exe, runner=runner)


def test_pyocd_fails_otherwise(build: Path, pyocd_exe: str) -> None:
    err = "".join(f"0000{i} D noise line {i}\n" for i in range(40))
    err += "0009999 C Error: flash algorithm returned error 0x1 (sector 3) [__main__]\n"
    runner = FakeRunner(1, "", err)
    with pytest.raises(PyocdFailedError, match="exit code 1") as exc:
        flash(build, "stlink", pyocd=pyocd_exe, runner=runner)
    msg = str(exc.value)
    assert "flash algorithm returned error 0x1" in msg and "--frequency" in msg
    assert "noise line 39" in msg and "noise line 5\n" not in msg  # only the tail
    assert exc.value.returncode == 1 and "sector 3" in exc.value.stderr


def test_usb_permission_hint(build: Path, pyocd_exe: str) -> None:
    runner = FakeRunner(1, "", "C Error: [Errno 13] Access denied (insufficient permissions)\n")
    with pytest.raises(PyocdFailedError, match="udev rules"):
        flash(build, "stlink", pyocd=pyocd_exe, runner=runner)


def test_timeout(build: Path, pyocd_exe: str) -> None:
    runner = FakeRunner(raises=subprocess.TimeoutExpired(["pyocd"], 5, output=b"", stderr=b"x"))
    with pytest.raises(FlashTimeoutError, match="within 5 s.*--frequency"):
        flash(build, "stlink", pyocd=pyocd_exe, runner=runner, timeout=5)


# --- with a stub pyocd executable and the real subprocess.run --------------------------------


def stub_pyocd(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "stub" / "pyocd"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


@pytest.mark.skipif(sys.platform == "win32", reason="shebang stub")
def test_stub_pyocd_end_to_end(build: Path, tmp_path: Path) -> None:
    log = tmp_path / "argv.json"
    exe = stub_pyocd(tmp_path, f"import json; json.dump(sys.argv[1:], open({str(log)!r}, 'w'))\n"
                               "sys.stdin.read()")  # stdin must not block: it is /dev/null
    res = flash(build, "stlink", uid="066E", pyocd=exe, timeout=30)
    assert json.loads(log.read_text()) == res.command[1:]

    exe = stub_pyocd(tmp_path, f"print({NO_PROBE_OUT!r}); sys.exit(1)")
    with pytest.raises(ProbeNotFoundError):
        flash(build, "stlink", pyocd=exe, timeout=30)

    exe = stub_pyocd(tmp_path, "time.sleep(30)")
    with pytest.raises(FlashTimeoutError):
        flash(build, "stlink", pyocd=exe, timeout=0.5)


# --- listing probes --------------------------------------------------------------------------

PROBES_JSON = {
    "pyocd_version": "0.45.0", "version": {"major": 1, "minor": 1}, "status": 0,
    "boards": [
        {"unique_id": "066EFF555051897267233656", "info": "ST NUCLEO-F746ZG",
         "board_vendor": "ST", "board_name": "NUCLEO-F746ZG", "target": "stm32f746zgtx",
         "vendor_name": "STMicroelectronics", "product_name": "STM32 STLink"},
        {"unique_id": "02400b0129164e4500440012706e0007f301000097969900",
         "info": "Arm DAPLink CMSIS-DAP", "board_vendor": None, "board_name": "Generic",
         "target": "cortex_m", "vendor_name": "Arm", "product_name": "DAPLink CMSIS-DAP"},
        {"unique_id": "960177309", "info": "Segger J-Link OB-K22-NordicSemi",
         "board_vendor": None, "board_name": "Generic", "target": "cortex_m",
         "vendor_name": "Segger", "product_name": "J-Link OB-K22-NordicSemi"},
    ],
}  # fmt: skip


def test_list_probes(pyocd_exe: str) -> None:
    runner = FakeRunner(0, json.dumps(PROBES_JSON, indent=4))
    probes = list_probes(pyocd_exe, runner=runner)
    assert runner.calls[0][0] == [pyocd_exe, "json", "--probes"]
    assert [p.kind for p in probes] == ["stlink", "cmsis-dap", None]
    st = probes[0]
    assert st.unique_id == "066EFF555051897267233656" and st.target == "stm32f746zgtx"
    assert st.description == "ST NUCLEO-F746ZG" and st.board_name == "NUCLEO-F746ZG"


def test_list_probes_none_and_errors(pyocd_exe: str) -> None:
    empty = dict(PROBES_JSON, boards=[])
    assert list_probes(pyocd_exe, runner=FakeRunner(0, json.dumps(empty))) == []
    bad = dict(PROBES_JSON, status=1, boards=[], error="libusb: no backend available")
    with pytest.raises(FlashError, match="could not list probes: libusb"):
        list_probes(pyocd_exe, runner=FakeRunner(1, json.dumps(bad)))
    with pytest.raises(FlashError, match="exit code 2"):
        list_probes(pyocd_exe, runner=FakeRunner(2, "", "Traceback ...\n"))
    with pytest.raises(FlashError, match="cannot parse"):
        parse_probes_json("not json")


@pytest.mark.parametrize(("vendor", "product", "kind"), [
    ("STMicroelectronics", "STLINK-V3", "stlink"),
    ("STMicroelectronics", "ST-LINK/V2", "stlink"),
    ("ARM", "DAPLink CMSIS-DAP", "cmsis-dap"),
    ("Raspberry Pi", "Debugprobe on Pico (CMSIS-DAP)", "cmsis-dap"),
    ("SEGGER", "J-Link", None),
])  # fmt: skip
def test_probe_kind(vendor: str, product: str, kind: str | None) -> None:
    assert probe_kind(vendor, product) == kind
