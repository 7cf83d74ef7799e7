"""Make the examples' torch float training independent of the host CPU and thread count.

Torch picks float kernels per CPU and per thread count: ATen's CPU capability dispatch
(default/avx2/avx512), oneDNN (mkldnn) JIT convolutions, NNPACK (its own AVX2/scalar
paths), MKL's sgemm code paths and parallel reductions. Training amplifies the ulp
differences, so the examples' pre-trained backbone (and every accuracy printed with it)
changed from machine to machine. This module pins all of them:

- environment, read once per process (before or at torch's first use), so it must be
  in place when the process starts: ``ATEN_CPU_CAPABILITY=default`` (no AVX kernels),
  ``MKL_CBWR=COMPATIBLE`` (MKL's conditional numerical reproducibility: one code path
  on every x86 CPU), ``OMP_NUM_THREADS=MKL_NUM_THREADS=1``;
- torch settings, set around the computation by :func:`pinned_torch`: one intra-op
  thread, deterministic algorithms, oneDNN and NNPACK disabled.

A process that did not start with that environment (e.g. one that already imported
torch) runs the computation in a child process: :func:`run_pinned`. The result is then
bit-identical for a given torch wheel and glibc; :func:`state_dict_sha256` fingerprints
it so that machines can be compared.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: importing this module must not import it
    import torch

ROOT = Path(__file__).resolve().parent.parent

PINNED_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def pinned_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`PINNED_ENV` applied."""
    env = dict(os.environ if base is None else base)
    env.update(PINNED_ENV)
    return env


def _startup_env() -> Mapping[str, str]:
    """The environment this process started with (Linux: /proc/self/environ, which later
    ``os.environ`` edits do not change), else ``os.environ``."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return os.environ
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def is_pinned_process() -> bool:
    """True when this process started with :data:`PINNED_ENV` (and torch, if imported,
    runs its default-capability kernels): it may run pinned computations in-process."""
    env = _startup_env()
    if any(env.get(k) != v for k, v in PINNED_ENV.items()):
        return False
    if "torch" in sys.modules:
        import torch

        return torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    return True


@contextmanager
def pinned_torch() -> Iterator[None]:
    """One thread, deterministic algorithms, no oneDNN/NNPACK; restores them afterwards.

    Only fully CPU-independent in a process for which :func:`is_pinned_process` holds.
    """
    import torch

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    mkldnn = torch.backends.mkldnn.enabled
    nnpack = torch._C._get_nnpack_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False  # oneDNN JIT-compiles per CPU ISA
    torch.backends.nnpack.set_flags(False)  # NNPACK has its own AVX2 / scalar kernels
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.mkldnn.enabled = mkldnn
        torch.backends.nnpack.set_flags(nnpack)


def run_pinned(args: Sequence[str], *, quiet: bool = False) -> None:
    """Run ``python <args>`` in a child process with :data:`PINNED_ENV`, cwd the repo root
    (e.g. ``["-m", "examples.pretrain", ...]``); raise if it fails."""
    out = subprocess.DEVNULL if quiet else None
    subprocess.run([sys.executable, *args], cwd=ROOT, env=pinned_env(), check=True,
                   stdout=out)


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over (name, dtype, shape, raw bytes) of every tensor, in sorted name order.

    Unlike a hash of the file written by ``torch.save`` (a zip whose record names come
    from the file's name, with torch's format version and a serialization id), it depends
    only on the values (raw bytes in native order: little-endian on x86 and ARM).
    """
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

