"""The PyTorch fp32 twin of a build's on-device training: what the same method and recipe
reach in float32, to put beside the device's accuracy.

The twin is the build's trainable graph (mcutl/ir/trainable.py: the method's side network,
connectors, trained biases or shifts and head, with the build's initial values) trained
with the device's recipe (mcutl/train/recipe.py), sample order and update boundaries
(as `mcutl.train.loop.train`), but with the frozen backbone run in float32: every
backbone node is its op's ``torch_forward_f32`` on the dequantised int8 weights followed
by its fused ReLU/ReLU6, activations are never rounded or saturated, a connector writes
its float value into the backbone (through the activation of the tensor it writes: a
shift or side output added to a ReLU6 output stays in [0, 6], as on the device, where
the int8 range of such a tensor starts at 0), and autograd gives the exact float
backward (no straight-through rule). The difference between the twin and the device is therefore
what int8 activations and the straight-through backward cost; the weights are the
deployed ones in both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcutl.errors import McutlError
from mcutl.ir.graph import Node
from mcutl.ir.trainable import TrainableModel
from mcutl.ops import get_op
from mcutl.ops._ste import dequant_const
from mcutl.ops.base import UnsupportedOpError
from mcutl.ops.f32 import get_float_op
from mcutl.train.recipe import Recipe
from mcutl.verify.reference import TorchReference

_CLAMPS: dict[str, tuple[float, float | None]] = {"relu": (0.0, None), "relu6": (0.0, 6.0)}


class FloatTwin(TorchReference):
    """A TrainableModel as a float32 torch module (see the module docstring). Parameters,
    their order and names are the reference's (``named_trainable``)."""

    def __init__(self, model: TrainableModel) -> None:
        super().__init__(model)
        g = model.backbone
        # the original bias of each conv whose bias is trained, to swap for the parameter
        self._bias0 = {node: torch.from_numpy(dequant_const(g.tensors[t]))
                       for node, t in self._bias_tensor.items()}
        self.float_values: dict[str, np.ndarray] = {}

    def _node(self, node: Node, values: dict[str, torch.Tensor]) -> torch.Tensor:
        g = self.model.backbone
        op = get_op(node.op, node)
        ins: list[torch.Tensor | None] = [
            None if not i or g.tensors[i].is_const else values[i] for i in node.inputs]
        try:
            y = op.torch_forward_f32(node, g, ins)
        except UnsupportedOpError:
            if any(t is not None and t.requires_grad for t in ins):
                raise
            # no gradient crosses here (e.g. a max pool before every connector): the
            # op's numpy float reference, its activation included
            args = [dequant_const(g.tensors[i]) if i and g.tensors[i].is_const else
                    (None if t is None else t.numpy()) for i, t in zip(node.inputs, ins,
                                                                       strict=True)]
            return torch.from_numpy(np.asarray(op.reference_f32(node, args)[0], np.float32))
        if node.name in self._biases:
            p = self.param(f"{self._biases[node.name].name}.bias")
            y = y + (p - self._bias0[node.name])
        return _activation(node, y)

    def forward(self, x: np.ndarray, forced: dict[str, np.ndarray] | None = None
                ) -> torch.Tensor:
        """Logits (1, num_classes) of one float NHWC input (1, H, W, C) or (H, W, C)."""
        g = self.model.backbone
        x = np.asarray(x, np.float32)
        if x.ndim == len(g.tensors[g.inputs[0]].shape) - 1:
            x = x[None]
        values: dict[str, torch.Tensor] = {g.inputs[0]: torch.from_numpy(x)}
        fv: dict[str, torch.Tensor] = {}

        def after(name: str) -> None:
            for n in self._after.get(name, []):
                fop = get_float_op(n.op, n)
                if fop.writes_backbone:  # keeps the activation of the tensor it writes
                    values[n.output] = _activation(
                        self._producer[n.output], fv[n.inputs[0]].reshape(
                            values[n.output].shape))
                elif fop.reads_backbone:  # as the reference: the value itself
                    fv[n.output] = values[n.inputs[0]].reshape(self.model.shapes[n.output])
                else:
                    params = {k: self.param(f"{n.name}.{k}") for k in n.params}
                    fv[n.output] = fop.torch_forward(n, [fv[i] for i in n.inputs], params)

        after(g.inputs[0])
        for node in g.nodes:
            if len(node.outputs) != 1:
                raise McutlError(f"the fp32 twin runs single-output backbone nodes; "
                                 f"{node.name} ({node.op}) has {len(node.outputs)}")
            values[node.outputs[0]] = self._node(node, values)
            after(node.outputs[0])
        #: the last forward's float backbone values (after any connector wrote them)
        self.float_values = {k: v.detach().numpy() for k, v in values.items()}
        return fv[self.model.logits].reshape(1, -1)

    def predict(self, xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.array([int(self.forward(x).argmax()) for x in xs])


def _activation(node: Node, y: torch.Tensor) -> torch.Tensor:
    """``y`` through the ReLU/ReLU6 that ``node`` fuses (or is), if any."""
    act = node.op if node.op in _CLAMPS else node.attrs.get("act", "none")
    if act not in _CLAMPS:
        return y
    lo, hi = _CLAMPS[act]
    return y.clamp(min=lo) if hi is None else y.clamp(lo, hi)


@dataclass
class TwinResult:
    losses: list[float] = field(default_factory=list)
    acc_before: float | None = None
    acc_after: float | None = None


def train_twin(tm: TrainableModel, x: np.ndarray, y: np.ndarray, recipe: Recipe, *,
               optimizer: str = "sgd", adam: Sequence[float] = (0.9, 0.999, 1e-8),
               epochs: int = 1, batch: int = 1, seed: int = 0,
               eval_x: np.ndarray | None = None, eval_y: np.ndarray | None = None,
               label_smoothing: float = 0.0,
               progress: Callable[[int, int, float], None] | None = None) -> TwinResult:
    """Train the fp32 twin of ``tm`` (its parameters are not changed: the twin copies
    them) on float NHWC inputs ``x`` as `mcutl.train.loop.train` trains the device: the
    same sample order for ``seed``, an update every ``batch`` samples and at the end,
    the recipe's learning rate of each update, its mean or sum and clipping."""
    twin = FloatTwin(tm)
    params = [p for _, p in twin.named_trainable()]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
    else:
        b1, b2, eps = adam
        opt = torch.optim.Adam(params, lr=recipe.lr, betas=(b1, b2), eps=eps,
                               weight_decay=recipe.weight_decay)
    res = TwinResult()
    if eval_x is not None and eval_y is not None:
        res.acc_before = float((twin.predict(eval_x) == eval_y).mean())
    rng = np.random.default_rng(seed)
    total, k, in_batch, updates = epochs * len(x), 0, 0, 0
    for _ in range(epochs):
        for i in rng.permutation(len(x)):
            loss = torch.nn.functional.cross_entropy(
                twin.forward(x[i]), torch.tensor([int(y[i])]), label_smoothing=label_smoothing)
            loss.backward()
            res.losses.append(float(loss.detach()))
            k += 1
            in_batch += 1
            if k % batch == 0 or k == total:
                _update(opt, params, recipe, updates, in_batch)
                updates += 1
                in_batch = 0
            if progress is not None:
                progress(k, total, res.losses[-1])
    if eval_x is not None and eval_y is not None:
        res.acc_after = float((twin.predict(eval_x) == eval_y).mean())
    return res


def _update(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], recipe: Recipe,
            t: int, samples: int) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(np.sqrt(sum(float((g.double() ** 2).sum()) for g in grads)))
    scale = recipe.grad_scale(samples, norm)
    with torch.no_grad():
        for gr in grads:
            gr.mul_(scale)
    for group in opt.param_groups:
        group["lr"] = recipe.lr_at(t)
    opt.step()
    opt.zero_grad()


def twin_of(build: Path) -> tuple[Any, TrainableModel]:
    """(build info, trainable model) of a training build, for :func:`train_twin`."""
    from mcutl.verify.harness import load_trainable

    return load_trainable(build)
