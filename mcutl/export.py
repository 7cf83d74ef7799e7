"""`mcutl export BUILD --lib DIR`: the learner of a training build as a C library for the
user's own firmware (their own sensor loop, no serial host).

DIR/
  README.md            how to build it into a firmware, flags, memory, the API
  Makefile             the static library and the example from the sources, any toolchain
  include/mcutl/*.h    public headers (train.h is the API)
  src/model/           the build's generated train.c, model_weights.c/.h
  src/int8, src/f32    the kernels train.c calls
  src/proto            the buffer helpers and CRC-32 its protocol handlers use
  src/lib/mcutl_lib_board.c   weak board functions (ticks, stack, rx dropped)
  lib/<target>/libmcutl.a     prebuilt, per target with a toolchain on this machine
  example/main.c       a simulated sensor loop that trains with the C API

The file list is `mcutl.compile.library_sources` (next to the firmware's).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from mcutl.compile import BuildInfo, LibraryFile, library_sources
from mcutl.errors import BuildError, McutlError, ToolMissingError
from mcutl.paths import TEMPLATES_DIR
from mcutl.plan.budget import RUNTIME_STATIC_BYTES
from mcutl.targets import Target, load_target
from mcutl.toolchain import COMMON_CFLAGS, CORTEXM_CFLAGS, compiler_for, require_tool
from mcutl.validate import check_output_dir

LIB_NAME = "libmcutl.a"
#: The flags the example Makefile uses: the firmware's, without -Werror (other compilers
#: warn differently) and -g.
MAKE_CFLAGS = tuple(f for f in COMMON_CFLAGS if f not in ("-Werror", "-g"))
#: The Cortex-M shown in the Makefile and README as an example command line.
EXAMPLE_ARM_TARGET = "stm32f746"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                          trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class StaticLibrary:
    target: str
    path: Path
    flags: tuple[str, ...]
    text: int
    data: int
    bss: int
    #: worst-case stack bytes of each C API function (Cortex-M; from GCC's call graph)
    stack: dict[str, int] = field(default_factory=dict)

    @property
    def target_flags(self) -> str:
        """The flags beyond COMMON_CFLAGS, for the README."""
        extra = [f for f in self.flags if f not in COMMON_CFLAGS]
        return "`" + " ".join(extra) + "`" if extra else "(none)"


@dataclass
class Exported:
    """What `export_library` wrote."""

    out: Path
    files: list[str]  # relative to out
    libraries: list[StaticLibrary] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why no library


def load_training_build(build: Path) -> tuple[BuildInfo, dict[str, Any]]:
    """build.json and plan.json of a training build, or a McutlError saying what is wrong."""
    if not build.exists():
        raise McutlError(f"{build}: no such build folder. Create one with `mcutl compile "
                         "MODEL --method repnet --num-classes N --target T -o DIR`.")
    if not build.is_dir():
        raise McutlError(f"{build} is a file, not a build folder")
    info = BuildInfo.load(build)
    if info.method == "none":
        raise McutlError(f"{build} is an inference-only build: there is no learner to export. "
                         "Compile it with --method repnet --num-classes N.")
    missing = [f.src.name for f in library_sources(build)
               if f.src.parent == build and not f.src.is_file()]
    if missing or not (build / "plan.json").is_file():
        raise McutlError(f"{build} lacks {', '.join(missing or ['plan.json'])}; compile the "
                         "build again")
    try:
        plan = json.loads((build / "plan.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise McutlError(f"{build / 'plan.json'} is corrupt ({exc}); compile again") from exc
    return info, plan


def copy_sources(build: Path, out: Path) -> list[LibraryFile]:
    files = library_sources(build)
    for f in files:
        dest = out / f.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.src, dest)
    return files


def target_flags(target: Target) -> tuple[str, ...]:
    """The flags the firmware of ``target`` compiles the learner with."""
    extra = () if target.is_host else CORTEXM_CFLAGS
    return (*COMMON_CFLAGS, *target.cflags, *extra)


def archiver_for(target: Target) -> str:
    return "ar" if target.is_host else "arm-none-eabi-ar"


def archive_sizes(target: Target, lib: Path) -> tuple[int, int, int]:
    """(text, data, bss) summed over the archive's members, from `size -t`."""
    tool = require_tool("size" if target.is_host else "arm-none-eabi-size")
    out = subprocess.run([tool, "-t", str(lib)], capture_output=True, text=True,
                         check=True).stdout
    total = out.strip().splitlines()[-1].split()
    return int(total[0]), int(total[1]), int(total[2])


#: The C API (include/mcutl/train.h) whose stack `stack_usage` reports.
API_FUNCTIONS = ("mcutl_train_step", "mcutl_train_update", "mcutl_infer", "mcutl_train_reset")
_CI_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes \(([a-z,]+)\)')
_CI_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def stack_usage(ci_files: list[Path], roots: tuple[str, ...] = API_FUNCTIONS) -> dict[str, int]:
    """Worst-case stack of each root: the deepest path through the call graph GCC wrote
    with -fcallgraph-info=su (frames of the library's own functions; calls into libc such
    as memcpy add their small frames on top). A root that reaches a dynamic frame or an
    indirect call has no bound and is left out."""
    frame: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    unbounded: set[str] = {"__indirect_call"}
    for ci in ci_files:
        text = ci.read_text()
        for name, size, kind in _CI_NODE.findall(text):
            frame[name] = max(frame.get(name, 0), int(size))
            if kind == "dynamic":
                unbounded.add(name)
        for src, dst in _CI_EDGE.findall(text):
            calls.setdefault(src, set()).add(dst)

    def deepest(fn: str, seen: frozenset[str]) -> int | None:
        if fn in unbounded or fn in seen:
            return None  # no bound (dynamic frame, indirect call or recursion)
        best = 0
        for callee in calls.get(fn, ()):
            d = deepest(callee, seen | {fn})
            if d is None:
                return None
            best = max(best, d)
        return frame.get(fn, 0) + best

    out = {}
    for root in roots:
        d = deepest(root, frozenset()) if root in frame else None
        if d is not None:
            out[root] = d
    return out


def build_static_library(target: Target, out: Path, files: list[LibraryFile]) -> StaticLibrary:
    """Compile the exported sources (in ``out``) for ``target`` into lib/<target>/libmcutl.a."""
    cc = require_tool(compiler_for(target))
    ar = require_tool(archiver_for(target))
    flags = target_flags(target)
    includes = [f"-I{out / 'include'}", f"-I{out / 'src' / 'model'}"]
    sources = [out / f.dest for f in files if f.compiled]
    lib = out / "lib" / target.name / LIB_NAME
    lib.parent.mkdir(parents=True, exist_ok=True)
    # Cortex-M: GCC also writes the call graph with frame sizes (not the code), for the stack
    graph = [] if target.is_host else ["-fcallgraph-info=su"]
    with tempfile.TemporaryDirectory(prefix="mcutl-lib-") as tmp:
        objs = [Path(tmp) / (str(s.relative_to(out / "src")).replace("/", "__")[:-2] + ".o")
                for s in sources]

        def compile_one(src: Path, obj: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([cc, *flags, *graph, *includes, "-c", str(src), "-o", str(obj),
                                   "-dumpdir", f"{tmp}/"], capture_output=True, text=True)

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            procs = list(pool.map(compile_one, sources, objs))
        for src, proc in zip(sources, procs, strict=True):
            if proc.returncode != 0:
                raise BuildError(f"compiling {src.relative_to(out)} for {target.name} failed\n"
                                 f"--- {Path(cc).name} said:\n{proc.stderr.strip()[-4000:]}")
        lib.unlink(missing_ok=True)
        subprocess.run([ar, "rcs", str(lib), *map(str, objs)], check=True, capture_output=True)
        stack = stack_usage(sorted(Path(tmp).glob("*.ci")))
    text, data, bss = archive_sizes(target, lib)
    return StaticLibrary(target.name, lib, flags, text, data, bss, stack)


def _sine_rows() -> list[str]:
    vals = [f"{math.sin(2 * math.pi * k / 32):.7f}f" for k in range(32)]
    return [", ".join(vals[i: i + 8]) + "," for i in range(0, 32, 8)]


def render_example(info: BuildInfo, banner: str) -> str:
    _, h, w, c = info.input_shape_nhwc
    return _env.get_template("lib_example_main.c.j2").render(
        banner=banner, num_classes=info.num_classes, steps=h * w, channels=c,
        input_scale=repr(float(info.input_scale)), input_zero_point=info.input_zero_point,
        train_samples=240, batch=4, test_samples=60, report_every=40, sine_rows=_sine_rows())


def render_makefile(files: list[LibraryFile], banner: str) -> str:
    arm = load_target(EXAMPLE_ARM_TARGET)
    return _env.get_template("lib_Makefile.j2").render(
        banner=banner, cflags=" ".join(MAKE_CFLAGS),
        sources=[f.dest for f in files if f.compiled],
        arch_example=" ".join([*arm.cflags, *CORTEXM_CFLAGS]), arch_example_target=arm.name)


def tree(out: Path) -> str:
    """The exported folder as an indented list (directories first)."""
    lines: list[str] = []

    def walk(d: Path, depth: int) -> None:
        entries = sorted(d.iterdir(), key=lambda p: (p.is_file(), p.name))
        for p in entries:
            lines.append("  " * depth + p.name + ("/" if p.is_dir() else ""))
            if p.is_dir():
                walk(p, depth + 1)

    walk(out, 0)
    return "\n".join(lines)


def _stack_text(info: BuildInfo, plan: dict[str, Any], libraries: list[StaticLibrary]) -> str:
    reserved = plan.get("stack_bytes")
    text = (f"the mcutl firmware for {info.target} reserves {reserved} B of stack for its "
            "whole application, serial server included" if reserved else "")
    measured = next((lib for lib in libraries if lib.stack), None)
    if measured is None:
        return (text + "; " if text else "") + ("the learner keeps every buffer in the "
                                                "arena, its kernels use small frames")
    calls = ", ".join(f"`{fn}()` {n} B" for fn, n in measured.stack.items())
    return (f"worst case of the C API on {measured.target}, from GCC's call graph "
            f"(`-fcallgraph-info=su`): {calls}; add your caller's frames and interrupts"
            + (f"; {text}" if text else ""))


def render_readme(info: BuildInfo, plan: dict[str, Any], out: Path, banner: str,
                  libraries: list[StaticLibrary]) -> str:
    arm = load_target(EXAMPLE_ARM_TARGET)
    opt = info.training.get("options", {})
    optimizer = opt.get("optimizer", "?")
    if optimizer == "sgd":
        optimizer += f", lr {opt.get('lr')}, momentum {opt.get('momentum')}"
    elif optimizer == "adam":
        optimizer += f", lr {opt.get('lr')}"
    stack_text = _stack_text(info, plan, libraries)
    n_in = math.prod(info.input_shape_nhwc)
    return _env.get_template("lib_README.md.j2").render(
        banner=banner, model_hash=info.model_hash, method=info.method,
        num_classes=info.num_classes, param_count=plan.get("param_count", "?"),
        optimizer=optimizer, input_shape=info.input_shape_nhwc, input_bytes=n_in,
        input_scale=info.input_scale, input_zero_point=info.input_zero_point,
        target=info.target, tree=tree(out), libraries=libraries,
        arch_example=" ".join(arm.cflags), arch_example_target=arm.name,
        common_cflags=" ".join(COMMON_CFLAGS), arena_bytes=int(plan["peak_bytes"]),
        learner_static=int(plan["static_bytes"]) - RUNTIME_STATIC_BYTES,
        runtime_static=RUNTIME_STATIC_BYTES, stack_text=stack_text)


def export_library(build: Path, out: Path, targets: list[str] | None = None) -> Exported:
    """Write the learner of ``build`` into ``out`` (sources, Makefile, example, README) and
    a static library per target: ``targets``, or the build's own target and `host` (those
    whose toolchain is missing are skipped, with the reason)."""
    check_output_dir(out, "--lib")
    info, plan = load_training_build(build)
    explicit = targets is not None
    names = list(dict.fromkeys(targets if explicit else [info.target, "host"]))
    chosen = [load_target(n) for n in names]  # unknown targets fail before writing anything
    banner = (f"Exported by mcutl {info.mcutl_version} from {build.resolve().name} "
              f"(method {info.method}, model sha256 {info.model_hash[:16]}).")
    out.mkdir(parents=True, exist_ok=True)
    files = copy_sources(build, out)
    (out / "example").mkdir(exist_ok=True)
    (out / "example" / "main.c").write_text(render_example(info, banner))
    (out / "Makefile").write_text(render_makefile(files, banner))
    res = Exported(out, [])
    for target in chosen:
        try:
            res.libraries.append(build_static_library(target, out, files))
        except ToolMissingError as exc:
            if explicit:
                raise
            res.skipped[target.name] = str(exc)
    (out / "README.md").touch()  # listed in its own tree
    (out / "README.md").write_text(render_readme(info, plan, out, banner, res.libraries))
    res.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return res
