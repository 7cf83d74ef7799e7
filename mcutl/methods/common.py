"""What every training method needs: the backbone cut before its classifier, and a
new linear head on its features (a ``dequantize`` of the feature tensor and a
``linear`` node producing the logits)."""

from __future__ import annotations

import difflib

import numpy as np

from mcutl.errors import McutlError
from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.ir.trainable import TNode
from mcutl.ops.validate import validate_graph


class MethodError(McutlError):
    """A method cannot be built on this backbone as asked (the message says why and how)."""


class ClassifierNotFoundError(MethodError):
    """No trailing linear classifier to replace, and no --cut given."""


def cut_classifier(graph: Graph, cut: str | None = None) -> Graph:
    """A copy of ``graph`` whose single output is the feature tensor, shape (1, C).

    Without ``cut``: the graph must end in a linear classifier (possibly followed by
    reshapes); it is removed and its input becomes the output. ``cut`` (a node name: its
    output; or a tensor name) says where the feature extractor ends instead; every node
    after it is dropped. A feature tensor that is not 2-D is flattened by a reshape (a
    view; cut after a pooling op if you want pooled features).
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise MethodError(f"training needs a single-input, single-output backbone; this one "
                          f"has inputs {graph.inputs} and outputs {graph.outputs}")
    g = graph.copy()
    feat = _resolve_cut(g, cut) if cut is not None else _auto_features(g)
    g.outputs = [feat]
    g.prune()
    t = g.tensors[feat]
    if len(t.shape) != 2 or t.shape[0] != 1:
        flat = g.add_tensor(Tensor(g.unique_name(f"{feat}_flat"), (1, t.size), t.dtype,
                                   None, t.quant))
        g.nodes.append(Node(g.unique_name("features_flatten"), "reshape", [feat], [flat.name],
                            {"shape": (1, t.size)}))
        g.outputs = [flat.name]
    validate_graph(g)
    return g


def _resolve_cut(g: Graph, cut: str) -> str:
    node_names = {n.name: n for n in g.nodes}
    if cut in node_names:
        name = node_names[cut].outputs[0]
    elif cut in g.tensors:
        name = cut
    else:
        known = [n.name for n in g.nodes] + g.activations()
        close = difflib.get_close_matches(cut, known, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise MethodError(f"--cut {cut!r} names no node or tensor of the backbone.{hint}")
    t = g.tensors[name]
    if t.is_const:
        raise MethodError(f"--cut {cut!r} is a constant ({name}); name an activation")
    if name in g.inputs:
        raise MethodError(f"--cut {cut!r} is the graph input; the feature extractor must "
                          "contain at least one layer")
    return name


def _auto_features(g: Graph) -> str:
    out = g.outputs[0]
    t = out
    prod = g.producer(t)
    while prod is not None and prod.op == "reshape":
        t = prod.inputs[0]
        prod = g.producer(t)
    if prod is not None and prod.op == "linear":
        return prod.inputs[0]
    what = "the graph input" if prod is None else f"{prod.op} node {prod.name!r}"
    tail = [n.name for n in g.nodes[-4:]]
    raise ClassifierNotFoundError(
        f"cannot find the classifier to replace: the backbone's output {out!r} comes from "
        f"{what}, not from a linear layer. Say where the features end with --cut NODE "
        f"(a node or tensor name; the last nodes are {', '.join(tail)})")



def linear_head_init(c: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch nn.Linear's default init (U(+-1/sqrt(C)) via kaiming_uniform) from ``seed``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = torch.nn.Linear(c, num_classes)
    return (lin.weight.detach().numpy().astype(np.float32).copy(),
            lin.bias.detach().numpy().astype(np.float32).copy())


def head_nodes(g: Graph, num_classes: int, seed: int) -> tuple[list[TNode],
                                                                dict[str, tuple[int, ...]]]:
    """The features of cut backbone ``g`` dequantised (``features_f``) and a new linear
    head (node ``head``) -> ``logits`` (1, num_classes)."""
    if num_classes < 1:
        raise MethodError(f"num_classes must be >= 1, got {num_classes}")
    feat = g.outputs[0]
    c = int(g.tensors[feat].shape[1])
    w, b = linear_head_init(c, num_classes, seed)
    nodes = [TNode("features_dequantize", "dequantize", [feat], "features_f",
                   {"comment": "dequantise the backbone features"}),
             TNode("head", "linear", ["features_f"], "logits", {},
                   {"weight": w, "bias": b})]
    return nodes, {"features_f": (1, c), "logits": (1, num_classes)}


def classifier_head(graph: Graph, num_classes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The backbone's own classifier, dequantised, if it is a (num_classes, C) linear layer
    at the graph output: a head that starts where the pre-trained model was."""
    out = graph.outputs[0]
    node = graph.producer(out)
    if node is None or len(node.inputs) != 3:
        return None
    w, b = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
    x = graph.tensors[node.inputs[0]]
    if (w.data is None or b.data is None or w.quant is None or x.quant is None
            or len(w.shape) != 2 or w.shape[0] != num_classes):
        return None
    s_w = np.asarray(w.quant.scale, np.float32).reshape(-1, 1)
    weight = (s_w * w.data.astype(np.float32)).astype(np.float32)
    bias = (b.data.astype(np.float64) * float(x.quant.scale[0]) * s_w.reshape(-1)).astype(
        np.float32)
    return weight, bias
