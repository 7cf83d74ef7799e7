"""The op registry. Importing this package registers every canonical op once."""

from mcutl.ops import activation, add, batchnorm, concat, conv, linear, pad, pool, reshape
from mcutl.ops.base import (
    ACTIVATIONS,
    REGISTRY,
    OpDef,
    QuantRule,
    UnsupportedOpError,
    get_op,
    register,
    supported_ops,
)

__all__ = [
    "ACTIVATIONS", "REGISTRY", "OpDef", "QuantRule", "UnsupportedOpError", "get_op",
    "register", "supported_ops",
    "activation", "add", "batchnorm", "concat", "conv", "linear", "pad", "pool",
    "reshape",
]
