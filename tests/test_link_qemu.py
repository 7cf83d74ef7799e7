"""The real firmware in QEMU (and the host build) over the serial link: no mocks."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from mcutl.cli import main
from mcutl.firmware import base_spec
from mcutl.link import protocol as proto
from mcutl.link.client import DeviceFaultError
from mcutl.link.qemu import QemuSession, run_to_exit
from mcutl.link.session import open_session
from mcutl.targets import load_target
from mcutl.toolchain import FirmwareSpec, build_firmware
from tests.conftest import needs_qemu

pytestmark = [pytest.mark.qemu, needs_qemu]
FAULT_SRC = Path(__file__).resolve().parent.parent / "runtime_c" / "tests" / "fw_fault.c"


def _base(name: str, build_root: Path):  # noqa: ANN202
    return build_firmware(load_target(name), base_spec(), build_root / f"base-{name}")


@pytest.mark.parametrize("name", ["stm32f405", "mps2_an386", "host"])
def test_boot_and_hello(name: str, build_root: Path) -> None:
    target = load_target(name)
    fw = _base(name, build_root)
    with open_session(target, fw.elf, qemu=True) as s:
        h = s.hello
        assert h.proto_version == 1
        assert h.target == name
        assert h.build_id == fw.build_id
        assert h.max_payload == 1024
        assert h.arena_bytes == 0 and h.model_hash == bytes(32)
        ended = s.finish(7)
    code = ended if isinstance(ended, int) else ended.exit_code  # type: ignore[union-attr]
    assert code == 7


def test_echo_64k_random_bytes(build_root: Path) -> None:
    target = load_target("stm32f405")
    fw = _base("stm32f405", build_root)
    rng = random.Random(1234)
    data = rng.randbytes(64 * 1024)
    received = bytearray()
    with open_session(target, fw.elf, qemu=True) as s:
        chunk = s.hello.max_payload
        for off in range(0, len(data), chunk):
            received += s.device.echo(data[off : off + chunk])
        result = s.finish(0)
    assert bytes(received) == data
    assert result.exit_code == 0  # type: ignore[union-attr]
    # a clean link: no damaged frame, no ECHO sent twice (the handshake's first HELLO
    # may be lost while the USART is still disabled: that retry is expected)
    assert s.device.stats.bad_frames == 0
    assert proto.MsgType.ECHO not in s.device.stats.retries_by_type


def test_corrupted_request_is_rejected_by_the_device(build_root: Path) -> None:
    """A frame whose CRC fails is answered with BAD_CRC and never echoed."""
    target = load_target("stm32f405")
    fw = _base("stm32f405", build_root)
    with open_session(target, fw.elf, qemu=True) as s:
        raw = bytearray(proto.encode_frame(proto.MsgType.ECHO, 77, b"never echo this")[:-1])
        raw[5] ^= 0x10 if raw[5] != 0x10 else 0x20  # corrupt a COBS byte (not into a zero)
        s.device.transport.write(bytes(raw) + b"\x00")
        buf = bytearray()
        while buf.count(0) == 0:
            buf += s.device.transport.read_some(2.0)
        frame = proto.decode_frame(bytes(buf[: buf.index(0)]))
        assert frame.type == proto.MsgType.ERROR
        err = proto.DeviceError.from_frame(frame)
        framing = (proto.ErrorCode.BAD_CRC, proto.ErrorCode.TRUNCATED, proto.ErrorCode.BAD_COBS)
        assert err.code in framing
        assert b"never echo this" not in buf
        assert s.device.echo(b"still alive") == b"still alive"
        s.finish(0)


def test_fault_is_reported_with_registers_and_nonzero_exit(build_root: Path) -> None:
    target = load_target("stm32f405")
    fw = build_firmware(target, FirmwareSpec("fault", [FAULT_SRC]), build_root / "fault")
    result = run_to_exit(target, fw.elf, timeout=30)
    assert result.exit_code == 99
    assert result.fault is not None and result.fault.kind == "HardFault"
    regs = result.fault.registers
    assert regs["cfsr"] & (1 << 16)  # UFSR.UNDEFINSTR: the udf instruction
    assert regs["hfsr"] & (1 << 30)  # FORCED: escalated to HardFault
    assert 0x08000000 <= regs["pc"] < 0x08100000


def test_fault_frame_reaches_the_host(build_root: Path) -> None:
    """The application's fault hook sends the registers as a FAULT frame over the link."""
    target = load_target("stm32f405")
    spec = base_spec()
    spec.name = "fault_on_request"
    spec.defines = {"MCUTL_TEST_FAULT": "1"}
    fw = build_firmware(target, spec, build_root / "fault_on_request")
    with QemuSession(target, fw.elf, timeout=60) as q:
        from mcutl.link.client import Device
        from mcutl.link.session import handshake

        dev = Device(q.transport, timeout=5)
        handshake(dev)
        with pytest.raises(DeviceFaultError) as info:
            dev.request(0x70, b"boom")  # MCUTL_MSG_TEST_FAULT
        result = q.wait()
    assert info.value.registers["cfsr"] & (1 << 16)
    assert result.exit_code == 99 and result.fault is not None


def test_qemu_timeout_kills_a_hung_firmware(build_root: Path) -> None:
    target = load_target("stm32f405")
    fw = _base("stm32f405", build_root)
    with QemuSession(target, fw.elf, timeout=1.0) as q:
        result = q.wait(timeout=10)
    assert result.timed_out and result.exit_code is None


def test_cli_ping_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "--target", "stm32f405", "--qemu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["target"] == "stm32f405" and info["protocol_version"] == 1
    assert info["elf_sram_capacity"] == 131072


def test_cli_ping_without_a_link_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "--target", "stm32f746"]) == 2
    assert "--qemu" in capsys.readouterr().err


def test_cli_ping_board_without_qemu_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "--target", "stm32f746", "--qemu"]) == 2
    assert "no QEMU model" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="posix only")
def test_cli_ping_bad_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "--target", "stm32f405", "--port", "/dev/does-not-exist"]) == 2
    assert "cannot open serial link /dev/does-not-exist" in capsys.readouterr().err
