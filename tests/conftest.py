"""Shared fixtures. Tests are grouped by what they need (markers in pyproject.toml):
pure Python, `host` (gcc), `qemu` (arm-none-eabi-gcc + qemu-system-arm), `tflite`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None

needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (make setup)")
needs_qemu = pytest.mark.skipif(
    not (HAVE_ARM and HAVE_QEMU), reason="arm-none-eabi-gcc/qemu-system-arm missing (make setup)"
)


@pytest.fixture(scope="session")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build folder per test session (firmware builds are reused across tests)."""
    return tmp_path_factory.mktemp("build")
