"""What every training method needs: the backbone cut before its classifier, and a
new linear head on its features (a ``dequantize`` of the feature tensor and a
``linear`` node producing the logits)."""

from __future__ import annotations

import difflib
import math

import numpy as np

from mcutl.errors import McutlError
from mcutl.ir.graph import Graph, Node, Tensor
from mcutl.ir.trainable import TNode
from mcutl.ops import get_op
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
    view; cut after a pooling op if you want pooled features). ``NAME:pool`` cuts at
    NAME and averages its map over H and W (an int8 global average pool, the input's
    quantisation, as every pool keeps it): a head on C pooled features instead of
    H x W x C flattened ones, e.g. before a wide last layer that costs more memory to
    train through than it is worth.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise MethodError(f"training needs a single-input, single-output backbone; this one "
                          f"has inputs {graph.inputs} and outputs {graph.outputs}")
    g = graph.copy()
    pool = cut is not None and cut.endswith(":pool")
    if pool:
        assert cut is not None
        cut = cut[: -len(":pool")]
    feat = _resolve_cut(g, cut) if cut is not None else _auto_features(g)
    g.outputs = [feat]
    g.prune()
    t = g.tensors[feat]
    if pool:
        if len(t.shape) != 4:
            raise MethodError(f"--cut {cut}:pool: {feat} has shape {t.shape}, not a map "
                              "(1, H, W, C) to pool; drop ':pool'")
        pooled = g.add_tensor(Tensor(g.unique_name(f"{feat}_pool"), (1, 1, 1, t.shape[3]),
                                     t.dtype, None, t.quant))
        g.nodes.append(Node(g.unique_name("features_pool"), "global_avgpool", [feat],
                            [pooled.name], {}))
        g.outputs = [pooled.name]
        feat, t = pooled.name, pooled
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
        hint = (f" Did you mean: {', '.join(close)}?" if close else
                f" Its nodes: {', '.join(n.name for n in g.nodes[:12])}"
                + (", ..." if len(g.nodes) > 12 else "") + " (see `mcutl plan` or report.md)")
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
    """nn.Linear's default distribution, U(-1/sqrt(C), 1/sqrt(C)) for weight and bias,
    drawn with numpy from ``seed``: the same bits on every machine (torch's uniform_
    rounds differently per CPU capability, which changed the firmware from one machine
    to the next)."""
    rng = np.random.default_rng([seed, 0x4EAD])
    bound = 1.0 / np.sqrt(c)
    w = rng.uniform(-bound, bound, (num_classes, c)).astype(np.float32)
    b = rng.uniform(-bound, bound, num_classes).astype(np.float32)
    return w, b


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


# ---------------------------------------------------------------------------- graph

def boundaries(graph: Graph) -> list[str]:
    """Activations every input-to-output path passes through (no residual skip crosses
    them): in node order, the tensors that are the only live activation right after
    their producer. Excludes the graph input and outputs."""
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    last_use: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i and not graph.tensors[i].is_const:
                last_use[i] = order[n.name]
    end = len(graph.nodes)
    for o in graph.outputs:
        last_use[o] = end
    produced_at = {graph.inputs[0]: -1} if graph.inputs else {}
    for n in graph.nodes:
        for o in n.outputs:
            produced_at[o] = order[n.name]
    out = []
    for n in graph.nodes:
        p = order[n.name]
        live = [t for t, at in produced_at.items() if at <= p and last_use.get(t, -2) > p]
        if len(live) == 1 and live[0] in n.outputs and live[0] not in graph.outputs:
            out.append(live[0])
    return out


def first_crossable_index(graph: Graph) -> int:
    """Index of the first node from which on every node can be crossed by the backward."""
    first = 0
    for k, n in enumerate(graph.nodes):
        if not get_op(n.op, n).crosses_backward(n, graph):
            first = k + 1
    return first


def bottlenecks(graph: Graph) -> tuple[list[str], list[str], list[str]]:
    """(boundaries a gradient can reach, those that are 4-D maps with H*W > 1, and of
    those the bottlenecks: a candidate is dropped when the next candidate with another
    channel count has fewer channels, i.e. it lies inside an expansion such as the 1x1
    expand / depthwise outputs of an inverted residual block). The bottlenecks are the
    block outputs; all in graph order."""
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    at = {o: order[n.name] for n in graph.nodes for o in n.outputs}
    start = first_crossable_index(graph)
    bounds = [t for t in boundaries(graph) if at[t] >= start]
    shape = {t: graph.tensors[t].shape for t in bounds}
    cands = [t for t in bounds if len(shape[t]) == 4 and shape[t][1] * shape[t][2] > 1]
    narrow = []
    for k, t in enumerate(cands):
        c = shape[t][3]
        nxt = next((shape[u][3] for u in cands[k + 1:] if shape[u][3] != c), None)
        if nxt is None or nxt > c:
            narrow.append(t)
    return bounds, cands, narrow


def top_block_start(g: Graph, k: int) -> int:
    """Index of the first node of the top ``k`` blocks: after the output of the block
    below them (blocks end at the backbone's bottlenecks, the tensors no skip crosses
    between expansions; what follows the last one, e.g. a 1x1 feature conv, belongs to
    the top block), clamped to the part of the backbone a gradient can cross."""
    order = {n.name: i for i, n in enumerate(g.nodes)}
    at = {o: order[n.name] for n in g.nodes for o in n.outputs}
    _, _, ends = bottlenecks(g)
    if len(ends) > k:
        return at[ends[-k - 1]] + 1
    return first_crossable_index(g)


# ---------------------------------------------------------------------------- layers

GN_CHANNELS_PER_GROUP = 8


def round_up(v: float, m: int) -> int:
    return int(math.ceil(v / m - 1e-9)) * m


def group_norm_groups(c: int) -> int:
    """Groups of ~8 channels: the largest divisor of c not above c // 8 (at least 1)."""
    g = max(1, c // GN_CHANNELS_PER_GROUP)
    while c % g:
        g -= 1
    return g


def he_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def overwrite_nodes(prefix: str, tensor: str, branch: str | None, between: list[TNode],
                    place: str, add_what: str = "") -> list[TNode]:
    """Float nodes that change backbone tensor ``tensor`` right after it is computed:
    ``m_{tensor}`` = dequantize(tensor); the nodes ``between`` (reading ``m_{tensor}``,
    may be empty); ``+ branch`` if given (in place, ``sum_{tensor}``); quantize the
    result back into ``tensor`` (a PROBE point). ``place`` and ``add_what`` word the
    comments of the generated C."""
    m = f"m_{tensor}"
    nodes = [TNode(f"{prefix}_dequantize", "dequantize", [tensor], m,
                   {"comment": f"{place}: dequantise {tensor}"}), *between]
    value = nodes[-1].output
    if branch is not None:
        nodes.append(TNode(f"{prefix}_add", "add", [value, branch], f"sum_{tensor}",
                           {"comment": f"{place}: add {add_what or branch}"}))
        value = f"sum_{tensor}"
    what = "the sum" if branch is not None else "it"
    nodes.append(TNode(f"{prefix}_quantize", "quantize", [value], tensor,
                       {"comment": f"{place}: requantise {what} for the backbone"}))
    return nodes
