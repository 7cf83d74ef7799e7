"""BN-shift: MobileTL-style (Chiang et al., AAAI 2023) per-channel shifts in the top
blocks, and a new head.

BatchNorm is folded into the frozen int8 convs at import, so the norm's trainable shift
is re-introduced as a per-channel float add on the output of every conv2d of the top
``k`` blocks (blocks: the stretches between the backbone's boundaries, the tensors no
skip connection crosses). Each shifted tensor is dequantised, shifted and requantised
for the backbone; the gradient crosses the frozen layers above the first shift with
1-bit activation masks (MobileTL's binary masks), and only the top ``k`` blocks get one.

Departure from MobileTL: the int8 kernels fuse the activation into the conv, so on a
conv with ReLU/ReLU6 the shift comes after the activation, not before it (as a BN
shift would); on the linear projection convs of inverted residuals it is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.methods.common import (
    MethodError,
    cut_classifier,
    head_nodes,
    overwrite_nodes,
    top_block_start,
)
from mcutl.methods.registry import Method, register


@dataclass
class BnShiftSpec:
    """Options of the BN-shift baseline."""

    k: int = field(default=2, metadata={"help": "shift the convs of the top k blocks"})
    seed: int = field(default=0, metadata={"help": "seed of the head's initial weights"})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise MethodError(f"invalid bn-shift spec: k must be >= 1, got {self.k}")


def build_bnshift(backbone_q: Graph, num_classes: int, spec: BnShiftSpec | None = None,
                  cut: str | None = None) -> TrainableModel:
    spec = spec if spec is not None else BnShiftSpec()
    if not backbone_q.is_quantized:
        raise MethodError("the backbone must be quantised to int8 first")
    g = cut_classifier(backbone_q, cut)
    first = top_block_start(g, spec.k)
    convs = [n for n in g.nodes[first:] if n.op == "conv2d"
             and len(g.tensors[n.outputs[0]].shape) == 4]
    if not convs:
        raise MethodError(f"bn-shift: no conv2d in the top {spec.k} blocks (after node "
                          f"{g.nodes[first - 1].name if first else 'input'!r}); raise --k")
    nodes: list[TNode] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for i, conv in enumerate(convs):
        t = conv.outputs[0]
        shape = tuple(g.tensors[t].shape)
        shift = TNode(f"s{i}_shift", "shift", [f"m_{t}"], f"s{i}_shift_out", {},
                      {"beta": np.zeros(shape[-1], np.float32)})
        nodes += overwrite_nodes(f"s{i}", t, None, [shift], f"shift {i} ({conv.name})")
        shapes[f"m_{t}"] = shapes[shift.output] = shape
    h_nodes, h_shapes = head_nodes(g, num_classes, spec.seed)
    return TrainableModel("bn-shift", g, nodes + h_nodes, {**shapes, **h_shapes}, "logits",
                          spec=asdict(spec), info={"shifted": [c.outputs[0] for c in convs]})


def _summary(tm: TrainableModel) -> str:
    return (f"bn-shift: per-channel shifts after {len(tm.info['shifted'])} frozen convs "
            f"of the top {tm.spec['k']} blocks and a new head, {tm.parameter_count()} "
            "trainable parameters")



register(Method(
    name="bn-shift",
    title="MobileTL-style: per-channel shifts after the frozen convs of the top k blocks, "
          "binary-mask backward, and a new head",
    spec=BnShiftSpec,
    build=build_bnshift,
    capability=3,
    summary=_summary,
    fit_advice=(("--k 1", {"k": 1}),),
    sizes=({"k": 3}, {"k": 2}, {"k": 1}),
))
