"""The PyTorch fp32 twin (mcutl/train/twin.py): the build's trainable graph with the frozen
backbone in float32, trained with the device's recipe and sample order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from mcutl.codegen.backbone import quantize_input
from mcutl.compile import load_and_quantize
from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TrainableModel
from mcutl.methods import get_method
from mcutl.ops import get_op
from mcutl.ops._ste import dequant_const
from mcutl.train.recipe import Recipe
from mcutl.train.twin import FloatTwin, train_twin
from mcutl.verify.reference import TorchReference

pytestmark = pytest.mark.host


def _graph(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0) -> Graph:
    torch.manual_seed(seed)
    calib = np.random.default_rng(seed).uniform(0, 1, (16, *shape[1:])).astype(np.float32)
    return load_and_quantize(randomize_batchnorm_stats(spread_init(model)).eval(), calib, shape)


@pytest.fixture(scope="module")
def mbv2() -> Graph:
    return _graph(TinyMBV2(seed=3), (1, 1, 28, 28))


def _trainable(g: Graph, method: str, classes: int = 4) -> TrainableModel:
    m = get_method(method)
    return m.build(g, classes, m.make_spec({}), None)


def _numpy_chain(g: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every backbone tensor by the ops' numpy float references on dequantised constants."""
    vals = {g.inputs[0]: x[None]}
    for node in g.nodes:
        args = [dequant_const(g.tensors[i]) if i and g.tensors[i].is_const else
                (vals[i] if i else None) for i in node.inputs]
        vals[node.outputs[0]] = get_op(node.op, node).reference_f32(node, args)[0]
    return vals


@pytest.mark.parametrize("method", ["last", "repnet", "bias"])
def test_float_backbone_is_the_float_graph(mbv2: Graph, method: str) -> None:
    """Before training, every backbone tensor of the twin is the float graph's value
    (torch ops + fused clamps against the ops' numpy float references)."""
    tm = _trainable(mbv2, method)
    twin = FloatTwin(tm)
    x = np.random.default_rng(1).uniform(0, 1, (28, 28, 1)).astype(np.float32)
    with torch.no_grad():
        twin.forward(x)
    ref = _numpy_chain(tm.backbone, x)
    writes = {n.output for n in tm.nodes if n.op == "quantize"}
    checked = 0
    for name, v in twin.float_values.items():
        if name in writes or name not in ref:  # a connector wrote there: not the graph's
            continue
        np.testing.assert_allclose(v.reshape(ref[name].shape), ref[name], rtol=1e-4,
                                   atol=1e-4 * float(np.abs(ref[name]).max() + 1))
        checked += 1
    assert checked >= 10


def test_twin_is_close_to_the_int8_reference(mbv2: Graph) -> None:
    """The same parameters: the float twin's logits are the int8 reference's up to
    activation rounding (a few per cent), and they pick the same class."""
    tm = _trainable(mbv2, "repnet", classes=10)
    twin, ref = FloatTwin(tm), TorchReference(tm)
    s = mbv2.tensors[mbv2.inputs[0]].quant
    assert s is not None
    rng = np.random.default_rng(2)
    agree, errs = 0, []
    for _ in range(20):
        x = rng.uniform(0, 1, (28, 28, 1)).astype(np.float32)
        xq = quantize_input(x, float(s.scale[0]), int(s.zero_point[0]))
        with torch.no_grad():
            a = ref.forward(xq).numpy()
            b = twin.forward(x).numpy()
        agree += int(a.argmax() == b.argmax())
        errs.append(np.abs(a - b).max() / (np.abs(a).max() + 1e-9))
    assert agree >= 18 and float(np.median(errs)) < 0.1, (agree, np.median(errs))


def test_updates_follow_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """An update every ``batch`` samples and one at the end, each with the recipe's
    learning rate; the gradient scaled to the mean; the sample order of ``seed``."""
    g = _graph(TinyIMU1D(seed=2), (1, 6, 100))
    tm = _trainable(g, "last", classes=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 100, 6)).astype(np.float32)  # NHWC of (6, 100): (W=100, C=6)
    y = rng.integers(0, 3, 7)
    rec = Recipe(lr=0.1, momentum=0.0, schedule="cosine", period=6, gamma=0.0, warmup=1)
    lrs: list[float] = []
    grads: list[float] = []
    real_step = torch.optim.SGD.step

    def spy(self: torch.optim.SGD, closure: object = None) -> object:
        lrs.append(self.param_groups[0]["lr"])
        grads.append(float(sum(float(p.grad.abs().sum()) for p in self.param_groups[0]["params"]
                               if p.grad is not None)))
        return real_step(self)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    res = train_twin(tm, x.reshape(7, 1, 100, 6), y, rec, epochs=2, batch=3, seed=4)
    assert len(res.losses) == 14
    assert len(lrs) == math.ceil(14 / 3) == 5
    assert lrs == pytest.approx([rec.lr_at(t) for t in range(5)])
    assert all(gr > 0 for gr in grads)
    # the order: the losses of a run with the same seed repeat exactly, another seed's not
    again = train_twin(tm, x.reshape(7, 1, 100, 6), y, rec, epochs=2, batch=3, seed=4)
    other = train_twin(tm, x.reshape(7, 1, 100, 6), y, rec, epochs=2, batch=3, seed=5)
    assert again.losses == res.losses and other.losses != res.losses


def test_twin_learns_a_separable_task() -> None:
    """Head-only on frozen features: the fp32 twin fits the training set of a task whose
    labels are a linear function of the backbone's features, from chance to (nearly) all
    correct."""
    g = _graph(TinyIMU1D(seed=5), (1, 6, 100))
    tm = _trainable(g, "last", classes=2)
    twin = FloatTwin(tm)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (60, 1, 100, 6)).astype(np.float32)
    with torch.no_grad():
        feats = []
        for xi in x:
            twin.forward(xi)
            feats.append(twin.float_values[tm.backbone.outputs[0]].reshape(-1))
    f = np.array(feats)
    # the labels: the side of the features' first principal axis (the direction plain SGD
    # learns first; the features of random inputs vary little in most others)
    w = np.linalg.svd(f - f.mean(0), full_matrices=False)[2][0]
    score = (f - f.mean(0)) @ w
    y = (score > np.median(score)).astype(np.int64)
    res = train_twin(tm, x[:40], y[:40], Recipe(lr=0.3, momentum=0.9, schedule="cosine",
                                                period=300, gamma=0.0), epochs=30, batch=4,
                     eval_x=x[:40], eval_y=y[:40])
    assert res.acc_before is not None and res.acc_before <= 0.7
    assert res.acc_after is not None and res.acc_after >= 0.95, res.acc_after
    assert np.mean(res.losses[-40:]) < np.mean(res.losses[:40])
