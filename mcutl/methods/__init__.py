"""On-device training methods: what is trained beside the frozen int8 backbone.

Each method is one file that registers itself (mcutl/methods/registry.py)."""

from mcutl.methods import adaptor, bias, bnshift, finetune, last, repnet  # noqa: F401,E501
from mcutl.methods.registry import METHODS, Method, get_method

__all__ = ["METHODS", "Method", "get_method"]
