"""Golden copies of the generated C ("process replay"): a refactor must leave them
byte-identical unless it means to change them.

Inputs (committed): the example backbones as int8 .tflite files (`inputs/`), so that no
float calibration, and no host CPU, enters the generated C. Outputs: per case, the
generated code files as text (readable diffs) and `manifest.json` with the SHA-256 of
every generated file (the large weight tables are checked by hash only).

    python -m tests.golden.regen            # rewrite the golden copies
    python -m tests.golden.regen --check    # compare, print a diff, exit 1 on a change
    python -m tests.golden.regen --inputs   # re-export the input .tflite files (rare)
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
TARGET = "stm32f405"
#: generated files kept as text beside their hash (code; the rest are weight tables)
TEXT_FILES = ("model.c", "train.c", "model_weights.h")


def _inference(name: str) -> dict[str, str]:
    from mcutl.codegen.backbone import generate_backbone
    from mcutl.frontend.load import load_model
    from mcutl.tflite.export import export_tflite

    graph = load_model(INPUTS / f"{name}.tflite")
    return generate_backbone(graph, export_tflite(graph), TARGET).files


def _training(name: str, num_classes: int) -> dict[str, str]:
    from mcutl.compile import model_hash
    from mcutl.frontend.load import load_model
    from mcutl.methods.repnet import RepNetSpec, build_repnet
    from mcutl.tflite.export import export_tflite
    from mcutl.train.codegen import TrainOptions, generate_training

    graph = load_model(INPUTS / f"{name}.tflite")
    tm = build_repnet(graph, num_classes, RepNetSpec())
    options = TrainOptions()
    h = model_hash(export_tflite(tm.backbone), tm, options)
    return generate_training(tm, h, TARGET, options).files


#: case name -> generator of its files
CASES: dict[str, Callable[[], dict[str, str]]] = {
    "mbv2-inference": lambda: _inference("mbv2"),
    "mbv2-repnet": lambda: _training("mbv2", 10),
    "imu1d-inference": lambda: _inference("imu1d"),
    "imu1d-repnet": lambda: _training("imu1d", 4),
}


def export_inputs() -> None:
    """The example backbones as in tests/test_train.py, quantised once to int8 .tflite."""
    import numpy as np

    from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
    from mcutl.compile import load_and_quantize
    from mcutl.tflite.export import export_tflite

    INPUTS.mkdir(parents=True, exist_ok=True)
    for name, cls, shape in (("mbv2", TinyMBV2, (1, 1, 28, 28)),
                             ("imu1d", TinyIMU1D, (1, 6, 100))):
        model = randomize_batchnorm_stats(spread_init(cls(seed=1), seed=2), seed=3).eval()
        calib = np.random.default_rng(0).random((32, *shape[1:]), dtype=np.float32)
        graph = load_and_quantize(model, calib, shape)
        (INPUTS / f"{name}.tflite").write_bytes(export_tflite(graph))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_path() -> Path:
    return HERE / "manifest.json"


def generate_all() -> dict[str, dict[str, str]]:
    return {case: make() for case, make in CASES.items()}


def write(outputs: dict[str, dict[str, str]]) -> None:
    manifest: dict[str, dict[str, str]] = {}
    for case, files in outputs.items():
        d = HERE / case
        d.mkdir(exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        manifest[case] = {}
        for fname, text in sorted(files.items()):
            manifest[case][fname] = sha(text)
            if fname in TEXT_FILES:
                (d / fname).write_text(text)
    manifest_path().write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def compare(outputs: dict[str, dict[str, str]]) -> list[str]:
    """Every difference from the golden copies, with a unified diff for text files."""
    manifest = json.loads(manifest_path().read_text())
    problems: list[str] = []
    if sorted(manifest) != sorted(outputs):
        problems.append(f"cases {sorted(outputs)} vs golden {sorted(manifest)}")
    for case, files in outputs.items():
        want = manifest.get(case, {})
        if sorted(want) != sorted(files):
            problems.append(f"{case}: files {sorted(files)} vs golden {sorted(want)}")
        for fname, text in sorted(files.items()):
            if want.get(fname) == sha(text):
                continue
            golden = HERE / case / fname
            msg = f"{case}/{fname} changed (sha256 {sha(text)[:12]} vs {want.get(fname, '-')[:12]})"
            if golden.is_file():
                diff = difflib.unified_diff(golden.read_text().splitlines(), text.splitlines(),
                                            f"golden/{case}/{fname}", f"now/{case}/{fname}",
                                            lineterm="", n=2)
                msg += "\n" + "\n".join(list(diff)[:60])
            problems.append(msg)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare instead of rewriting")
    ap.add_argument("--inputs", action="store_true", help="re-export the input .tflite files")
    args = ap.parse_args(argv)
    if args.inputs:
        export_inputs()
    outputs = generate_all()
    if args.check:
        problems = compare(outputs)
        for p in problems:
            print(p)
        print("golden: " + ("CHANGED" if problems else "identical"))
        return 1 if problems else 0
    write(outputs)
    print(f"golden: wrote {sum(len(f) for f in outputs.values())} files of "
          f"{len(outputs)} cases to {HERE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    sys.exit(main())
