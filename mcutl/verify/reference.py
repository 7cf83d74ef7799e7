"""PyTorch reference of a TrainableModel's training step: the math the C step must match.

A generic walk, like the step compiler's (mcutl/train/step.py), over the frozen int8
backbone and the trainable float graph (mcutl/ir/trainable.py); each float node runs its
op's ``torch_forward`` (mcutl/ops/f32), no method is named here.

Forward (batch 1, int8 NHWC input):
- the frozen backbone runs in int8 exactly as the C kernels (mcutl.quant.int8_exec);
- after each backbone tensor, the float nodes scheduled there run in torch: a
  ``dequantize`` reads ``float32(s) * (q - z)`` (the straight-through value where a
  gradient flows), a ``quantize`` overwrites the backbone tensor with
  ``clamp(round_half_away(float32(m / s)) + z, -128, 127)``, or with the device's
  values when given (``forced``, read with PROBE), its own rounding kept beside them
  (``Trace.own``, ``Trace.steps``) so that `verify` counts and bounds the flips instead
  of drifting after one;
- the logits are the value the model names.

Backward (torch autograd with a straight-through rule through the frozen backbone):
every frozen node on a path from the first overwritten tensor to the features is
shadowed by its op's ``torch_forward_f32`` (float op on dequantised constants, no fused
activation) whose value is replaced by the dequantised int8 output; its gradient is
multiplied by the op's ``ste_mask`` (1-bit, from the int8 output: ReLU passes where
out > act_min, ReLU6 where act_min < out < act_max). Requantisation (every layer's
output rounding/saturation) is the identity. A ``quantize`` node first clamps the float
value it reads to its int8 tensor's real range (every later reader sees the clamped
value); the clamp's derivative is the mask of the int8 values strictly inside (-128,
127); its rounding is the identity. A residual add passes the gradient to both inputs,
global average pooling spreads it, a reshape passes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcutl.ir.graph import Graph, Node
from mcutl.ir.trainable import TrainableModel
from mcutl.ops import get_op
from mcutl.ops.f32 import get_float_op
from mcutl.quant.bias import quantize_bias
from mcutl.quant.int8_exec import run_int8
from mcutl.train.step import schedule


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``float32(scale) * (q - zero_point)``, one float32 product (as mcutl_dequantize_s8_f32)."""
    return (np.float32(scale) * (np.asarray(q, np.int32) - int(zero_point)).astype(np.float32)
            ).astype(np.float32)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite QUANTIZE: ``x / scale`` in float32, ties away from zero, + zp, saturated
    (as mcutl_quantize_f32_s8)."""
    v = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5) + int(zero_point)
    return np.clip(r, -128, 127).astype(np.int8)


def _qp(graph: Graph, name: str) -> tuple[float, int]:
    q = graph.tensors[name].quant
    assert q is not None, f"{name} is not quantised"
    return float(q.scale[0]), int(q.zero_point[0])


class StraightThrough(torch.autograd.Function):
    """Value of ``value``; gradient of ``shadow`` (times ``mask`` where given)."""

    @staticmethod
    def forward(ctx: Any, shadow: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        ctx.has_mask = mask is not None
        if mask is not None:
            ctx.save_for_backward(mask)
        return value.to(shadow.dtype).clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.has_mask:
            (mask,) = ctx.saved_tensors
            grad = torch.where(mask, grad, torch.zeros_like(grad))
        return grad, None, None


def straight_through(shadow: torch.Tensor, value: np.ndarray,
                     mask: np.ndarray | None = None) -> torch.Tensor:
    m = None if mask is None else torch.from_numpy(np.asarray(mask, bool))
    return StraightThrough.apply(shadow, torch.from_numpy(np.asarray(value)), m)


@dataclass
class Trace:
    """What the last forward computed (numpy copies), for tests and the C comparison."""

    int8: dict[str, np.ndarray] = field(default_factory=dict)  # as the backbone used them
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # overwritten tensors, before
    values: dict[str, np.ndarray] = field(default_factory=dict)  # float values of the graph
    own: dict[str, np.ndarray] = field(default_factory=dict)  # overwritten: own rounding
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # overwritten: m / s + zp
    used: dict[str, np.ndarray] = field(default_factory=dict)  # overwritten: int8 used
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)  # grad-path nodes
    features: np.ndarray | None = None
    logits: np.ndarray | None = None


class TorchReference(nn.Module):
    """A TrainableModel as a torch module: int8 backbone, float side network and head,
    straight-through backward. Parameters are torch copies of ``model.parameters()``."""

    def __init__(self, model: TrainableModel, rounding_jitter: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.model = model
        # Tests only: the reference's own rounding sees m_i/s moved by up to this many
        # quantisation steps, as another machine's float arithmetic could move it.
        self.rounding_jitter = float(rounding_jitter)
        self._jitter_rng = np.random.default_rng(seed)
        named = model.parameters()
        self._names = [n for n, _ in named]
        self.params = nn.ParameterList(
            [nn.Parameter(torch.from_numpy(np.array(a, np.float32, copy=True)))
             for _, a in named])
        self._index = {n: i for i, n in enumerate(self._names)}
        g = model.backbone
        self._producer: dict[str, Node] = {o: n for n in g.nodes for o in n.outputs}
        # trained biases of frozen nodes (node -> its int8_bias node): the int8 run reads
        # a copy of the backbone whose int32 biases are requantised from the parameters
        self._biases = {self._producer[n.attrs["tensor"]].name: n for n in model.nodes
                        if get_float_op(n.op, n).backbone_param}
        # the int32 bias tensor each trained bias replaces in the int8 run
        self._bias_tensor = {self._producer[n.attrs["tensor"]].name: self._producer[
            n.attrs["tensor"]].inputs[2] for n in self._biases.values()}
        self._graph = g.copy() if self._biases else g
        # float nodes to run right after each backbone tensor exists (the step's schedule)
        self._after: dict[str, list[Any]] = {}
        for k, nodes in schedule(model).items():
            anchor = g.inputs[0] if k < 0 else g.nodes[k].outputs[-1]
            self._after[anchor] = nodes
        self.trace = Trace()

    # ---- parameters ----------------------------------------------------------
    def named_trainable(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) in the order of ``model.parameters()`` (the C block's)."""
        return [(n, self.params[i]) for i, n in enumerate(self._names)]

    def param(self, name: str) -> nn.Parameter:
        return self.params[self._index[name]]

    def export_parameters(self) -> list[tuple[str, np.ndarray]]:
        """Current values as float32 numpy copies, in order."""
        return [(n, p.detach().numpy().astype(np.float32).copy())
                for n, p in self.named_trainable()]

    def load_into(self, model: TrainableModel | None = None) -> None:
        """Write the current values into ``model``'s arrays (default: the wrapped one)."""
        target = dict((model or self.model).parameters())
        for n, v in self.export_parameters():
            target[n][...] = v

    # ---- forward ---------------------------------------------------------------
    def forward(self, x_q: np.ndarray,
                forced: dict[str, np.ndarray] | None = None) -> torch.Tensor:
        """Logits (1, num_classes) float32 for one int8 NHWC input (1, H, W, C).

        ``forced``: overwritten backbone tensor -> int8 values to use there instead of
        the reference's own rounding (the device's, read with PROBE)."""
        forced = forced or {}
        g = self._graph
        for node_name, bn in self._biases.items():
            b = g.tensors[self._bias_tensor[node_name]]
            assert b.quant is not None
            b.data = quantize_bias(self.param(f"{bn.name}.bias").detach().numpy(),
                                   np.asarray(b.quant.scale, np.float32))
        x_q = np.asarray(x_q)
        if x_q.shape != g.tensors[g.inputs[0]].shape and x_q.shape == \
                g.tensors[g.inputs[0]].shape[1:]:
            x_q = x_q[None]
        real: dict[str, torch.Tensor] = {}  # backbone tensors on the gradient path
        fv: dict[str, torch.Tensor] = {}  # float values of the trainable graph
        seen: dict[str, np.ndarray] = {}  # int8 values as the backbone used them
        trace = Trace()

        def value_of(name: str) -> torch.Tensor:
            if name in real:
                return real[name]
            return torch.from_numpy(dequantize(seen[name], *_qp(g, name)))

        def quantize_node(node: Any) -> None:
            t = node.output
            s, zp = _qp(g, t)
            v = fv[node.inputs[0]]
            # the value is clamped to what int8 t can hold (every later reader sees it)
            lo, hi = np.float32(s) * np.float32(-128 - zp), np.float32(s) * np.float32(127 - zp)
            clamped = np.clip(v.detach().numpy(), lo, hi).astype(np.float32)
            m_np = clamped
            if self.rounding_jitter:
                u = self._jitter_rng.uniform(-1.0, 1.0, m_np.shape) * self.rounding_jitter
                m_np = (m_np + np.float32(s) * u.astype(np.float32)).astype(np.float32)
            q_own = quantize(m_np, s, zp)
            q_new = q_own
            if t in forced:
                q_new = np.asarray(forced[t], np.int8).reshape(q_own.shape)
            trace.raw[t] = seen[t]
            trace.own[t], trace.used[t] = q_own, q_new
            trace.steps[t] = (np.asarray(m_np, np.float32) / np.float32(s)).astype(
                np.float64) + zp
            # the clamp's derivative: no gradient where the int8 value saturated
            sat = (q_new > -128) & (q_new < 127)
            v = straight_through(v, clamped, sat.reshape(clamped.shape))
            fv[node.inputs[0]] = v
            real[t] = straight_through(v, dequantize(q_new, s, zp))
            seen[t] = q_new

        def hook(name: str, q: np.ndarray) -> np.ndarray:
            node = self._producer.get(name)
            if node is not None and (any(i in real for i in node.inputs if i)
                                     or node.name in self._biases):
                op = get_op(node.op, node)
                args = [None if not i or g.tensors[i].is_const else value_of(i)
                        for i in node.inputs]
                shadow = op.torch_forward_f32(node, g, args)
                if node.name in self._biases:  # d(output)/d(bias) = 1 per channel
                    p = self.param(f"{self._biases[node.name].name}.bias")
                    shadow = shadow + (p - p.detach())
                mask = op.ste_mask(node, g, q)
                trace.masks[node.name] = mask
                real[name] = straight_through(shadow, dequantize(q, *_qp(g, name)), mask)
            seen[name] = q
            for n in self._after.get(name, []):
                fop = get_float_op(n.op, n)
                if fop.writes_backbone:
                    quantize_node(n)
                    continue
                if fop.reads_backbone:
                    fv[n.output] = value_of(n.inputs[0]).reshape(self.model.shapes[n.output])
                else:
                    params = {k: self.param(f"{n.name}.{k}") for k in n.params}
                    fv[n.output] = fop.torch_forward(n, [fv[i] for i in n.inputs], params)
                trace.values[n.output] = fv[n.output].detach().numpy().copy()
            return seen[name]

        run_int8(g, x_q, hook)
        logits = fv[self.model.logits]
        trace.int8 = seen
        trace.features = value_of(g.outputs[0]).detach().numpy().reshape(1, -1).copy()
        trace.logits = logits.detach().numpy().copy()
        self.trace = trace
        return logits

    def loss(self, x_q: np.ndarray, label: int, label_smoothing: float = 0.0,
             forced: dict[str, np.ndarray] | None = None) -> torch.Tensor:
        """Softmax cross-entropy of one sample (``forced``: see ``forward``)."""
        logits = self.forward(x_q, forced)
        return F.cross_entropy(logits, torch.tensor([int(label)]),
                               label_smoothing=label_smoothing)

    def batch_loss(self, xs: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        """Mean loss over a batch run one sample at a time (gradient accumulation)."""
        losses = [self.loss(x, int(y)) for x, y in zip(xs, labels, strict=True)]
        return torch.stack(losses).mean()
