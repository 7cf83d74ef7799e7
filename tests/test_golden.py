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
