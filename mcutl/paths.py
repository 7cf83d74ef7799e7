"""Where mcutl finds its C runtime and target folders (a source checkout)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_C = REPO_ROOT / "runtime_c"
TARGETS_DIR = REPO_ROOT / "targets"
TEMPLATES_DIR = Path(__file__).resolve().parent / "codegen" / "templates"
