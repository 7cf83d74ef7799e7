"""Quantised IR -> .tflite bytes. Each op lowers itself (``OpDef.lower_tflite``) through
a LoweringContext, which owns the TFLiteBuilder and the IR-name -> tensor-index map.

The output is deterministic: tensors are added in first-use order (graph inputs,
then node by node), and helper tensors are named after the node's output tensor
(``<out>/padded``, ``<out>/paddings``), so re-exporting an imported model gives
the same bytes.
"""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops import UnsupportedOpError, get_op
from mcutl.ops.validate import validate_graph
from mcutl.tflite.builder import TFLiteBuilder, compute_padding, explicit_output_size


def _modes(size: int, k: int, stride: int, before: int, after: int) -> list[str]:
    """TFLite paddings ('VALID', 'SAME') equivalent to an explicit one on one axis."""
    out = explicit_output_size(size, k, stride, before, after)
    modes = []
    for mode in ("VALID", "SAME"):
        try:
            o, b, _ = compute_padding(mode, size, k, stride)
        except ValueError:
            continue
        if o == out and b == before:
            modes.append(mode)
    return modes


class LoweringContext:
    """What an op's ``lower_tflite`` writes into."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.builder = TFLiteBuilder()
        self.index: dict[str, int] = {}

    def tensor(self, name: str) -> int:
        """Index of IR tensor ``name``, added on first use with its data and params."""
        if name not in self.index:
            t = self.graph.tensors[name]
            q = t.quant
            self.index[name] = self.builder.add_tensor(
                name, t.shape, t.dtype, data=t.data,
                scale=None if q is None else q.scale,
                zero_point=None if q is None else q.zero_point,
                quantized_dimension=0 if q is None or q.axis is None else q.axis)
        return self.index[name]

    def const(self, name: str, data: np.ndarray, scale: np.ndarray | None,
              zero_point: np.ndarray | None, quantized_dimension: int = 0) -> int:
        """A constant stored under ``name`` in a TFLite-specific form (e.g. 1HWC weights)."""
        if name not in self.index:
            dtype = str(data.dtype)
            self.index[name] = self.builder.add_tensor(name, data.shape, dtype, data=data,
                                                       scale=scale, zero_point=zero_point,
                                                       quantized_dimension=quantized_dimension)
        return self.index[name]

    def op(self, op: str, inputs: list[int], outputs: list[int], **options: object) -> None:
        self.builder.add_operator(op, inputs, outputs, **options)

    def window_input(self, node: Node, x_name: str, kh: int, kw: int, sh: int, sw: int,
                     pad: tuple[int, int, int, int], pad_value: str | None = "zero_point"
                     ) -> tuple[int, str]:
        """The input tensor and padding mode of a windowed op with explicit ``pad``.

        SAME or VALID when one matches both axes; else an explicit PAD op (filling
        with the zero point, i.e. real 0) feeding a VALID op. ``pad_value`` None
        means zero-padding would change the result (pooling): raise instead.
        """
        _, h, w, c = self.graph.tensors[x_name].shape
        t, left, b, r = pad
        common = [m for m in _modes(h, kh, sh, t, b) if m in _modes(w, kw, sw, left, r)]
        if common:
            return self.tensor(x_name), common[0]
        if pad_value is None:
            raise UnsupportedOpError(node.op, node.name, f"padding {pad} is neither SAME nor "
                                     "VALID in TFLite, and padding with zeros would change it")
        x = self.graph.tensors[x_name]
        out = node.outputs[0]
        padded = self.builder.add_tensor(
            f"{out}/padded", (1, h + t + b, w + left + r, c), x.dtype,
            scale=None if x.quant is None else x.quant.scale,
            zero_point=None if x.quant is None else x.quant.zero_point)
        paddings = self.builder.add_constant_paddings(f"{out}/paddings", t, b, left, r)
        self.op("PAD", [self.tensor(x_name), paddings], [padded])
        return padded, "VALID"


def export_tflite(graph: Graph) -> bytes:
    """Serialise a (normally quantised) IR graph as a .tflite flatbuffer."""
    validate_graph(graph)
    ctx = LoweringContext(graph)
    inputs = [ctx.tensor(name) for name in graph.inputs]
    for node in graph.nodes:
        get_op(node.op, node).lower_tflite(node, ctx)
    outputs = [ctx.tensor(name) for name in graph.outputs]
    return ctx.builder.finish(inputs, outputs)
