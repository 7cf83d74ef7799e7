"""Rep-Net (Yang et al., CVPR 2022) on a frozen int8 backbone: connectors and side modules.

``build_repnet`` turns a quantised backbone into a ``TrainableModel``
(mcutl/methods/model.py): the backbone cut before its classifier, the connector
tensors (``find_connectors``), one side module per connector and a new linear head.
Defaults follow shared/notes/repnet.md, "good defaults on an MCU".

Module i (i = 0 reads the dequantised graph input, i > 0 reads m_{i-1}, the float sum
at connector i-1) is the layer list

    avgpool(d)  conv kxk (groups g, no bias)  norm  relu  conv 1x1 (-> C_conn)  norm  resize

- ``d`` = ``first_pool`` for module 0, ``pool`` otherwise; kernel = stride, floor.
  Per axis: an axis that ``d`` would shrink below 1 (e.g. the unit height of a 1-D
  signal) is not pooled; the layer is omitted if no axis is pooled.
- conv kxk: ``k`` = ``kernel`` on every axis longer than 1 and 1 on unit axes (a 1-D
  signal gets 1 x k kernels), stride 1, zero padding k // 2; mid channels =
  round_up(C_in * width, 8) (at least 8); g = ``groups`` (1 for module 0), 1 when it
  does not divide both C_in and the mid channels. He-normal init, std sqrt(2 / fan_in).
- norm: 'groupnorm' (8 channels per group: groups = the largest divisor of C not above
  C // 8, at least 1; gamma 1, beta 0) or 'scale_shift' (gamma 1, beta 0). The LAST
  norm's gamma is 0, so every module outputs exactly 0 at first and training starts
  at the pre-trained backbone.
- resize: nearest, src = floor(dst * in / out) per axis, to the connector's (H, W);
  omitted when the sizes already agree (it may up- or down-sample by any ratio).

Layer attrs extend model.py's conventions: ``k`` and conv ``pad`` are an int when the
same on both axes, else an (h, w) pair (only for maps with a unit axis). Names are
``m{i}_{kind}{j}`` with j the layer's position in its module.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.methods.common import (  # noqa: F401  (re-exported)
    ClassifierNotFoundError,
    MethodError,
    bottlenecks,
    boundaries,
    cut_classifier,
    first_crossable_index,
    group_norm_groups,
    he_normal,
    head_nodes,
    overwrite_nodes,
    round_up,
)
from mcutl.methods.registry import Method, register
from mcutl.ops import get_op

NORMS = ("groupnorm", "scale_shift")


class RepNetError(MethodError):
    """Rep-Net cannot be built on this backbone as asked (the message says why and how)."""


class ConnectorError(RepNetError):
    """No usable connector tensor, or an explicit stage list that cannot be used."""


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class RepNetSpec:
    """Rep-Net options (defaults: shared/notes/repnet.md, 'good defaults on an MCU')."""

    width: float = _opt(0.5, "side network width: mid channels = round_up(C_in * width, 8)")
    kernel: int = _opt(3, "kernel of the side modules' conv (odd)")
    groups: int = _opt(2, "groups of the side modules' conv (module 0: 1)")
    first_pool: int = _opt(4, "average pooling of the raw input before module 0")
    pool: int = _opt(2, "average pooling of the other modules' inputs")
    norm: str = _opt("groupnorm", "norm of the side modules", choices=NORMS)
    eps: float = _opt(1e-5, "group norm epsilon")
    resize: str = _opt("nearest", "resize of module outputs to the connector", cli=False)
    stages: list[str] | None = _opt(None, "connector tensors, comma-separated (default: "
                                          "automatic, one per stage)")
    seed: int = _opt(0, "seed of the side network's and head's initial weights")

    def __post_init__(self) -> None:
        problems = []
        if not self.width > 0:
            problems.append(f"width must be > 0, got {self.width}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            problems.append(f"kernel must be odd and >= 1, got {self.kernel}")
        if self.groups < 1 or self.first_pool < 1 or self.pool < 1:
            problems.append("groups, first_pool and pool must be >= 1")
        if self.norm not in NORMS:
            problems.append(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.resize != "nearest":
            problems.append(f"resize must be 'nearest', got {self.resize!r}")
        if not self.eps > 0:
            problems.append(f"eps must be > 0, got {self.eps}")
        if problems:
            raise RepNetError("invalid Rep-Net spec: " + "; ".join(problems))


def as_pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A layer's ``k`` / ``pad`` attr as (h, w) (an int means the same on both axes)."""
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _short(pair: tuple[int, int]) -> int | tuple[int, int]:
    return pair[0] if pair[0] == pair[1] else pair


# ---------------------------------------------------------------------------- connectors

def _pooled_hw(shape: tuple[int, ...], d: int) -> tuple[int, int]:
    return tuple(s // d if d > 1 and s // d >= 1 else s for s in shape[1:3])  # type: ignore[return-value]


def find_connectors(graph: Graph, *, first_pool: int = 4) -> list[str]:
    """Connector tensors (Rep-Net stages) of a cut backbone ``graph``, in graph order.

    The rule (each step filters the previous list):

    1. Candidates: ``boundaries`` (no skip crosses them), 4-D with H*W > 1 (not the
       pooled or flattened features), produced at or after the last node the
       backward cannot cross (e.g. a max pool).
    2. Bottlenecks only: drop a candidate when the next candidate with a different
       channel count has fewer channels (it is inside an expansion, e.g. the 1x1
       expand / depthwise outputs of an inverted residual block).
    3. Stage changes: keep a candidate whose (H, W) or C differs from the previous kept
       one (the first is compared with the graph input): the output of the first block
       of each stage, as in the authors' code.
    4. Frozen tail: drop the last one if it only changes the width at the previous
       stage's resolution and no layer with weights follows it (the final 1x1
       'feature mix' conv before global pooling; the paper's last sum goes through it).
    5. Memory: drop candidates larger than module 0's map (the input pooled by
       ``first_pool``): the float gradient flows back through the frozen backbone down
       to connector 0, and a connector above that map would also need an upsampled
       module output.

    If nothing survives, the deepest candidate of step 3 (else of step 1, else any
    boundary before the features) is the single connector; ConnectorError if there is
    none. TinyMBV2 (28x28): [7x7x24, 4x4x32]; TinyIMU1D (1x100): [1x25x32].
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConnectorError("find_connectors needs a single-input, single-output graph")
    x = graph.tensors[graph.inputs[0]]
    if len(x.shape) != 4:
        raise ConnectorError(f"Rep-Net side modules need a 4-D NHWC input; the graph input "
                             f"{x.name!r} has shape {x.shape}")
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    at = {o: order[n.name] for n in graph.nodes for o in n.outputs}
    bounds, cands, narrow = bottlenecks(graph)
    shape = {t: graph.tensors[t].shape for t in bounds}
    # 3. stage changes
    stages: list[str] = []
    prev = x.shape
    for t in narrow:
        s = shape[t]
        if s[1:3] != prev[1:3] or s[3] != prev[3]:
            stages.append(t)
            prev = s
    kept = list(stages)
    # 4. frozen tail
    if kept:
        last = kept[-1]
        before = graph.tensors[kept[-2]].shape if len(kept) > 1 else x.shape
        weighted_after = any(
            any(i and graph.tensors[i].is_const for i in n.inputs)
            for n in graph.nodes[at[last] + 1:])
        if shape[last][1:3] == before[1:3] and not weighted_after:
            kept.pop()
    # 5. memory
    ph, pw = _pooled_hw(x.shape, first_pool)
    kept = [t for t in kept if shape[t][1] <= ph and shape[t][2] <= pw]
    if kept:
        return kept
    for fallback in (stages, cands, [t for t in bounds if len(shape[t]) == 4]):
        if fallback:
            return [fallback[-1]]
    raise ConnectorError(
        "no tensor of the backbone can take a Rep-Net connector: none lies between the "
        "input and the features on every path, after the last layer the backward cannot "
        "cross. Give the stages explicitly (RepNetSpec.stages) or cut the backbone later.")


def check_connectors(graph: Graph, connectors: list[str]) -> None:
    """Explicit stages must be 4-D int8 activations strictly between input and features,
    in graph order, with only crossable nodes after the first (ConnectorError if not)."""
    if not connectors:
        raise ConnectorError("the stage list is empty; give at least one connector tensor")
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    at = {o: order[n.name] for n in graph.nodes for o in n.outputs}
    prev = -1
    for c in connectors:
        if c not in at:
            known = [t for t in graph.activations() if t not in graph.inputs]
            close = difflib.get_close_matches(c, known, n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConnectorError(f"stage {c!r} is not an activation computed by the "
                                 f"backbone.{hint}")
        if c in graph.outputs:
            raise ConnectorError(f"stage {c!r} is the feature output; connect before it")
        if len(graph.tensors[c].shape) != 4:
            raise ConnectorError(f"stage {c!r} has shape {graph.tensors[c].shape}; "
                                 "connectors must be 4-D NHWC maps")
        if at[c] <= prev:
            raise ConnectorError(f"stages must be in graph order and distinct; {c!r} comes "
                                 "before the previous one")
        prev = at[c]
    for n in graph.nodes[at[connectors[0]] + 1:]:
        if not get_op(n.op, n).crosses_backward(n, graph):
            raise ConnectorError(f"node {n.name!r} ({n.op}) after connector "
                                 f"{connectors[0]!r} cannot be crossed by the backward; "
                                 "place every connector after it")


# ---------------------------------------------------------------------------- modules

def _norm(name: str, spec: RepNetSpec, src: str, shape: tuple[int, ...],
          gamma: float) -> TNode:
    c = shape[3]
    params = {"beta": np.zeros(c, np.float32), "gamma": np.full(c, gamma, np.float32)}
    if spec.norm == "groupnorm":
        attrs = {"groups": group_norm_groups(c), "eps": float(spec.eps)}
        return TNode(name, "groupnorm", [src], f"{name}_out", attrs, params)
    return TNode(name, "scale_shift", [src], f"{name}_out", {}, params)


def module_nodes(index: int, source: str, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...], spec: RepNetSpec, rng: np.random.Generator
                 ) -> tuple[list[TNode], dict[str, tuple[int, ...]]]:
    """The side layers of module ``index`` reading float value ``source`` (NHWC
    ``in_shape``) up to ``out_shape``; returns the nodes and their output shapes."""
    nodes: list[TNode] = []
    shapes: dict[str, tuple[int, ...]] = {}

    def add(kind: str, op: str, shape: tuple[int, ...], attrs: dict[str, Any],
            params: dict[str, np.ndarray] | None = None) -> None:
        name = f"m{index}_{kind}{len(nodes)}"
        src = nodes[-1].output if nodes else source
        nodes.append(TNode(name, op, [src], f"{name}_out", attrs, params or {}))
        shapes[f"{name}_out"] = shape

    shape = tuple(int(v) for v in in_shape)
    d = spec.first_pool if index == 0 else spec.pool
    kp = tuple(d if d > 1 and s // d >= 1 else 1 for s in shape[1:3])
    if kp != (1, 1):
        shape = (1, shape[1] // kp[0], shape[2] // kp[1], shape[3])
        add("avgpool", "avgpool", shape, {"k": _short(kp)})  # type: ignore[arg-type]
    c_in = shape[3]
    mid = max(8, round_up(c_in * spec.width, 8))
    g = 1 if index == 0 else spec.groups
    if c_in % g or mid % g:
        g = 1
    k = tuple(spec.kernel if s > 1 else 1 for s in shape[1:3])
    pad = tuple(v // 2 for v in k)
    w = he_normal(rng, (mid, k[0], k[1], c_in // g))
    mid_shape = shape[:3] + (mid,)
    add("conv", "conv", mid_shape, {"k": _short(k), "stride": 1,  # type: ignore[arg-type]
                                    "pad": _short(pad), "groups": g},  # type: ignore[arg-type]
        {"weight": w})
    norm = _norm(f"m{index}_{spec.norm}{len(nodes)}", spec, nodes[-1].output, mid_shape, 1.0)
    nodes.append(norm)
    shapes[norm.output] = mid_shape
    add("relu", "relu", mid_shape, {})
    c_out = int(out_shape[3])
    w2 = he_normal(rng, (c_out, 1, 1, mid))
    proj_shape = shape[:3] + (c_out,)
    add("conv", "conv", proj_shape, {"k": 1, "stride": 1, "pad": 0, "groups": 1},
        {"weight": w2})
    norm = _norm(f"m{index}_{spec.norm}{len(nodes)}", spec, nodes[-1].output, proj_shape, 0.0)
    nodes.append(norm)
    shapes[norm.output] = proj_shape
    target = (int(out_shape[1]), int(out_shape[2]))
    if proj_shape[1:3] != target:
        add("resize", "resize", (1, *target, c_out), {"size": target, "mode": "nearest"})
    return nodes, shapes


def build_repnet(backbone_q: Graph, num_classes: int, spec: RepNetSpec | None = None,
                 cut: str | None = None) -> TrainableModel:
    """Rep-Net on the quantised ``backbone_q``: cut before its classifier (``cut``: see
    ``cut_classifier``; pass the output's name for a backbone that is already cut), one
    side module per connector, a new (num_classes, C) head.

    The graph: the input dequantised (``{x}_f``) feeds module 0; at connector i (backbone
    tensor c) ``m_c`` = dequantize(c), ``sum_c`` = m_c + module i's output (in place),
    quantize(sum_c) overwrites c for the rest of the backbone, and module i + 1 reads
    sum_c; the features are dequantised into the head."""
    spec = spec if spec is not None else RepNetSpec()
    if num_classes < 1:
        raise RepNetError(f"num_classes must be >= 1, got {num_classes}")
    if not backbone_q.is_quantized:
        raise RepNetError("the backbone must be quantised to int8 first "
                          "(mcutl.compile.load_and_quantize)")
    g = cut_classifier(backbone_q, cut)
    if spec.stages is not None:
        connectors = list(spec.stages)
        check_connectors(g, connectors)
    else:
        connectors = find_connectors(g, first_pool=spec.first_pool)
    x = g.tensors[g.inputs[0]]
    if len(x.shape) != 4:
        raise RepNetError(f"Rep-Net side modules need a 4-D NHWC input; {x.name!r} is "
                          f"{x.shape}")
    rng = np.random.default_rng(spec.seed)
    xf = f"{x.name}_f"
    nodes = [TNode("input_dequantize", "dequantize", [x.name], xf,
                   {"comment": "dequantise the input for the side network"})]
    shapes: dict[str, tuple[int, ...]] = {xf: tuple(x.shape)}
    modules = []
    source, source_tensor = xf, x.name
    for i, c in enumerate(connectors):
        c_shape = tuple(g.tensors[c].shape)
        m_nodes, m_shapes = module_nodes(i, source, shapes[source], c_shape, spec, rng)
        nodes += m_nodes
        shapes.update(m_shapes)
        modules.append({"index": i, "source": source_tensor, "target": c,
                        "nodes": [n.name for n in m_nodes]})
        nodes += overwrite_nodes(f"c{i}", c, m_nodes[-1].output, [], f"connector {i}",
                                 f"module {i}'s output")
        total = f"sum_{c}"
        shapes[f"m_{c}"] = shapes[total] = c_shape
        source, source_tensor = total, c
    h_nodes, h_shapes = head_nodes(g, num_classes, spec.seed)
    nodes += h_nodes
    shapes.update(h_shapes)
    return TrainableModel("repnet", g, nodes, shapes, "logits", spec=asdict(spec),
                          info={"connectors": connectors, "modules": modules})


def connectors_of(tm: TrainableModel) -> list[str]:
    """The connector tensors of a Rep-Net model, in graph order."""
    return list(tm.info.get("connectors", []))


def module_of(tm: TrainableModel, index: int) -> list[TNode]:
    """The side layers of module ``index`` of a Rep-Net model, in order."""
    names = tm.info["modules"][index]["nodes"]
    return [tm.node(n) for n in names]


def _summary(tm: TrainableModel) -> str:
    conns = connectors_of(tm)
    return (f"Rep-Net: {len(conns)} connectors ({', '.join(conns)}), "
            f"{tm.parameter_count()} trainable parameters")


def memory_aware(graph: Graph) -> tuple[dict[str, Any], str]:
    """The memory-aware Rep-Net of a classifier ending in conv -> global average pool ->
    linear (MobileNet-style): (spec options, ``cut``). The head reads the final conv's
    *input* map, average-pooled (``NAME:pool``), not the final conv's wider output; one
    connector, at that map; module 0 reads the input average-pooled down to the
    connector's size; width 0.125. The backward then runs only through the last block,
    and the frozen forward before it can stream (mcutl.plan.streaming): MobileNetV2-w0.35
    @128 trains in 120,496 B on the F405 (benchmarks/train_fit.py). Departures from the
    paper's side network: one connector instead of one per stage, a narrower module, the
    head on other (pooled) features. Meant for multi-stage MobileNet-style backbones:
    where the last stage starts at the stem (DS-CNN) or the map is 1-D, the defaults are
    smaller (`python benchmarks/memory.py` lists both)."""
    pool = next((n for n in reversed(graph.nodes) if n.op == "global_avgpool"), None)
    last_conv = graph.producer(pool.inputs[0]) if pool is not None else None
    if last_conv is None or last_conv.op != "conv2d":
        raise RepNetError("the memory-aware Rep-Net needs a model that ends in conv -> "
                          "global average pool -> classifier; give --stages and --cut")
    cut = f"{last_conv.inputs[0]}:pool"
    conns = find_connectors(cut_classifier(graph, cut))[-1:]
    h_in = int(graph.tensors[graph.inputs[0]].shape[1])
    first_pool = max(1, h_in // int(graph.tensors[conns[0]].shape[1]))
    return {"stages": conns, "first_pool": first_pool, "width": 0.125}, cut


def repnet_sizes(graph: Graph, cut: str | None) -> list[dict[str, Any]]:
    """The defaults, a narrower side network, then fewer connectors: the last two, the
    last one, the one before it (a narrower map there), each with module 0 pooled down
    to its first connector's map (the backward then starts deep in the backbone, where
    maps are small)."""
    sizes: list[dict[str, Any]] = [{}, {"width": 0.25}]
    try:
        g = cut_classifier(graph, cut)
        conns = find_connectors(g)
    except RepNetError:
        return sizes
    h_in = int(g.tensors[g.inputs[0]].shape[1])
    choices = [conns[-2:]] if len(conns) > 2 else []
    choices += [conns[-1:]] + ([conns[-2:-1]] if len(conns) > 1 else [])
    for sel in choices:
        pool = max(1, h_in // int(g.tensors[sel[0]].shape[1]))
        for width in (0.25, 0.125):
            sizes.append({"stages": sel, "first_pool": pool, "width": width})
    return sizes


register(Method(
    name="repnet",
    title="Rep-Net (CVPR 2022): a small side network exchanging features with the frozen "
          "backbone through additive connectors, and a new head",
    spec=RepNetSpec,
    build=build_repnet,
    capability=0,
    summary=_summary,
    fit_advice=(("--first-pool 8", {"first_pool": 8}), ("--first-pool 16", {"first_pool": 16}),
                ("--width 0.25", {"width": 0.25})),
    sizes=repnet_sizes,
))
