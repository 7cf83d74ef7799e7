"""Frontends: ONNX, torch (nn.Module / torch.export .pt2) and int8 .tflite -> IR."""

from mcutl.frontend.load import load_model

__all__ = ["load_model"]
