"""Fine-tune the last k blocks: float copies of the top ``k`` blocks of the backbone
(residual adds included), trained in full with a new head. The memory-hungry reference
of the Rep-Net paper's comparison: every weight of those blocks has a gradient, and the
activations their weight gradients read are saved.

The int8 backbone runs up to the input of the top blocks; that tensor is dequantised and
the rest of the network runs in float32 from the dequantised int8 weights and biases
(conv + bias, then its fused ReLU/ReLU6 as a separate node, residual add, global average
pool, reshape). Blocks as in ``common.top_block_start``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.methods.common import (
    MethodError,
    cut_classifier,
    linear_head_init,
    top_block_start,
)
from mcutl.methods.registry import Method, register
from mcutl.ops._ste import dequant_const
from mcutl.ops.validate import validate_graph


@dataclass
class FinetuneSpec:
    """Options of the fine-tune-the-last-blocks baseline."""

    k: int = field(default=1, metadata={"help": "train float copies of the top k blocks"})
    seed: int = field(default=0, metadata={"help": "seed of the head's initial weights"})

    def __post_init__(self) -> None:
        if self.k < 1:
            raise MethodError(f"invalid finetune-last-k spec: k must be >= 1, got {self.k}")


def _dequantised(g: Graph, name: str) -> np.ndarray:
    return dequant_const(g.tensors[name])


def _float_nodes(g: Graph, node: Node, src: list[str], shapes: dict[str, tuple[int, ...]]
                 ) -> list[TNode]:
    """The float copy of one frozen backbone node (reading float values ``src``)."""
    out = f"{node.name}_f"
    shapes[out] = tuple(g.tensors[node.outputs[0]].shape)
    act = str(node.attrs.get("act", "none"))
    if node.op == "conv2d":
        w = g.tensors[node.inputs[1]]
        kh, kw = int(w.shape[1]), int(w.shape[2])
        top, left, bottom, right = (int(v) for v in node.attrs["pad"])
        attrs: dict[str, Any] = {"k": (kh, kw), "stride": tuple(node.attrs["stride"]),
                                 "pad": (top, left), "groups": int(node.attrs["groups"])}
        if (bottom, right) != (top, left):
            attrs["pad4"] = (top, left, bottom, right)
        params = {"weight": _dequantised(g, node.inputs[1]),
                  "bias": _dequantised(g, node.inputs[2])}
        nodes = [TNode(node.name, "conv", list(src[:1]), out, attrs, params)]
    elif node.op == "add":
        nodes = [TNode(node.name, "add", list(src), out, {"inplace": False})]
    elif node.op == "global_avgpool":
        nodes = [TNode(node.name, "global_avgpool", list(src[:1]), out)]
    elif node.op == "reshape":
        nodes = [TNode(node.name, "reshape", list(src[:1]), out,
                       {"shape": tuple(g.tensors[node.outputs[0]].shape)})]
    else:
        raise MethodError(f"finetune-last-k cannot train a {node.op} node ({node.name!r}) in "
                          "float yet; use a smaller --k")
    if act != "none":
        a_out = f"{node.name}_{act}"
        shapes[a_out] = shapes[out]
        nodes.append(TNode(f"{node.name}_{act}", act, [out], a_out))
    return nodes


def build_finetune(backbone_q: Graph, num_classes: int, spec: FinetuneSpec | None = None,
                   cut: str | None = None) -> TrainableModel:
    spec = spec if spec is not None else FinetuneSpec()
    if not backbone_q.is_quantized:
        raise MethodError("the backbone must be quantised to int8 first")
    g = cut_classifier(backbone_q, cut)
    start = max(1, top_block_start(g, spec.k))
    t_in = g.nodes[start - 1].outputs[0]
    frozen = g.copy()
    frozen.outputs = [t_in]
    frozen.prune()
    validate_graph(frozen)
    x_f = f"{t_in}_in"
    shapes: dict[str, tuple[int, ...]] = {x_f: tuple(g.tensors[t_in].shape)}
    nodes = [TNode("blocks_input", "dequantize", [t_in], x_f,
                   {"comment": f"dequantise {t_in}, the input of the trained blocks"})]
    value = {t_in: x_f}
    for node in g.nodes[start:]:
        src = [value[i] for i in node.inputs if i and not g.tensors[i].is_const]
        if any(i not in value for i in node.inputs if i and not g.tensors[i].is_const):
            raise MethodError(f"finetune-last-k: node {node.name!r} reads a tensor computed "
                              "before the trained blocks (a skip across them); use another --k")
        new = _float_nodes(g, node, src, shapes)
        nodes += new
        value[node.outputs[0]] = new[-1].output
    feat = value[g.outputs[0]]
    c = int(shapes[feat][-1])
    w, b = linear_head_init(c, num_classes, spec.seed)
    nodes.append(TNode("head", "linear", [feat], "logits", {}, {"weight": w, "bias": b}))
    shapes["logits"] = (1, num_classes)
    return TrainableModel("finetune-last-k", frozen, nodes, shapes, "logits",
                          spec=asdict(spec), info={"from": t_in,
                                                   "blocks": [n.name for n in g.nodes[start:]]})


def _summary(tm: TrainableModel) -> str:
    return (f"finetune-last-k: float copies of {len(tm.info['blocks'])} layers after "
            f"{tm.info['from']} and a new head, {tm.parameter_count()} trainable parameters")



register(Method(
    name="finetune-last-k",
    title="fine-tune float copies of the last k blocks (residual adds included) and a new "
          "head: the memory-hungry reference",
    spec=FinetuneSpec,
    build=build_finetune,
    capability=1,
    summary=_summary,
    fit_advice=(("--k 1", {"k": 1}),),
    sizes=({"k": 2}, {"k": 1}),
))
