# The two commands a newcomer needs: `make demo` and `make test`.
# Both install what is missing first (Debian toolchain + QEMU, a venv with mcutl).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup demo test lint clean golden

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/python examples/demo.py

test: setup
	$(VENV)/bin/ruff check mcutl tests examples benchmarks
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check mcutl tests examples benchmarks

clean:
	rm -rf build .pytest_cache

# Rewrite the golden copies of the generated C (tests/golden/) after a meant change.
golden: setup
	$(VENV)/bin/python -m tests.golden.regen
