"""Targets are data: every folder loads, and the toolchain turns each into firmware."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcutl.cli import main
from mcutl.errors import BuildError, TargetError
from mcutl.firmware import base_spec
from mcutl.targets import list_target_names, load_target
from mcutl.toolchain import FirmwareSpec, build_firmware
from tests.conftest import needs_arm

REQUIRED = {"stm32f405", "mps2_an386", "stm32f746", "host"}


def test_required_targets_exist() -> None:
    assert set(list_target_names()) >= REQUIRED


def test_stm32f405_links_for_the_real_chip() -> None:
    t = load_target("stm32f405")
    assert t.memory is not None and t.memory.sram_bytes == 128 * 1024
    assert t.memory.flash_bytes == 1024 * 1024
    assert t.qemu_machine == "netduinoplus2"
    f7 = load_target("stm32f746")
    assert f7.memory is not None and f7.memory.sram_bytes == 320 * 1024
    assert f7.qemu_machine is None


def test_kernel_set_is_target_data(tmp_path: Path) -> None:
    """`kernels` in target.toml picks the int8 kernel set: the SIMD variants on the
    Cortex-M4/M7 targets, the portable reference on the host; a typo is named."""
    assert load_target("host").kernels == "portable"
    for name in ("stm32f405", "stm32f746", "mps2_an386"):
        assert load_target(name).kernels == "dsp"
    src = Path(load_target("stm32f405").folder / "target.toml").read_text()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "target.toml").write_text(src.replace('kernels = "dsp"',
                                                            'kernels = "neon"'))
    with pytest.raises(TargetError, match="kernels must be one of portable, dsp, not 'neon'"):
        load_target("b", tmp_path)


def test_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(TargetError, match="unknown target 'nrf52'.*stm32f405"):
        load_target("nrf52")


def test_new_board_is_a_folder(tmp_path: Path) -> None:
    """A board is added by writing a target.toml: no compiler code changes."""
    src = Path(load_target("stm32f405").folder / "target.toml").read_text()
    (tmp_path / "myboard").mkdir()
    (tmp_path / "myboard" / "target.toml").write_text(
        src.replace('name = "stm32f405"', 'name = "myboard"').replace("131072", "65536")
    )
    t = load_target("myboard", tmp_path)
    assert t.name == "myboard" and t.memory is not None and t.memory.sram_bytes == 65536


def test_malformed_target_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "target.toml").write_text('kind = "cortex-m"\n')
    with pytest.raises(TargetError, match="missing key 'memory'"):
        load_target("bad", tmp_path)


def test_cli_targets_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["stm32f405"]["sram_bytes"] == 131072
    assert rows["stm32f405"]["kernels"] == "dsp" and rows["host"]["kernels"] == "portable"
    assert rows["stm32f746"]["flash_bytes"] == 1048576


@needs_arm
@pytest.mark.qemu
@pytest.mark.parametrize("name", ["stm32f405", "mps2_an386", "stm32f746"])
def test_base_firmware_builds_for_every_cortex_m_target(name: str, build_root: Path) -> None:
    t = load_target(name)
    fw = build_firmware(t, base_spec(), build_root / name)
    assert fw.size is not None
    assert 1000 < fw.size.text < 64 * 1024
    assert fw.size.static_ram < 16 * 1024
    # the vector table sits at the start of flash: the first word is the initial SP
    data = fw.elf.read_bytes()
    assert data[:4] == b"\x7fELF"


@needs_arm
@pytest.mark.qemu
def test_sram_overflow_fails_at_link_time_with_numbers(build_root: Path) -> None:
    t = load_target("stm32f405")
    src = Path(__file__).resolve().parent.parent / "runtime_c" / "tests" / "fw_bigbss.c"
    spec = FirmwareSpec(name="bigbss", sources=[src], defines={"MCUTL_TEST_BSS_BYTES": "140000"})
    with pytest.raises(BuildError) as info:
        build_firmware(t, spec, build_root / "bigbss")
    msg = str(info.value)
    assert "does not fit the SRAM of stm32f405" in msg
    assert "131072" in msg and "8192" in msg
    # 140000 B of .bss + ~1 KiB ring + 8192 B stack > 131072 B: the overflow is reported
    over = int(msg.split("by ")[1].split(" B")[0])
    assert 140000 + 8192 - 131072 < over < 140000 + 8192 - 131072 + 4096


def test_tables_stay_whole_when_piped() -> None:
    """`mcutl targets | cat`: no column is cut at 80 characters."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "mcutl.cli", "targets"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "mps2_an386" in res.stdout and "netduinoplus2" in res.stdout
    assert "…" not in res.stdout
