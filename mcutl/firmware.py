"""Which C files make up a firmware image, and where its build lives."""

from __future__ import annotations

from pathlib import Path

from mcutl.paths import REPO_ROOT, RUNTIME_C
from mcutl.targets import Target
from mcutl.toolchain import Firmware, FirmwareSpec, build_firmware

APP_DIR = RUNTIME_C / "src" / "app"
PROTO_DIR = RUNTIME_C / "src" / "proto"
DEFAULT_BUILD_ROOT = REPO_ROOT / "build"


def runtime_sources() -> list[Path]:
    """The target-independent runtime every firmware links: application + protocol."""
    return [APP_DIR / "main.c", *sorted(PROTO_DIR.glob("*.c"))]


def base_spec(semihosting: bool = True, sanitize: bool = False) -> FirmwareSpec:
    """The firmware without a model: HELLO / ECHO / EXIT only."""
    return FirmwareSpec(
        name="mcutl_base",
        sources=[*runtime_sources(), APP_DIR / "no_model.c"],
        semihosting=semihosting,
        sanitize=sanitize,
    )


def build_base(target: Target, out_dir: Path | None = None, semihosting: bool = True) -> Firmware:
    """Build (or reuse) the model-less firmware for target."""
    out = out_dir or DEFAULT_BUILD_ROOT / "base" / target.name
    return build_firmware(target, base_spec(semihosting), out)
