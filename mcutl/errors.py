"""Errors a user can act on: each message names the problem and the fix."""

from __future__ import annotations


class McutlError(Exception):
    """Base class: the CLI prints these as `error: <message>` and exits non-zero."""


class TargetError(McutlError):
    """An unknown target or a malformed target.toml."""


class BuildError(McutlError):
    """The C toolchain failed (compile, link, memory overflow)."""


class ToolMissingError(McutlError):
    """A required external tool (compiler, QEMU) is not installed."""
