"""Generate the C of a quantised backbone: flash tables, an arena plan, kernel calls.

`generate_backbone(graph, ...)` returns the C files as strings plus the inference
memory plan; nothing here touches the disk or the compiler.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import jinja2
import numpy as np

from mcutl import __version__
from mcutl.codegen.context import CContext
from mcutl.ir.graph import Graph, Node
from mcutl.ops.base import get_op
from mcutl.paths import TEMPLATES_DIR
from mcutl.plan.arena import ArenaPlanner
from mcutl.plan.kernels import portable_where_scratch_raises_peak
from mcutl.plan.lifetimes import plan_activations, streamed_bound, streamed_profile
from mcutl.plan.streaming import Stream, choose_streams, conv_macs, recompute_limits
from mcutl.targets import load_target

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class LayerReport:
    index: int
    node: str
    op: str
    output_shape: tuple[int, ...]
    macs: int
    flash_bytes: int  # weights + bias + requantisation tables of this layer
    activation_bytes: int  # bytes of its activations (inputs + outputs) live while it runs


@dataclass
class GeneratedBackbone:
    files: dict[str, str]  # file name -> C source
    plan: ArenaPlanner
    layers: list[LayerReport]
    model_hash: bytes
    total_macs: int
    weight_table_bytes: int  # all flash tables
    raw_param_bytes: int  # int8 weights + int32 biases + (multiplier, shift) pairs
    streams: tuple[Stream, ...] = ()  # segments run band by band (mcutl.plan.streaming)

    def schedule(self, graph: Graph) -> dict[str, object]:
        """plan.json's account of the schedule: layer by layer, or which segments stream."""
        if not self.streams:
            return {"kind": "layer-by-layer"}
        return {"kind": "row-streamed", "segments": [s.describe(graph) for s in self.streams]}


def model_hash(tflite_bytes: bytes) -> bytes:
    return hashlib.sha256(tflite_bytes).digest()


#: how the backbone runs: "auto" streams what lowers the arena for at most
#: AUTO_EXTRA_MACS more MACs (or, when layer by layer does not fit the target, the least
#: recomputation that fits); "max" streams whatever lowers the arena most; "off" runs
#: layer by layer
STREAMING = ("auto", "max", "off")
AUTO_EXTRA_MACS = 0.10


def generate_backbone(
    graph: Graph, tflite_bytes: bytes, target_name: str, kernels: str | None = None,
    streaming: str = "auto", arena_budget: int | None = None,
) -> GeneratedBackbone:
    """The C of ``graph`` for ``target_name``, calling its kernel set (``kernels``
    overrides the target's: a before/after comparison). ``streaming`` (STREAMING): which
    segments run band by band (mcutl.plan.streaming); ``arena_budget``: the bytes the
    arena may take on the target ("auto" streams without limit above it)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            f"the backbone must have one input and one output, it has {len(graph.inputs)} "
            f"and {len(graph.outputs)}"
        )
    if streaming not in STREAMING:
        raise ValueError(f"streaming {streaming!r}: expected one of {', '.join(STREAMING)}")
    kernels = kernels or load_target(target_name).kernels
    streams, portable, planner, root = _plan(graph, kernels, streaming, arena_budget)
    offsets = {t: planner.offset(r) for t, r in root.items()}
    offsets.update({b.name: b.offset for b in planner.buffers if b.name.endswith("#scratch")})
    ctx = CContext(act_offsets=offsets, kernels=kernels, portable_nodes=portable)
    layers: list[LayerReport] = []
    streamed: dict[str, tuple[int, int]] = {}  # node -> (MACs, flash bytes) over its bands
    for i, node in enumerate(graph.nodes):
        op = get_op(node.op, node)
        n_consts, n_calls = len(ctx.consts), len(ctx.calls)
        seg = next((s for s in streams if s.contains(i)), None)
        if seg is None:
            op.lower_c(node, graph, ctx)
        elif i == seg.first:
            streamed.update(lower_stream(seg, graph, ctx))
        acts = {t for t in [*node.inputs, *node.outputs] if t and not graph.tensors[t].is_const}
        layers.append(
            LayerReport(
                index=len(layers),
                node=node.name,
                op=node.op,
                output_shape=graph.tensors[node.outputs[0]].shape,
                macs=streamed[node.name][0] if seg else sum(c.macs for c in ctx.calls[n_calls:]),
                flash_bytes=streamed[node.name][1] if seg else sum(
                    a.nbytes for a in ctx.consts[n_consts:]),
                activation_bytes=sum(graph.tensors[t].nbytes for t in acts),
            )
        )
    h = model_hash(tflite_bytes)
    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    assert tin.quant is not None and tout.quant is not None
    total_macs = sum(c.macs for c in ctx.calls)
    banner = (
        f"Generated by mcutl {__version__} for target {target_name}; model sha256 "
        f"{h.hex()[:16]}. Do not edit."
    )
    values = {
        "banner": banner,
        "consts": ctx.consts,
        "structs": ctx.structs,
        "ptr_arrays": ctx.ptr_arrays,
        "calls": ctx.calls,
        "total_macs": total_macs,
        "model_hash_bytes": [f"0x{b:02x}" for b in h],
        "input_ptr": ctx.act(graph.inputs[0]),
        "output_ptr": ctx.act(graph.outputs[0]),
        "input_bytes": tin.nbytes,
        "output_bytes": tout.nbytes,
        "input_shape": "x".join(map(str, tin.shape)),
        "output_shape": "x".join(map(str, tout.shape)),
        "input_layout": "NHWC",
        "input_scale": float(tin.quant.scale[0]),
        "input_zero_point": int(tin.quant.zero_point[0]),
        "output_scale": float(tout.quant.scale[0]),
        "output_zero_point": int(tout.quant.zero_point[0]),
        "arena_bytes": planner.arena_size(),
    }
    files = {
        name: _env.get_template(f"{name}.j2").render(values)
        for name in ("model.h", "model.c", "model_weights.c", "model_weights.h")
    }
    raw = 0
    for t in graph.tensors.values():
        if t.is_const and t.dtype in ("int8", "int32"):
            raw += t.nbytes
    # Requantisation: one (multiplier, shift) int32 pair per output channel of conv/linear.
    for node in graph.nodes:
        if any(get_op(node.op).role(i) == "weight" for i in range(len(node.inputs))):
            raw += 8 * int(graph.tensors[node.outputs[0]].shape[-1])
    return GeneratedBackbone(
        files=files,
        plan=planner,
        layers=layers,
        model_hash=h,
        total_macs=total_macs,
        weight_table_bytes=sum(a.nbytes for a in ctx.consts),
        raw_param_bytes=raw,
        streams=streams,
    )


def _plan(graph: Graph, kernels: str, streaming: str, arena_budget: int | None
          ) -> tuple[tuple[Stream, ...], frozenset[str], ArenaPlanner, dict[str, str]]:
    """The segments to stream (none unless they lower the arena), the layers that keep
    the portable kernel, and the arena plan."""
    def plan(streams: tuple[Stream, ...]
             ) -> tuple[frozenset[str], ArenaPlanner, dict[str, str]]:
        portable = portable_where_scratch_raises_peak(
            graph, kernels,
            lambda p: plan_activations(graph, kernels, p, streams)[0].arena_size())
        return (portable, *plan_activations(graph, kernels, portable, streams))

    portable, planner, root = plan(())
    if streaming == "off":
        return (), portable, planner, root
    # "auto": at most AUTO_EXTRA_MACS recomputed; if layer by layer does not fit, the
    # cheapest of 1, 2, 4, 8 x that which fits, else the smallest arena; "max": smallest
    fits = arena_budget is None or planner.arena_size() <= arena_budget
    limits = recompute_limits(streaming, fits, conv_macs(graph), AUTO_EXTRA_MACS)
    best: tuple[tuple[Stream, ...], frozenset[str], ArenaPlanner, dict[str, str]] = (
        (), portable, planner, root)
    for limit in limits:
        # the fast kernels never raise the peak (their scratch yields): the portable counts
        streams = choose_streams(graph, lambda ss: streamed_bound(graph, "portable", ss),
                                 limit, profile=lambda ss: streamed_profile(graph, "portable", ss))
        if not streams:
            continue
        s_portable, s_planner, s_root = plan(streams)
        if s_planner.arena_size() < best[2].arena_size():
            best = (streams, s_portable, s_planner, s_root)
        if arena_budget is None or best[2].arena_size() <= arena_budget:
            break
    return best


def lower_stream(seg: Stream, graph: Graph, ctx: CContext) -> dict[str, tuple[int, int]]:
    """The calls of a streamed segment, band after band: each node's own lowering on a
    band-sized view of its maps (a pointer at the band's first row, the band's height,
    the band's padding; the flash tables are shared by every band). Returns each node's
    (MACs, flash bytes) over all bands."""
    nodes = graph.nodes[seg.first:seg.last + 1]
    macs = {n.name: 0 for n in nodes}
    flash = {n.name: 0 for n in nodes}
    tensors = dict(graph.tensors)
    for k, band in enumerate(seg.bands):
        def view(t: str, rows: tuple[int, int], k: int = k, band: object = band) -> str:
            """A band-sized tensor over rows ``rows`` of ``t`` (whole, or its band buffer
            holding ``band.rows[t]``)."""
            name = f"{t}@{k}:{rows[0]}-{rows[1]}"
            if name not in tensors:
                src = graph.tensors[t]
                at, base = 0, t
                if t in seg.inner:
                    at = seg.bands[k].rows[t][0]
                    base = ctx.band_buffer(t, k, seg.inner[t])
                tensors[name] = replace(src, name=name,
                                        shape=(src.shape[0], rows[1] - rows[0], *src.shape[2:]))
                ctx.view(name, base, (rows[0] - at) * src.shape[2] * src.shape[3])
            return name

        for n in nodes:
            ins = [view(t, band.reads[(n.name, t)]) if (n.name, t) in band.reads else t
                   for t in n.inputs]
            out = n.outputs[0]
            rows = band.rows[out]
            bn = Node(n.name, n.op, ins, [view(out, rows)], band.attrs[n.name])
            first_call, first_const = len(ctx.calls), len(ctx.consts)
            get_op(n.op, bn).lower_c(bn, Graph(tensors, [bn], [], []), ctx)
            flash[n.name] += sum(a.nbytes for a in ctx.consts[first_const:])
            for c in ctx.calls[first_call:]:
                c.comment = (f"band {k + 1}/{len(seg.bands)} (rows {band.out_rows[0]}-"
                             f"{band.out_rows[1] - 1} of {seg.output}): {c.comment}")
                macs[n.name] += c.macs
    return {n: (macs[n], flash[n]) for n in macs}


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float input -> int8 with the model input's params, as TFLite's QUANTIZE computes it:
    round(x / scale) in float32, ties away from zero, plus the zero point, saturated."""
    v = (x.astype(np.float32) / np.float32(scale)).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)
