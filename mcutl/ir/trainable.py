"""The trainable part of a training build: a graph of float ops beside the frozen int8
backbone. A training method (mcutl/methods/) builds it; the step compiler
(mcutl/train/step.py) and the PyTorch reference (mcutl/verify/reference.py) walk it.

Values are named. A node reads float values of this graph, or, for ops that read the
backbone (``dequantize``), a backbone int8 tensor; its output is a new float value, or,
for ops that write the backbone (``quantize``), the backbone tensor it overwrites right
after the backbone computed it (the backbone continues on the new int8 values).

Conventions (shared by the PyTorch reference and the generated C):
- Activations NHWC with batch 1: (1, H, W, C). Conv weights OHWI, I = C_in / groups.
- Nodes are listed in an order where every input is computed before it is read; the
  step runs each node as soon as the backbone tensors it reads exist.
- ``logits`` (1, K) is the value the softmax cross-entropy reads.
- Trainable parameters are float32, ``{node}.{key}``; their order in ``parameters()``
  is the order of trainable.npz and of the reference's parameter list (the C block's
  order is the order the step registers them: plan.json's ``params``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph


@dataclass
class TNode:
    name: str  # unique, C-identifier friendly: "m0_conv1"
    op: str  # a float op (mcutl/ops/f32)
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)  # float32, trainable


@dataclass
class TrainableModel:
    method: str
    backbone: Graph  # quantised, cut before the classifier; one output: features (1, C)
    nodes: list[TNode]
    shapes: dict[str, tuple[int, ...]]  # float value -> shape
    logits: str
    spec: dict[str, Any] = field(default_factory=dict)  # the method's options, for reports
    info: dict[str, Any] = field(default_factory=dict)  # what the method reports (JSON)

    @property
    def num_classes(self) -> int:
        return int(self.shapes[self.logits][-1])

    def node(self, name: str) -> TNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no trainable node {name!r}")

    def producer(self, value: str) -> TNode | None:
        return next((n for n in self.nodes if n.output == value), None)

    def parameters(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every trainable tensor, node by node, each node's in the
        order of its ``params`` dict."""
        return [(f"{n.name}.{k}", a) for n in self.nodes for k, a in n.params.items()]

    def parameter_count(self) -> int:
        return int(sum(a.size for _, a in self.parameters()))

    def shape_of(self, value: str) -> tuple[int, ...]:
        """A float value's shape, or a backbone tensor's."""
        if value in self.shapes:
            return self.shapes[value]
        return tuple(self.backbone.tensors[value].shape)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def describe(tm: TrainableModel) -> dict[str, Any]:
    """The structure of a TrainableModel as JSON-able data (parameters go to an npz)."""
    return {
        "method": tm.method,
        "logits": tm.logits,
        "spec": tm.spec,
        "info": tm.info,
        "shapes": {k: list(v) for k, v in tm.shapes.items()},
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "output": n.output,
                   "attrs": {k: _jsonable(v) for k, v in n.attrs.items()},
                   "params": list(n.params)} for n in tm.nodes],
    }


def restore(desc: dict[str, Any], backbone: Graph, params: dict[str, np.ndarray]
            ) -> TrainableModel:
    """Inverse of describe(): rebuild the model around a backbone with given parameters."""
    nodes = [TNode(n["name"], n["op"], list(n["inputs"]), n["output"],
                   {k: (tuple(v) if isinstance(v, list) else v) for k, v in n["attrs"].items()},
                   {p: np.asarray(params[f"{n['name']}.{p}"], np.float32) for p in n["params"]})
             for n in desc["nodes"]]
    return TrainableModel(desc["method"], backbone, nodes,
                          {k: tuple(v) for k, v in desc["shapes"].items()}, desc["logits"],
                          spec=desc.get("spec", {}), info=desc.get("info", {}))
