"""The README's demo: build the firmware for an STM32F405, boot it in QEMU, talk to it.

Run with `make demo` (installs what is missing first) or `python examples/demo.py`.
"""

from __future__ import annotations

import sys

from mcutl.cli import main

if __name__ == "__main__":
    sys.exit(main(["ping", "--target", "stm32f405", "--qemu"]))
