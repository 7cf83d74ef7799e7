"""The training step of a TrainableModel as one straight-line program of kernel calls.

A generic walk over the frozen int8 backbone and the trainable float graph beside it
(mcutl/ir/trainable.py); every kernel call comes from an op (mcutl/ops/ for the
backbone, mcutl/ops/f32/ for the trainable nodes), no method is named here.

Forward: float nodes that read only the input run first; then the backbone node by
node (each op's ``lower_c``), each followed by the float nodes whose inputs now exist,
in the model's order (a ``quantize`` node overwrites the tensor the backbone just
computed, before anything reads it). Backbone nodes through which a gradient will flow
record a 1-bit mask of their fused activation from their int8 output.

Backward: softmax cross-entropy of the logits, then in reverse: before each backbone
node's backward (int8 weights from flash, masks, straight-through requantisation), the
float nodes whose output gradient is complete, latest first (their parameter gradients
accumulate into the static ``mcutl_grads``). Gradients of ops that only pass them on
(``grad_alias``: dequantize, add, quantize) share one buffer with the backbone
tensor's, no code. Backbone tensors need a gradient from the first one a float node
writes on.

The optimizer (SGD with momentum, or Adam) runs over the whole parameter block
when the host says a mini-batch is complete (gradient accumulation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mcutl.codegen.backbone import lower_stream
from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.ops.base import get_op
from mcutl.ops.f32 import get_float_op
from mcutl.ops.f32.base import GradTarget, numel
from mcutl.plan.streaming import Stream
from mcutl.train.context import TrainContext


class TrainCompileError(ValueError):
    """The model cannot be trained as compiled (the message names the node and the fix)."""


@dataclass
class GradState:
    """Float gradient buffers of backbone activations during backward emission."""

    ctx: TrainContext
    graph: Graph
    buffers: dict[str, str] = field(default_factory=dict)  # tensor -> f32 symbol
    written: set[str] = field(default_factory=set)
    masks: dict[str, str] = field(default_factory=dict)  # node name -> mask symbol
    needed: set[str] = field(default_factory=set)  # tensors whose gradient is wanted

    def _sym(self, tensor: str) -> str:
        if tensor not in self.buffers:
            n = self.graph.tensors[tensor].size
            self.buffers[tensor] = self.ctx.f32(f"g_{tensor}", n)
        return self.buffers[tensor]

    def out(self, tensor: str) -> str | None:
        """The gradient of an activation, or None if nothing flows into it."""
        return self.buffers[tensor] if tensor in self.written else None

    def write(self, tensor: str) -> tuple[str, str] | None:
        """(buffer, accumulate flag) to add a contribution to tensor's gradient, or None
        if its gradient is not needed (it lies before the first connector)."""
        if tensor not in self.needed:
            return None
        sym = self._sym(tensor)
        acc = "1" if tensor in self.written else "0"
        self.written.add(tensor)
        return sym, acc

    def alias(self, out_tensor: str, in_tensor: str) -> None:
        """in_tensor's gradient is out_tensor's buffer (views such as reshape)."""
        if in_tensor not in self.needed or out_tensor not in self.written:
            return
        if in_tensor in self.written:
            n = self.graph.tensors[in_tensor].size
            self.ctx.call("mcutl_axpy_f32", [str(n), "1.0f", self.buffers[out_tensor],
                                             self.buffers[in_tensor]],
                          f"gradient of {in_tensor} += gradient of {out_tensor}")
            return
        self.buffers[in_tensor] = self.buffers[out_tensor]
        self.written.add(in_tensor)


@dataclass
class StepProgram:
    ctx: TrainContext
    input_sym: str
    logits_sym: str
    forward_end: int  # calls [0, forward_end) are the forward pass (INFER)
    loss_call: int  # index of the softmax cross-entropy call
    label_sym: str = "mcutl_label"


def _needs_grad(tm: TrainableModel) -> set[str]:
    """Backbone tensors whose gradient is needed: from the first one a float node
    writes (e.g. Rep-Net's connector 0) on, with that producer's inputs."""
    g = tm.backbone
    written = {n.output for n in tm.nodes if get_float_op(n.op, n).writes_backbone}
    written |= {n.attrs["tensor"] for n in tm.nodes if get_float_op(n.op, n).backbone_param}
    started = False
    need: set[str] = set()
    for node in g.nodes:
        if written & set(node.outputs):
            started = True
        if started:
            for t in [*node.inputs, *node.outputs]:
                if t and not g.tensors[t].is_const:
                    need.add(t)
    return need


def schedule(tm: TrainableModel, early_input: bool = False) -> dict[int, list[TNode]]:
    """Float nodes by the backbone node index after which they run (-1: before any), in
    the model's order. Each runs as soon as the backbone tensors it reads exist, except
    the nodes that depend on the network input alone (which stays in the arena for the
    whole step): they run just before their first reader, so that what they save for
    the backward is not live across the backbone's early, large activations.
    ``early_input``: the nodes that read the input itself run first all the same (a
    step that releases the input's memory once read: plan_step)."""
    slots = _asap(tm)
    g = tm.backbone
    pos = {n.name: k for k, nodes in slots.items() for n in nodes}
    by_output = {n.output: n for n in tm.nodes}
    input_only: set[str] = set()
    for n in tm.nodes:
        if n.op != "quantize" and all(i in g.inputs or (i in by_output and by_output[
                i].name in input_only) for i in n.inputs):
            input_only.add(n.name)
    readers: dict[str, list[TNode]] = {}
    for n in tm.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    for n in reversed(tm.nodes):
        later = [pos[r.name] for r in readers.get(n.output, [])]
        reads_input = any(i in g.inputs for i in n.inputs)
        if n.name in input_only and later and not (early_input and reads_input):
            pos[n.name] = min(later)
    order = {n.name: k for k, n in enumerate(tm.nodes)}
    out: dict[int, list[TNode]] = {}
    for n in sorted(tm.nodes, key=lambda n: (pos[n.name], order[n.name])):
        out.setdefault(pos[n.name], []).append(n)
    return out


def _asap(tm: TrainableModel) -> dict[int, list[TNode]]:
    """Each float node as soon as the backbone tensors it reads exist."""
    g = tm.backbone
    at = {t: -1 for t in g.inputs}
    for k, node in enumerate(g.nodes):
        for o in node.outputs:
            at[o] = k
    ready: dict[str, int] = {}
    slots: dict[int, list[TNode]] = {}
    for n in tm.nodes:
        op = get_float_op(n.op, n)
        pos = -1
        for i in n.inputs:
            if i in ready:
                pos = max(pos, ready[i])
            elif i in at and i in g.tensors:
                pos = max(pos, at[i])
            else:
                raise TrainCompileError(f"trainable node {n.name!r} reads {i!r}, which is "
                                        "neither the backbone's nor computed before it")
        if op.writes_backbone:
            if n.output not in at or at[n.output] < pos:
                raise TrainCompileError(f"node {n.name!r} overwrites {n.output!r} before "
                                        "its inputs exist")
            pos = at[n.output]
        slots.setdefault(pos, []).append(n)
        ready[n.output] = pos
    return slots


@dataclass
class _Backward:
    """Gradient bookkeeping of the float nodes (alias classes, completeness)."""

    tm: TrainableModel
    ctx: TrainContext
    grads: GradState
    order: list[TNode]  # forward schedule order
    done: set[str] = field(default_factory=set)  # float nodes whose backward is emitted
    backbone_done: set[str] = field(default_factory=set)  # backbone nodes processed
    buffers: dict[str, tuple[str, bool]] = field(default_factory=dict)  # value -> (sym, written)
    #: a requantising node (writes_backbone) -> the mask of where its int8 value did not
    #: saturate: the clamp's derivative, applied to the gradient it passes straight through
    saturation: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root: dict[str, str] = {}
        for n in self.order:
            for k in get_float_op(n.op, n).grad_alias:
                self._union(n.inputs[k], n.output)
        self.consumers: dict[str, list[TNode]] = {}
        for n in self.order:
            for i in n.inputs:
                self.consumers.setdefault(i, []).append(n)
        g = self.tm.backbone
        self.backbone_readers = {t: [b.name for b in g.nodes if t in b.inputs]
                                 for t in g.tensors}
        classes: dict[str, set[str]] = {}
        for n in self.order:
            for v in [*n.inputs, n.output]:
                classes.setdefault(self._find(v), set()).add(v)
        computed = {n.output for n in self.order
                    if not get_float_op(n.op, n).reads_backbone}
        self.tensor_of: dict[str, str | None] = {}
        self.class_needs: dict[str, bool] = {}
        for members in classes.values():
            # a backbone tensor whose gradient is needed gives the class its buffer
            tensors = sorted(v for v in members if v in g.tensors and v in self.grads.needed)
            if len(tensors) > 1:
                raise TrainCompileError(f"the gradients of backbone tensors {tensors} would "
                                        "share one buffer (a float node joins them)")
            needs = bool(tensors) or bool(members & computed)
            for v in members:
                self.tensor_of[v] = tensors[0] if tensors else None
                self.class_needs[v] = needs

    def _find(self, v: str) -> str:
        while self.root.get(v, v) != v:
            v = self.root[v]
        return v

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.root[rb] = ra

    def backbone_of(self, value: str) -> str | None:
        """The backbone tensor whose gradient buffer ``value``'s gradient shares."""
        if value in self.tm.backbone.tensors:
            return value if value in self.grads.needed else None
        return self.tensor_of.get(value)

    def complete(self, n: TNode) -> bool:
        """All readers of ``n``'s output have emitted their backward."""
        if get_float_op(n.op, n).writes_backbone:  # float readers read the old values
            return all(b in self.backbone_done for b in self.backbone_readers[n.output])
        return all(c.name in self.done for c in self.consumers.get(n.output, []))

    def needs_grad(self, value: str) -> bool:
        """False only for the dequantised value of a backbone tensor needing no gradient
        (e.g. the network input) that no float node joins through a view or an add;
        every other float value gets its gradient."""
        return self.class_needs.get(value, True)

    def g_out(self, n: TNode) -> str | None:
        if n.output == self.tm.logits:
            return self.buffers[self._find(n.output)][0]
        t = self.backbone_of(n.output)
        if t is not None:
            return self.grads.out(t)
        entry = self.buffers.get(self._find(n.output))
        return entry[0] if entry else None

    def claim(self, n: TNode, k: int) -> GradTarget:
        """Where input k's gradient goes: (buffer, accumulate) or None."""
        v = n.inputs[k]
        if not self.needs_grad(v):
            return None
        t = self.backbone_of(v)
        if t is not None:
            return self.grads.write(t)
        key = self._find(v)  # values joined by a view share one gradient buffer
        if key in self.buffers:
            sym, _ = self.buffers[key]
            return sym, "1"
        sym = self.ctx.f32(f"{n.name}_gin", numel(self.tm.shape_of(v)))
        self.buffers[key] = (sym, True)
        return sym, "0"

    def ready_batch(self) -> list[TNode]:
        """Float nodes whose output gradient is complete, latest first (in one pass:
        emitting one can complete the next)."""
        batch: list[TNode] = []
        for n in reversed(self.order):
            if n.name not in self.done and self.complete(n):
                batch.append(n)
                self.done.add(n.name)
        return batch

    def emit(self, batch: list[TNode], values: dict[str, str]) -> None:
        claims: dict[tuple[str, int], GradTarget] = {}
        for n in batch:  # backbone gradient buffers are claimed first, in batch order
            op = get_float_op(n.op, n)
            for k, v in enumerate(n.inputs):
                if k in op.grad_alias or op.reads_backbone:
                    continue
                if self.backbone_of(v) is not None and self.needs_grad(v):
                    claims[(n.name, k)] = self.claim(n, k)
        for n in batch:
            op = get_float_op(n.op, n)
            if n.name in self.saturation:  # every reader's gradient of the clamped value
                g_sat = self.g_out(n)        # is in: the clamp's derivative
                assert g_sat is not None
                self.ctx.call("mcutl_act_grad_input_f32",
                              [g_sat, self.saturation[n.name],
                               str(numel(self.tm.shape_of(n.output))), g_sat, "0"],
                              f"{n.name}: gradient through the clamp of {n.output} to "
                              "its int8 range")
            if op.reads_backbone or op.backbone_param or (op.grad_alias and not n.params):
                continue  # its gradient is its inputs' (one buffer): no code
            g_out = self.g_out(n)
            if g_out is None:
                raise TrainCompileError(f"no gradient reaches {n.output!r} ({n.name})")
            targets: list[GradTarget] = []
            for k in range(len(n.inputs)):
                if k in op.grad_alias:
                    targets.append(None)  # shares the output's gradient buffer
                else:
                    targets.append(claims[(n.name, k)] if (n.name, k) in claims
                                   else self.claim(n, k))
            op.lower_backward(n, self.ctx, [values[i] for i in n.inputs],
                              [self.tm.shape_of(i) for i in n.inputs],
                              self.tm.shape_of(n.output), g_out, targets)


def _clamp_to_int8(ctx: TrainContext, g: Graph, tm: TrainableModel, n: TNode, value: str,
                   seen: set[str]) -> None:
    """Clamp the float value a requantising node ``n`` reads, in place, to the real range
    of its int8 tensor, so that every reader of the value (a later side module too) sees
    what the backbone sees and the clamp's derivative (the saturation mask) is exact."""
    early = [r.name for r in tm.nodes if n.inputs[0] in r.inputs and r.name in seen]
    if early:
        raise TrainCompileError(f"{early} read {n.inputs[0]!r} before {n.name} clamps it")
    s, zp = _int8_params(g, n.output)
    lo, hi = _int8_real_range(s, zp)
    ctx.call("mcutl_clamp_f32", [value, str(numel(tm.shape_of(n.inputs[0]))), f"{lo!r}f",
                                 f"{hi!r}f", value],
             f"{n.name}: clamp {n.inputs[0]} to what int8 {n.output} can hold")


def _int8_params(g: Graph, tensor: str) -> tuple[float, int]:
    q = g.tensors[tensor].quant
    assert q is not None, f"{tensor} is not quantised"
    return float(q.scale[0]), int(q.zero_point[0])


def _int8_real_range(scale: float, zero_point: int) -> tuple[float, float]:
    """The real values of int8 -128 and 127: float32(scale) * (q - zero_point), one float32
    product each (what the reference computes too)."""
    import numpy as np

    s = np.float32(scale)
    return (float(s * np.float32(-128 - zero_point)), float(s * np.float32(127 - zero_point)))


def _saturation_mask(ctx: TrainContext, g: Graph, tensor: str) -> str:
    """A 1-bit mask of where the int8 ``tensor`` a float node just wrote is strictly
    inside [-128, 127] (where the requantisation's clamp lets a gradient through)."""
    n = g.tensors[tensor].size
    sym = str(ctx.mask(f"sat_{tensor}", n))
    ctx.call("mcutl_act_mask_from_s8", [ctx.act(tensor), str(n), "-128", "127",
                                         "MCUTL_ACT_MASK_RELU6", sym],
             f"mask of where {tensor} did not saturate, for backward")
    return sym


def fuse_dequantize_pool(tm: TrainableModel, need: set[str]) -> TrainableModel:
    """A ``dequantize`` whose value only an ``avgpool`` reads, of a backbone tensor whose
    gradient is not needed (e.g. the input a side network reads pooled), becomes one
    ``dequantize_avgpool``: the same values, without the float copy of the whole tensor."""
    readers: dict[str, list[TNode]] = {}
    for n in tm.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    drop: set[str] = set()
    fused: dict[str, TNode] = {}
    for n in tm.nodes:
        r = readers.get(n.output, [])
        if (n.op == "dequantize" and n.inputs[0] not in need and len(r) == 1
                and r[0].op == "avgpool" and n.output != tm.logits):
            pool = r[0]
            drop.add(n.name)
            fused[pool.name] = TNode(pool.name, "dequantize_avgpool", list(n.inputs),
                                     pool.output, dict(pool.attrs))
    if not fused:
        return tm
    nodes = [fused.get(n.name, n) for n in tm.nodes if n.name not in drop]
    return dataclasses.replace(tm, nodes=nodes)


def frozen_prefix_ok(tm: TrainableModel) -> Callable[[int, int], bool]:
    """Which backbone segments the step may run row-streamed (mcutl.plan.streaming):
    those whose maps no gradient, mask or float node needs whole (the frozen part of
    the forward, before the first connector); a float node may read the segment's
    output after its last node."""
    tm = fuse_dequantize_pool(tm, _needs_grad(tm))
    need = _needs_grad(tm)
    slots = schedule(tm)
    g = tm.backbone
    frozen = [not any(o in need for o in n.outputs) for n in g.nodes]

    def ok(first: int, last: int) -> bool:
        return all(frozen[first:last + 1]) and not any(slots.get(k) for k in range(first, last))

    return ok


def build_step(tm: TrainableModel, kernels: str = "portable",
               portable: frozenset[str] = frozenset(),
               streams: Sequence[Stream] = (), release_input: bool = False) -> StepProgram:
    """The step's kernel calls; the backbone's int8 ones from the ``kernels`` set (the
    nodes in ``portable`` from the portable one); the segments ``streams`` band by band
    (they must satisfy ``frozen_prefix_ok``); ``release_input``: the float nodes that
    read the input run first, so that nothing reads it after the backbone's first
    layers (plan_step(keep_input=False) can reuse its memory)."""
    tm = fuse_dequantize_pool(tm, _needs_grad(tm))
    g = tm.backbone
    ctx = TrainContext(act_offsets={}, kernels=kernels, portable_nodes=portable)
    ctx.graph = g
    biases: dict[str, list[TNode]] = {}  # backbone node -> its trained bias
    producer = {o: node for node in g.nodes for o in node.outputs}
    for n in tm.nodes:
        if get_float_op(n.op, n).backbone_param:
            conv = producer.get(n.attrs["tensor"])
            if conv is None or conv.op != "conv2d" or conv.name in ctx.trained_biases:
                raise TrainCompileError(f"{n.name}: {n.attrs['tensor']!r} is not the output "
                                        "of a conv2d whose bias is trained once")
            ctx.trained_biases[conv.name] = n
            biases.setdefault(conv.name, []).append(n)
    x_name = g.inputs[0]
    for node in g.nodes:
        if get_op(node.op, node).c_alias:
            ctx.alias[node.outputs[0]] = node.inputs[0]
    inner = {t for seg in streams for t in seg.inner}  # held band by band (ctx.band_buffer)
    for t in g.activations():
        if t not in ctx.alias and t not in inner:
            ctx.i8(t, g.tensors[t].size)
    need = _needs_grad(tm)
    slots = schedule(tm, early_input=release_input)
    values: dict[str, str] = {t: ctx.act(t) for t in g.activations()}

    # the float node whose value a requantisation clamps -> the mask of where it did not
    saturation: dict[str, str] = {}
    seen_floats: set[str] = set()
    float_producer = {n.output: n for n in tm.nodes}

    def run_float(nodes: list[TNode]) -> None:
        for n in nodes:
            op = get_float_op(n.op, n)
            src = float_producer.get(n.inputs[0]) if n.inputs else None
            if op.writes_backbone:
                if src is None:
                    raise TrainCompileError(f"{n.name} requantises {n.inputs[0]!r}, which "
                                            "no float node computes")
                _clamp_to_int8(ctx, g, tm, n, values[n.inputs[0]], seen_floats)
            values[n.output] = op.lower_forward(
                n, ctx, [values[i] for i in n.inputs], [tm.shape_of(i) for i in n.inputs],
                tm.shape_of(n.output))
            seen_floats.add(n.name)
            if op.writes_backbone and n.output in need:
                assert src is not None
                saturation[src.name] = _saturation_mask(ctx, g, n.output)

    # ---- forward -----------------------------------------------------------
    ctx.mark("forward")
    run_float(slots.get(-1, []))
    masks: dict[str, str] = {}
    for k, node in enumerate(g.nodes):
        op = get_op(node.op, node)
        seg = next((s for s in streams if s.contains(k)), None)
        if seg is not None:
            if k == seg.first:
                lower_stream(seg, g, ctx)
            run_float(slots.get(k, []))
            continue
        op.lower_c(node, g, ctx)
        out = node.outputs[0]
        if out in need and any(t in need for t in node.inputs if t):
            sym = op.lower_c_mask(node, g, ctx)
            if sym is not None:
                masks[node.name] = sym
        run_float(slots.get(k, []))
    forward_end = len(ctx.calls)
    if tm.logits not in values:
        raise TrainCompileError(f"the logits {tm.logits!r} are never computed")

    # ---- backward ------------------------------------------------------------
    ctx.mark("backward")
    k_cls = tm.num_classes
    g_logits = ctx.f32("g_logits", k_cls)
    loss_call = len(ctx.calls)
    ctx.call("mcutl_softmax_xent_f32",
             [values[tm.logits], "&mcutl_label", "1", str(k_cls), "mcutl_label_smoothing",
              "1.0f", "NULL", g_logits], "loss: softmax cross-entropy, gradient of the logits",
             assign="*loss")
    grads = GradState(ctx, g, needed=need, masks=masks)
    order = [n for k in sorted(slots) for n in slots[k]]
    bw = _Backward(tm, ctx, grads, order, saturation=saturation)
    bw.buffers[bw._find(tm.logits)] = (g_logits, True)
    bw.emit(bw.ready_batch(), values)
    for node in reversed(g.nodes):
        bw.emit(bw.ready_batch(), values)
        bw.backbone_done.add(node.name)
        out = node.outputs[0]
        if out not in need or grads.out(out) is None:
            continue
        if not any(t in need for t in node.inputs if t):
            continue
        get_op(node.op, node).lower_c_backward(node, g, ctx, grads)
        g_out = grads.out(out)  # masked in place by the node's backward
        for bn in biases.get(node.name, []):
            assert g_out is not None
            get_float_op(bn.op, bn).lower_grad(bn, ctx, g.tensors[out].shape, g_out)
    bw.emit(bw.ready_batch(), values)
    missing = [n.name for n in order if n.name not in bw.done]
    if missing:
        raise TrainCompileError(f"trainable nodes {missing} never got their gradient")
    return StepProgram(ctx=ctx, input_sym=ctx.act(x_name), logits_sym=values[tm.logits],
                       forward_end=forward_end, loss_call=loss_call)
