"""mcutl: compile a frozen int8 backbone plus a trainable Rep-Net side network to MCU firmware."""

__version__ = "0.1.0"
