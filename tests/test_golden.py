"""Process replay: the generated C of the example models equals the golden copies under
tests/golden/ byte for byte (regenerate with `python -m tests.golden.regen` when a change
to the generated C is meant, and say why in the commit)."""

from __future__ import annotations

from tests.golden import regen


def test_generated_c_is_byte_identical_to_the_golden_copies() -> None:
    problems = regen.compare(regen.generate_all())
    assert not problems, "\n\n".join(problems)


def test_the_comparison_sees_a_one_byte_change() -> None:
    outputs = regen.generate_all()
    files = outputs["mbv2-repnet"]
    files["train.c"] = files["train.c"].replace("return 0;", "return 1;", 1)
    problems = regen.compare(outputs)
    assert len(problems) == 1 and problems[0].startswith("mbv2-repnet/train.c changed")
    assert "\n+        return 1; /* probe point 0 */" in problems[0]  # the diff shows the line


def test_the_generated_c_does_not_depend_on_the_host_cpu() -> None:
    """The same compile on another CPU gives the same firmware: regenerated in processes
    whose torch runs other CPU kernels (ATEN_CPU_CAPABILITY) and thread counts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for cap, threads in (("default", "1"), ("avx2", "2")):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": threads,
               "PYTHONPATH": str(root)}
        res = subprocess.run([sys.executable, "-m", "tests.golden.regen", "--check"],
                             cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, (cap, res.stdout[-3000:], res.stderr[-2000:])
