"""Float ops of trainable graphs (side networks, connectors, heads): one registry."""

from mcutl.ops.f32 import connect, layers  # noqa: F401  (registration)
from mcutl.ops.f32.base import REGISTRY, FloatOp, FloatOpError, get_float_op

__all__ = ["REGISTRY", "FloatOp", "FloatOpError", "get_float_op"]
