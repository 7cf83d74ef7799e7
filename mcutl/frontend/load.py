"""``load_model``: any supported model (file or live module) -> IR graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcutl.ir.graph import Graph
from mcutl.validate import MODEL_SUFFIXES, check_model_file

SUFFIXES = MODEL_SUFFIXES


def load_model(model: Any, input_shape: Sequence[int] | None = None) -> Graph:
    """Import ``model``: a path ending in .onnx / .pt2 / .tflite, an ONNX ModelProto,
    a ``torch.export.ExportedProgram`` or an ``nn.Module`` (needs ``input_shape``,
    batch 1 included, e.g. ``(1, 1, 28, 28)``).

    Float models come back as float graphs (batchnorm folded, relus fused); a
    .tflite comes back already quantised.
    """
    if isinstance(model, str | Path):
        path = check_model_file(model)
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            from mcutl.frontend.onnx_import import from_onnx

            return from_onnx(path, input_shape)
        if suffix == ".pt2":
            from mcutl.frontend.torch_import import load_pt2

            return load_pt2(path)
        from mcutl.frontend.tflite_import import import_tflite

        return import_tflite(path)
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if kind == "onnx.onnx_ml_pb2.ModelProto" or type(model).__name__ == "ModelProto":
        from mcutl.frontend.onnx_import import from_onnx

        return from_onnx(model, input_shape)
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        from mcutl.frontend.torch_import import from_exported

        return from_exported(model)
    if isinstance(model, torch.nn.Module):
        if input_shape is None:
            raise ValueError("an nn.Module needs input_shape, e.g. (1, 1, 28, 28)")
        from mcutl.frontend.torch_import import from_module

        return from_module(model, input_shape)
    raise TypeError(f"cannot load a {kind}: give a .onnx/.pt2/.tflite path, an ONNX model, "
                    "an ExportedProgram or an nn.Module")
