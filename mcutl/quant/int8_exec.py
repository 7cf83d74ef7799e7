"""Run a quantised IR graph in int8 exactly as the generated C does (numpy, batch 1).

Each node runs its op's ``reference_int8`` (mcutl.quant.int8_ref kernels with the
integer params the op's ``lower_c`` writes), so the result equals the C kernels and
tflite-runtime's reference kernels bit for bit. A reshape is a view.

``hook(tensor_name, value) -> value`` is called for the graph input and for every
tensor as it is produced; what it returns replaces the tensor for the rest of the
run (Rep-Net connectors are applied that way: dequantise, add, requantise).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ops import get_op

Hook = Callable[[str, np.ndarray], np.ndarray]


class Int8ExecError(ValueError):
    """The graph or the input cannot be run in int8 (the message says which and why)."""


def run_int8(graph: Graph, x_q: np.ndarray, hook: Hook | None = None) -> dict[str, np.ndarray]:
    """Every activation of the quantised ``graph`` (name -> int8 array) for the int8 NHWC
    batch-1 input ``x_q`` (shape = the graph input's shape)."""
    if len(graph.inputs) != 1:
        raise Int8ExecError(f"run_int8 runs single-input graphs; this one has inputs "
                            f"{graph.inputs}")
    x_name = graph.inputs[0]
    spec = graph.tensors[x_name]
    x = np.asarray(x_q)
    if x.dtype != np.int8 or tuple(x.shape) != tuple(spec.shape):
        raise Int8ExecError(f"input {x_name!r} must be int8 of shape {spec.shape}, got "
                            f"{x.dtype} {x.shape}")
    if not graph.is_quantized:
        raise Int8ExecError("the graph is not quantised (every activation must be int8); "
                            "quantise it first (mcutl.compile.load_and_quantize)")
    values: dict[str, np.ndarray] = {}
    values[x_name] = _checked(hook, x_name, x, spec.shape) if hook else x
    for node in graph.nodes:
        args = [values.get(i) for i in node.inputs]
        for i, a in zip(node.inputs, args, strict=True):
            if i and a is None and not graph.tensors[i].is_const:
                raise Int8ExecError(f"node {node.name!r} reads {i!r} before it is computed")
        outs = get_op(node.op, node).reference_int8(node, graph, args)
        for name, y in zip(node.outputs, outs, strict=True):
            shape = graph.tensors[name].shape
            if y.dtype != np.int8 or tuple(y.shape) != tuple(shape):
                raise Int8ExecError(f"node {node.name!r} produced {y.dtype} {y.shape} for "
                                    f"{name!r}, expected int8 {shape}")
            values[name] = _checked(hook, name, y, shape) if hook else y
    return values


def _checked(hook: Hook, name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(hook(name, value))
    if out.dtype != np.int8 or tuple(out.shape) != tuple(shape):
        raise Int8ExecError(f"hook returned {out.dtype} {out.shape} for {name!r}, expected "
                            f"int8 {shape}")
    return out


def run_int8_output(graph: Graph, x_q: np.ndarray) -> np.ndarray:
    """The graph's (first) output for one int8 NHWC input."""
    return run_int8(graph, x_q)[graph.outputs[0]]
