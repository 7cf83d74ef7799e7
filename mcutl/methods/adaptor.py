"""Adaptor: DA3-style (Yang et al., "DA3: Dynamic Additive Attention Adaption for Memory-
Efficient On-Device Multi-Domain Learning", 2022) small trainable branches beside the top
frozen blocks, and a new head.

For each of the top ``k`` blocks (a block runs from one bottleneck of the backbone to
the next, see ``common.bottlenecks``) a branch reads the block's input and its output
is added to the block's output, which the backbone then continues on (requantised):

    [avgpool to the output's size]  conv 1x1 (C_in -> r)  ReLU  conv 1x1 (r -> C_out)
    scale_shift (gamma 0: the branch starts at exactly 0)  [nearest resize]

with r = round_up(C_out / reduction, 8). A branch reads the float sum of the branch
below it, so gradients reach every branch through its successors and the frozen layers
(1-bit masks). Departure from DA3: its attention (a sigmoid gate computed from the
input) is replaced by the zero-initialised per-channel scale; the branch is additive
as in DA3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.methods.common import (
    MethodError,
    bottlenecks,
    cut_classifier,
    he_normal,
    head_nodes,
    overwrite_nodes,
    round_up,
)
from mcutl.methods.registry import Method, register


@dataclass
class AdaptorSpec:
    """Options of the DA3-style adaptor baseline."""

    k: int = field(default=2, metadata={"help": "a branch beside each of the top k blocks"})
    reduction: int = field(default=4, metadata={"help": "branch width = C_out / reduction "
                                                        "(rounded up to 8)"})
    seed: int = field(default=0, metadata={"help": "seed of the initial weights"})

    def __post_init__(self) -> None:
        if self.k < 1 or self.reduction < 1:
            raise MethodError(f"invalid adaptor spec: k and reduction must be >= 1, got "
                              f"k={self.k}, reduction={self.reduction}")


def _branch(i: int, source: str, x: tuple[int, ...], y: tuple[int, ...], spec: AdaptorSpec,
            rng: np.random.Generator) -> tuple[list[TNode], dict[str, tuple[int, ...]]]:
    nodes: list[TNode] = []
    shapes: dict[str, tuple[int, ...]] = {}

    def add(kind: str, shape: tuple[int, ...], attrs: dict[str, Any],
            params: dict[str, np.ndarray] | None = None) -> None:
        name = f"a{i}_{kind}{len(nodes)}"
        nodes.append(TNode(name, kind, [nodes[-1].output if nodes else source],
                           f"{name}_out", attrs, params or {}))
        shapes[f"{name}_out"] = shape

    shape = x
    kp = tuple(a // b if b and a % b == 0 and a > b else 1 for a, b in zip(x[1:3], y[1:3],
                                                                            strict=True))
    if kp != (1, 1):
        shape = (1, x[1] // kp[0], x[2] // kp[1], x[3])
        add("avgpool", shape, {"k": kp})
    r = max(8, round_up(y[3] / spec.reduction, 8))
    one = {"k": 1, "stride": 1, "pad": 0, "groups": 1}
    add("conv", shape[:3] + (r,), one, {"weight": he_normal(rng, (r, 1, 1, shape[3]))})
    add("relu", shape[:3] + (r,), {})
    add("conv", shape[:3] + (y[3],), one, {"weight": he_normal(rng, (y[3], 1, 1, r))})
    add("scale_shift", shape[:3] + (y[3],), {},
        {"beta": np.zeros(y[3], np.float32), "gamma": np.zeros(y[3], np.float32)})
    if shape[1:3] != y[1:3]:
        add("resize", y, {"size": (y[1], y[2]), "mode": "nearest"})
    return nodes, shapes


def build_adaptor(backbone_q: Graph, num_classes: int, spec: AdaptorSpec | None = None,
                  cut: str | None = None) -> TrainableModel:
    spec = spec if spec is not None else AdaptorSpec()
    if not backbone_q.is_quantized:
        raise MethodError("the backbone must be quantised to int8 first")
    g = cut_classifier(backbone_q, cut)
    _, _, ends = bottlenecks(g)
    if not ends:
        raise MethodError("adaptor: the backbone has no block boundary a gradient can "
                          "reach (no 4-D bottleneck map after its last max pool)")
    outs = ends[-spec.k:]
    first_in = ends[-spec.k - 1] if len(ends) > spec.k else g.inputs[0]
    rng = np.random.default_rng(spec.seed)
    x_f = f"in_{first_in}"
    nodes = [TNode("adaptor_input", "dequantize", [first_in], x_f,
                   {"comment": f"dequantise {first_in} for adaptor 0"})]
    shapes: dict[str, tuple[int, ...]] = {x_f: tuple(g.tensors[first_in].shape)}
    source = x_f
    for i, out in enumerate(outs):
        y = tuple(g.tensors[out].shape)
        b_nodes, b_shapes = _branch(i, source, shapes[source], y, spec, rng)
        nodes += b_nodes
        shapes.update(b_shapes)
        nodes += overwrite_nodes(f"a{i}", out, b_nodes[-1].output, [], f"adaptor {i}",
                                 f"adaptor {i}'s output")
        shapes[f"m_{out}"] = shapes[f"sum_{out}"] = y
        source = f"sum_{out}"
    h_nodes, h_shapes = head_nodes(g, num_classes, spec.seed)
    return TrainableModel("adaptor", g, nodes + h_nodes, {**shapes, **h_shapes}, "logits",
                          spec=asdict(spec), info={"blocks": outs, "input": first_in})


def _summary(tm: TrainableModel) -> str:
    return (f"adaptor: branches beside the top {len(tm.info['blocks'])} blocks "
            f"(outputs {', '.join(tm.info['blocks'])}) and a new head, "
            f"{tm.parameter_count()} trainable parameters")



register(Method(
    name="adaptor",
    title="DA3-style: small additive branches beside the top k frozen blocks, and a new head",
    spec=AdaptorSpec,
    build=build_adaptor,
    capability=2,
    summary=_summary,
    fit_advice=(("--k 1", {"k": 1}), ("--reduction 8", {"reduction": 8})),
    sizes=({"k": 2}, {"k": 1}, {"k": 1, "reduction": 8}),
))
