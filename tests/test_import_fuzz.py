"""The importers on mutated files (truncations, byte flips, random bytes, chunks deleted
or duplicated): every file imports or is refused with an McutlError; nothing else
escapes. The longer run: `python benchmarks/fuzz_importers.py --n N`."""

from __future__ import annotations

import pytest

from benchmarks.fuzz_importers import fuzz, importers

N = 200  # mutations per format (fixed seed: the same files every run)


@pytest.fixture(scope="module")
def seeds() -> dict:
    return importers()


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_mutated_models_import_or_fail_cleanly(fmt: str, seeds: dict) -> None:
    load, data = seeds[fmt]
    load(data)  # the unmutated seed imports
    res = fuzz(load, data, N, seed=14)
    assert res.tried == N
    assert not res.crashes, f"{len(res.crashes)} crashes; first:\n{res.crashes[0]}"
    assert res.rejected > N // 2  # the mutations do reach the checks
