"""The data a training method hands to the training-step compiler (`mcutl/train/`).

A method (Rep-Net now; last-layer, bias-only, ... later) turns a quantised backbone
into a `TrainableModel`: the frozen int8 backbone graph cut before its classifier,
the connector tensors where float side-network outputs are added, the side modules
as plain layer lists with their initial float32 parameters, and the new head.

Conventions (shared by the PyTorch reference and the generated C):
- Activations NHWC with batch 1: (1, H, W, C). Conv weights OHWI, I = C_in / groups.
- Connector i: the backbone's int8 tensor `connectors[i]` (scale s, zero point z) is
  dequantised, x = s * (q - z); the module output p_i is added, m_i = x + p_i; the
  backbone continues on quantise(m_i, s, z) (TFLite rounding: x / s in float32, ties
  away from zero, + z, saturated) and module i + 1 reads m_i (float).
- Module 0 reads the dequantised backbone input.
- The head reads the dequantised backbone output (1, C) and computes W x + b.
- Trainable parameters are float32; their order in `parameters()` is the order of
  the C parameter block, GET/SET params and the parameter digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph

#: Side-network layer kinds and their attrs:
#: - "avgpool":   k (kernel = stride, no padding, floor)                    no params
#: - "conv":      k, stride (1), pad (k // 2 each side), groups             weight (O,k,k,I/g)
#: - "groupnorm": groups, eps                                               gamma, beta (C,)
#: - "scale_shift":                                                         gamma, beta (C,)
#: - "relu":      (none)                                                    no params
#: - "resize":    size (H, W): nearest, src = floor(dst * in / out)         no params
LAYER_KINDS = ("avgpool", "conv", "groupnorm", "scale_shift", "relu", "resize")


@dataclass
class SideLayer:
    name: str  # unique, C-identifier friendly: "m0_conv1"
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)  # float32, trainable


@dataclass
class SideModule:
    index: int
    source: str  # backbone tensor whose float value it reads: graph input or connectors[i-1]
    target: str  # connectors[index]: where its output is added
    layers: list[SideLayer]


@dataclass
class TrainableModel:
    method: str  # "repnet"
    backbone: Graph  # quantised, cut before the classifier; one output: features (1, C) int8
    connectors: list[str]
    modules: list[SideModule]
    head_weight: np.ndarray  # (num_classes, C) float32
    head_bias: np.ndarray  # (num_classes,) float32
    spec: dict[str, Any] = field(default_factory=dict)  # the method's options, for reports

    @property
    def num_classes(self) -> int:
        return int(self.head_weight.shape[0])

    def parameters(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every trainable tensor, in the C parameter block's order."""
        out: list[tuple[str, np.ndarray]] = []
        for m in self.modules:
            for layer in m.layers:
                for key in sorted(layer.params):
                    out.append((f"{layer.name}.{key}", layer.params[key]))
        out.append(("head.weight", self.head_weight))
        out.append(("head.bias", self.head_bias))
        return out

    def parameter_count(self) -> int:
        return int(sum(a.size for _, a in self.parameters()))


def describe(tm: TrainableModel) -> dict[str, Any]:
    """The structure of a TrainableModel as JSON-able data (parameters go to an npz)."""
    return {
        "method": tm.method,
        "connectors": list(tm.connectors),
        "spec": tm.spec,
        "modules": [
            {
                "index": m.index,
                "source": m.source,
                "target": m.target,
                "layers": [
                    {"name": layer.name, "kind": layer.kind, "in_shape": list(layer.in_shape),
                     "out_shape": list(layer.out_shape), "attrs": layer.attrs,
                     "params": sorted(layer.params)}
                    for layer in m.layers
                ],
            }
            for m in tm.modules
        ],
    }


def restore(desc: dict[str, Any], backbone: Graph, params: dict[str, np.ndarray]
            ) -> TrainableModel:
    """Inverse of describe(): rebuild the model around a backbone with given parameters."""
    modules = []
    for m in desc["modules"]:
        layers = [
            SideLayer(
                name=ly["name"], kind=ly["kind"], in_shape=tuple(ly["in_shape"]),
                out_shape=tuple(ly["out_shape"]),
                attrs={k: (tuple(v) if isinstance(v, list) else v) for k, v in ly["attrs"].items()},
                params={p: np.asarray(params[f"{ly['name']}.{p}"], np.float32)
                        for p in ly["params"]},
            )
            for ly in m["layers"]
        ]
        modules.append(SideModule(m["index"], m["source"], m["target"], layers))
    return TrainableModel(
        method=desc["method"], backbone=backbone, connectors=list(desc["connectors"]),
        modules=modules, head_weight=np.asarray(params["head.weight"], np.float32),
        head_bias=np.asarray(params["head.bias"], np.float32), spec=desc.get("spec", {}),
    )
