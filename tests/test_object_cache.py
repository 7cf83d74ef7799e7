"""Runtime kernels are compiled once per compiler, flags and content, and reused by every
build (the object cache); a change to any of those compiles them again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mcutl.paths import RUNTIME_C
from mcutl.toolchain import COMMON_CFLAGS, _shared_runtime, compile_shared

pytestmark = pytest.mark.host


def test_objects_are_reused_and_keyed_by_flags(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCUTL_CACHE_DIR", str(tmp_path / "cache"))
    cc = shutil.which("gcc")
    assert cc is not None
    srcs = [RUNTIME_C / "src" / "int8" / "add.c", RUNTIME_C / "src" / "proto" / "crc32.c"]
    first = compile_shared(cc, list(COMMON_CFLAGS), srcs)
    assert all(o.is_file() and o.parent == tmp_path / "cache" / "obj" for o in first)
    stamps = [o.stat().st_mtime_ns for o in first]
    again = compile_shared(cc, list(COMMON_CFLAGS), srcs)
    assert again == first and [o.stat().st_mtime_ns for o in again] == stamps  # reused
    other = compile_shared(cc, [*COMMON_CFLAGS, "-DMCUTL_SOMETHING=1"], srcs)
    assert set(other).isdisjoint(first)  # other flags: other objects


def test_only_build_independent_sources_are_shared() -> None:
    assert _shared_runtime(RUNTIME_C / "src" / "f32" / "conv2d.c")
    assert _shared_runtime(RUNTIME_C / "src" / "store" / "checkpoint.c")
    assert not _shared_runtime(RUNTIME_C / "src" / "app" / "main.c")  # target_config.h
    assert not _shared_runtime(RUNTIME_C / "port" / "board_host.c")
    assert not _shared_runtime(Path("/tmp/build/train.c"))


def test_a_broken_source_is_a_build_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from mcutl.errors import BuildError

    monkeypatch.setenv("MCUTL_CACHE_DIR", str(tmp_path / "cache"))
    cc = shutil.which("gcc")
    assert cc is not None
    with pytest.raises(BuildError, match="compiling add.c failed"):
        compile_shared(cc, [*COMMON_CFLAGS, "-DMCUTL_KERNEL_OK=(", "-Werror"],
                       [RUNTIME_C / "src" / "int8" / "add.c"])
    assert not list((tmp_path / "cache" / "obj").glob("*.tmp"))
