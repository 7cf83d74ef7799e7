"""Rep-Net: classifier cut, connectors, side modules, and the PyTorch reference of the
training step (int8 forward, straight-through backward) checked against an independent
float64 numpy twin by finite differences."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from mcutl.compile import load_and_quantize
from mcutl.errors import McutlError
from mcutl.ir.graph import Graph, Node, QuantParams, Tensor
from mcutl.ir.trainable import TNode, TrainableModel
from mcutl.methods.common import MethodError
from mcutl.methods.repnet import (
    ClassifierNotFoundError,
    ConnectorError,
    RepNetSpec,
    boundaries,
    build_repnet,
    connectors_of,
    cut_classifier,
    find_connectors,
    group_norm_groups,
    module_of,
)
from mcutl.ops import get_op
from mcutl.ops.f32.base import pair as as_pair
from mcutl.ops.f32.layers import nearest_indices
from mcutl.ops.validate import validate_graph
from mcutl.quant import fixedpoint as fp
from mcutl.quant.int8_exec import run_int8
from mcutl.verify.reference import TorchReference, dequantize

MODELS = {"mbv2": (TinyMBV2, (1, 1, 28, 28)), "imu1d": (TinyIMU1D, (1, 6, 100))}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny tensors: torch's thread pool costs 10x more than it saves here."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _example(name: str) -> Graph:
    cls, shape = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=3), seed=4), seed=5).eval()
    rng = np.random.default_rng(0)
    calib = (rng.random if name == "mbv2" else rng.standard_normal)(
        (32, *shape[1:]), dtype=np.float32)
    return load_and_quantize(model, calib, shape)


@pytest.fixture(scope="module")
def examples() -> dict[str, Graph]:
    return {name: _example(name) for name in MODELS}


def _inputs(g: Graph, n: int, seed: int) -> np.ndarray:
    shape = g.tensors[g.inputs[0]].shape
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape)).astype(np.int8)


def _quantise_torch(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((32, *shape[1:]), dtype=np.float32)
    return load_and_quantize(model.eval(), calib, shape)


class Small(nn.Module):
    """8x8x3 -> conv+ReLU6 (8x8x8) -> conv/2+ReLU (4x4x16) -> dw+ReLU6, pw, residual add
    -> 1x1 conv+ReLU (24) -> GAP -> linear(3)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU6())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU6())
        self.pw = nn.Conv2d(16, 16, 1)
        self.mix = nn.Sequential(nn.Conv2d(16, 24, 1), nn.ReLU())
        self.fc = nn.Linear(24, 3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(self.stem(x))
        y = y + self.pw(self.dw(y))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.mix(y), 1), 1))


@pytest.fixture(scope="module")
def small() -> Graph:
    return _quantise_torch(Small(), (1, 3, 8, 8))


def _small_model(g: Graph, **kw: object) -> TrainableModel:
    cut = cut_classifier(g)
    maps = [t for t in boundaries(cut) if len(cut.tensors[t].shape) == 4]
    c0 = next(t for t in maps if cut.tensors[t].shape == (1, 8, 8, 8))
    c1 = next(t for t in maps if cut.tensors[t].shape == (1, 4, 4, 16))
    return build_repnet(g, 3, RepNetSpec(stages=[c0, c1], **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- structure

def test_connectors_of_the_examples(examples: dict[str, Graph]) -> None:
    mb = build_repnet(examples["mbv2"], 10)
    shapes = [mb.backbone.tensors[c].shape for c in connectors_of(mb)]
    assert shapes == [(1, 7, 7, 24), (1, 4, 4, 32)]  # stage outputs, none at 14x14
    imu = build_repnet(examples["imu1d"], 4)
    assert [imu.backbone.tensors[c].shape for c in connectors_of(imu)] == [(1, 1, 25, 32)]
    for tm in (mb, imu):
        assert connectors_of(tm) == find_connectors(tm.backbone)
        assert set(connectors_of(tm)) <= set(boundaries(tm.backbone))
        assert tm.backbone.outputs != connectors_of(tm)[-1:]


def test_cut_classifier(examples: dict[str, Graph]) -> None:
    g = examples["mbv2"]
    cut = cut_classifier(g)
    out = cut.tensors[cut.outputs[0]]
    assert out.shape == (1, 64) and out.dtype == "int8"
    assert "linear" not in {n.op for n in cut.nodes}
    assert len(g.nodes) == len(cut.nodes) + 1  # the input graph is untouched
    x = _inputs(g, 1, 0)[0]
    full = run_int8(g, x)
    np.testing.assert_array_equal(run_int8(cut, x)[cut.outputs[0]], full[cut.outputs[0]])
    # --cut by node name: a 4-D map is flattened (a view)
    at = cut_classifier(g, cut="head.0")
    assert at.tensors[at.outputs[0]].shape == (1, 4 * 4 * 64)
    assert at.nodes[-1].op == "reshape"
    # --cut at the output of an already cut graph changes nothing
    again = cut_classifier(cut, cut=cut.outputs[0])
    assert [n.name for n in again.nodes] == [n.name for n in cut.nodes]
    with pytest.raises(ClassifierNotFoundError, match="--cut"):
        cut_classifier(cut)
    with pytest.raises(MethodError, match="Did you mean"):
        cut_classifier(g, cut="head.O")
    with pytest.raises(MethodError, match="graph input"):
        cut_classifier(g, cut=g.inputs[0])
    assert issubclass(ClassifierNotFoundError, McutlError)


def test_modules_shapes_and_parameter_counts(examples: dict[str, Graph]) -> None:
    tm = build_repnet(examples["mbv2"], 10)
    i0, i1 = tm.info["modules"]
    assert (i0["source"], i0["target"]) == ("x", connectors_of(tm)[0])
    assert (i1["source"], i1["target"]) == (connectors_of(tm)[0], connectors_of(tm)[1])
    m0, m1 = module_of(tm, 0), module_of(tm, 1)
    assert [(n.name, tm.shapes[n.output]) for n in m0] == [
        ("m0_avgpool0", (1, 7, 7, 1)), ("m0_conv1", (1, 7, 7, 8)),
        ("m0_groupnorm2", (1, 7, 7, 8)), ("m0_relu3", (1, 7, 7, 8)),
        ("m0_conv4", (1, 7, 7, 24)), ("m0_groupnorm5", (1, 7, 7, 24))]
    assert [(n.name, tm.shapes[n.output]) for n in m1] == [
        ("m1_avgpool0", (1, 3, 3, 24)), ("m1_conv1", (1, 3, 3, 16)),
        ("m1_groupnorm2", (1, 3, 3, 16)), ("m1_relu3", (1, 3, 3, 16)),
        ("m1_conv4", (1, 3, 3, 32)), ("m1_groupnorm5", (1, 3, 3, 32)),
        ("m1_resize6", (1, 4, 4, 32))]
    assert m0[1].attrs["groups"] == 1 and m1[1].attrs["groups"] == 2
    assert m1[1].params["weight"].shape == (16, 3, 3, 12)
    assert m1[2].attrs == {"groups": 2, "eps": 1e-5}
    assert m1[5].attrs["groups"] == 4
    assert tm.parameter_count() == 328 + 2336 + 650
    head = tm.node("head").params
    assert head["weight"].shape == (10, 64) and head["bias"].shape == (10,)
    # the last norm's gamma is 0, every other gamma 1, betas 0
    for m in (m0, m1):
        norms = [n for n in m if n.op == "groupnorm"]
        assert np.all(norms[0].params["gamma"] == 1) and np.all(norms[-1].params["gamma"] == 0)
        assert all(np.all(n.params["beta"] == 0) for n in norms)
    imu = build_repnet(examples["imu1d"], 4)
    layers = module_of(imu, 0)
    assert layers[0].attrs["k"] == (1, 4) and imu.shapes[layers[0].output] == (1, 1, 25, 6)
    assert layers[1].attrs["k"] == (1, 3) and layers[1].attrs["pad"] == (0, 1)
    assert layers[1].params["weight"].shape == (8, 1, 3, 6)
    assert imu.parameter_count() == 144 + 16 + 256 + 64 + 4 * 48 + 4


def test_parameters_order_names_and_init_are_stable(examples: dict[str, Graph]) -> None:
    a = build_repnet(examples["mbv2"], 10)
    b = build_repnet(examples["mbv2"], 10)
    names = [n for n, _ in a.parameters()]
    assert names == [
        "m0_conv1.weight", "m0_groupnorm2.beta", "m0_groupnorm2.gamma", "m0_conv4.weight",
        "m0_groupnorm5.beta", "m0_groupnorm5.gamma", "m1_conv1.weight", "m1_groupnorm2.beta",
        "m1_groupnorm2.gamma", "m1_conv4.weight", "m1_groupnorm5.beta", "m1_groupnorm5.gamma",
        "head.weight", "head.bias"]
    for (na, va), (nb, vb) in zip(a.parameters(), b.parameters(), strict=True):
        assert na == nb and va.dtype == np.float32
        np.testing.assert_array_equal(va, vb)
    c = build_repnet(examples["mbv2"], 10, RepNetSpec(seed=1))
    assert not np.array_equal(a.node("head").params["weight"], c.node("head").params["weight"])
    # head: nn.Linear's default distribution U(+-1/sqrt(C)), drawn with numpy (the same
    # bits on every CPU): bounded, spread over the whole range, independent of torch
    hw = a.node("head").params["weight"]
    assert np.abs(hw).max() <= 1 / 8 and np.abs(hw).max() > 0.9 / 8 and abs(hw.mean()) < 0.02
    torch.manual_seed(123)
    np.testing.assert_array_equal(build_repnet(examples["mbv2"], 10).node("head").params[
        "weight"], hw)
    # He-normal conv weights
    w = module_of(a, 1)[1].params["weight"]
    assert abs(float(w.std()) - (2.0 / (3 * 3 * 12)) ** 0.5) < 0.05
    ref = TorchReference(a)
    assert [n for n, _ in ref.named_trainable()] == names
    assert [p.data_ptr() for p in ref.parameters()] == [
        p.data_ptr() for _, p in ref.named_trainable()]
    # scale_shift option
    s = build_repnet(examples["mbv2"], 10, RepNetSpec(norm="scale_shift"))
    assert {n.op for n in s.nodes} >= {"scale_shift"}


def _graph(nodes: list[tuple[str, str, list[str], str, dict]], shapes: dict[str, tuple],
           consts: dict[str, np.ndarray]) -> Graph:
    """A quantised graph by hand (scale 0.05, zero point 0 everywhere)."""
    tensors: dict[str, Tensor] = {}
    for name, shape in shapes.items():
        tensors[name] = Tensor(name, shape, "int8", None, QuantParams([0.05], [0]))
    for name, data in consts.items():
        if data.dtype == np.int8:
            q = QuantParams(np.full(data.shape[0], 0.01), np.zeros(data.shape[0]), axis=0)
            tensors[name] = Tensor(name, data.shape, "int8", data, q)
        else:
            q = QuantParams(np.full(data.shape[0], 0.0005), np.zeros(data.shape[0]), axis=0)
            tensors[name] = Tensor(name, data.shape, "int32", data, q)
    g = Graph(tensors, [Node(n, op, ins, [out], attrs) for n, op, ins, out, attrs in nodes],
              ["x"], [nodes[-1][3]])
    validate_graph(g)
    return g


def _conv(name: str, x: str, out: str, c_in: int, c_out: int, k: int = 3, stride: int = 1,
          act: str = "relu", groups: int = 1) -> tuple[tuple, dict[str, np.ndarray]]:
    rng = np.random.default_rng(len(name))
    w = rng.integers(-127, 128, (c_out, k, k, c_in // groups)).astype(np.int8)
    b = rng.integers(-500, 500, c_out).astype(np.int32)
    p = k // 2
    node = (name, "conv2d", [x, f"{name}.w", f"{name}.b"], out,
            {"stride": (stride, stride), "pad": (p, p, p, p), "groups": groups,
             "dilation": (1, 1), "act": act})
    return node, {f"{name}.w": w, f"{name}.b": b}


def test_connectors_on_odd_graphs(small: Graph) -> None:
    # a single conv (no classifier: --cut needed)
    node, consts = _conv("c", "x", "y", 3, 4)
    single = _graph([node], {"x": (1, 8, 8, 3), "y": (1, 8, 8, 4)}, consts)
    with pytest.raises(ClassifierNotFoundError):
        build_repnet(single, 2)
    tm = build_repnet(single, 2, cut="c")
    assert connectors_of(tm) == ["y"]  # the only map: the fallback
    assert module_of(tm, 0)[-1].op == "resize"
    assert tm.backbone.tensors[tm.backbone.outputs[0]].shape == (1, 8 * 8 * 4)
    x = np.zeros((1, 8, 8, 3), np.int8)
    assert TorchReference(tm)(x).shape == (1, 2)

    # a plain chain with a max pool: connectors only after it (no backward through it)
    n1, c1 = _conv("c1", "x", "a", 3, 8)
    n2, c2 = _conv("c2", "b", "c", 8, 16, stride=2)
    n3, c3 = _conv("c3", "c", "d", 16, 16, stride=2)
    nodes = [n1, ("mp", "maxpool2d", ["a"], "b",
                  {"kernel": (2, 2), "stride": (2, 2), "pad": (0, 0, 0, 0)}), n2, n3,
             ("gap", "global_avgpool", ["d"], "e", {}),
             ("flat", "reshape", ["e"], "f", {"shape": (1, 16)})]
    shapes = {"x": (1, 32, 32, 3), "a": (1, 32, 32, 8), "b": (1, 16, 16, 8),
              "c": (1, 8, 8, 16), "d": (1, 4, 4, 16), "e": (1, 1, 1, 16), "f": (1, 16)}
    chain = _graph(nodes, shapes, {**c1, **c2, **c3})
    cut = cut_classifier(chain, cut="f")
    assert boundaries(cut) == ["a", "b", "c", "d", "e"]
    assert find_connectors(cut) == ["c", "d"]
    assert find_connectors(cut, first_pool=8) == ["d"]
    with pytest.raises(ConnectorError, match="'mp'.*cannot be crossed"):
        build_repnet(chain, 2, RepNetSpec(stages=["a", "c"]), cut="f")
    with pytest.raises(ConnectorError, match="graph order"):
        build_repnet(chain, 2, RepNetSpec(stages=["d", "c"]), cut="f")
    with pytest.raises(ConnectorError, match="Did you mean"):
        build_repnet(chain, 2, RepNetSpec(stages=["cc"]), cut="f")

    # residual blocks: no connector inside a block (a skip crosses it)
    cut_small = cut_classifier(small)
    dw = next(n.outputs[0] for n in cut_small.nodes if n.attrs.get("groups") == 16)
    assert dw not in boundaries(cut_small)
    assert len(find_connectors(cut_small)) == 1  # 8x8 input: the fallback picks one


def test_nearest_resize_indices() -> None:
    assert nearest_indices(3, 4).tolist() == [0, 0, 1, 2]
    assert nearest_indices(7, 4).tolist() == [0, 1, 3, 5]
    assert nearest_indices(2, 8).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    for n_in, n_out in ((3, 4), (2, 8), (5, 10), (7, 7)):  # agrees with torch where exact
        x = torch.arange(float(n_in)).view(1, 1, 1, n_in)
        y = nn.functional.interpolate(x, size=(1, n_out), mode="nearest")
        assert y.view(-1).long().tolist() == nearest_indices(n_in, n_out).tolist()


def test_group_norm_groups() -> None:
    assert [group_norm_groups(c) for c in (1, 6, 8, 12, 16, 20, 24, 32, 48)] == [
        1, 1, 1, 1, 2, 2, 3, 4, 6]


# ---------------------------------------------------------------------------- reference

@pytest.mark.parametrize("name", sorted(MODELS))
def test_zero_init_logits_are_the_int8_features_times_the_head(
        examples: dict[str, Graph], name: str) -> None:
    tm = build_repnet(examples[name], 5)
    ref = TorchReference(tm)
    g = tm.backbone
    feat = g.tensors[g.outputs[0]]
    assert feat.quant is not None
    for x in _inputs(g, 3, 7):
        logits = ref(x).detach().numpy()
        outs = [module_of(tm, i)[-1].output for i in range(len(connectors_of(tm)))]
        assert all(np.all(ref.trace.values[o] == 0) for o in outs)
        q = run_int8(g, x)
        for c in connectors_of(tm):  # connectors requantise to exactly the backbone's value
            np.testing.assert_array_equal(ref.trace.int8[c], q[c])
        f = dequantize(q[g.outputs[0]], float(feat.quant.scale[0]),
                       int(feat.quant.zero_point[0]))
        np.testing.assert_array_equal(ref.trace.features, f)
        head = tm.node("head").params
        np.testing.assert_allclose(logits, f @ head["weight"].T + head["bias"],
                                   rtol=1e-6, atol=1e-6)


def test_ste_mask_is_the_kernel_clamp() -> None:
    """ReLU6 with a wide output scale: both bounds are hit inside int8, and the gradient
    through the node is the float conv's, zeroed exactly where the int8 output is clamped."""
    node, consts = _conv("c", "x", "y", 3, 6, act="relu6")
    g = _graph([node], {"x": (1, 6, 6, 3), "y": (1, 6, 6, 6)}, consts)
    yq = g.tensors["y"].quant
    assert yq is not None
    yq.scale[:] = 12.0 / 255
    yq.zero_point[:] = -128
    n = g.nodes[0]
    op = get_op("conv2d")
    x = np.random.default_rng(0).integers(-128, 128, (1, 6, 6, 3)).astype(np.int8)
    out = op.reference_int8(n, g, [x, None, None])[0]
    lo, hi = -128, -128 + int(np.floor(6 / (12 / 255) + 0.5))
    assert (lo, hi) == fp.activation_range("RELU6", 12.0 / 255, -128) == (-128, 0)
    mask = op.ste_mask(n, g, out)
    assert mask is not None
    np.testing.assert_array_equal(mask, (out > lo) & (out < hi))
    assert 0 < mask.mean() < 1 and np.any(out == hi) and np.any(out == lo)
    # the gradient: autograd of the float conv (dequantised weights), masked
    from mcutl.verify.reference import straight_through

    xr = torch.from_numpy(dequantize(x, 0.05, 0)).requires_grad_(True)
    shadow = op.torch_forward_f32(n, g, [xr, None, None])
    y = straight_through(shadow, dequantize(out, 12.0 / 255, -128), mask)
    np.testing.assert_array_equal(y.detach().numpy(), dequantize(out, 12.0 / 255, -128))
    gout = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (gx,) = torch.autograd.grad(y, xr, gout)
    w = torch.from_numpy(consts["c.w"].astype(np.float32) * np.float32(0.01))
    xr2 = xr.detach().permute(0, 3, 1, 2).requires_grad_(True)
    ref = nn.functional.conv2d(xr2, w.permute(0, 3, 1, 2), None, 1, 1)
    (gx2,) = torch.autograd.grad(ref, xr2, (gout * torch.from_numpy(mask)).permute(0, 3, 1, 2))
    np.testing.assert_allclose(gx.numpy(), gx2.permute(0, 2, 3, 1).numpy(), rtol=1e-6,
                               atol=1e-6)
    # ReLU: bound act_min only; a standalone relu node uses its own kernel params
    node_r, consts_r = _conv("r", "x", "y", 3, 6, act="relu")
    gr = _graph([node_r], {"x": (1, 6, 6, 3), "y": (1, 6, 6, 6)}, consts_r)
    out_r = op.reference_int8(gr.nodes[0], gr, [x, None, None])[0]
    np.testing.assert_array_equal(op.ste_mask(gr.nodes[0], gr, out_r), out_r > 0)
    ga = _graph([("act", "relu", ["x"], "y", {})], {"x": (1, 6, 6, 3), "y": (1, 6, 6, 3)}, {})
    np.testing.assert_array_equal(get_op("relu").ste_mask(ga.nodes[0], ga, x), x > 0)


# ---- the float64 twin: the same straight-through linearisation, written independently

def _conv_np(x: np.ndarray, w: np.ndarray, stride: tuple[int, int],
             pad: tuple[int, int, int, int], groups: int) -> np.ndarray:
    """NHWC x, OHWI w, float64, explicit loops over taps and groups."""
    t, left, b, r = pad
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))
    co, kh, kw, cg = w.shape
    ho = (xp.shape[1] - kh) // stride[0] + 1
    wo = (xp.shape[2] - kw) // stride[1] + 1
    og = co // groups
    y = np.zeros((1, ho, wo, co))
    for gi in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i:i + stride[0] * (ho - 1) + 1:stride[0],
                           j:j + stride[1] * (wo - 1) + 1:stride[1], gi * cg:(gi + 1) * cg]
                y[..., gi * og:(gi + 1) * og] += patch @ w[gi * og:(gi + 1) * og, i, j, :].T
    return y


def _layer_np(layer: TNode, x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    a = layer.attrs
    if layer.op == "avgpool":
        kh, kw = as_pair(a["k"])
        h, w = x.shape[1] // kh, x.shape[2] // kw
        return x[:, :h * kh, :w * kw].reshape(1, h, kh, w, kw, -1).mean(axis=(2, 4))
    if layer.op == "conv":
        ph, pw = as_pair(a["pad"])
        return _conv_np(x, p["weight"], (1, 1), (ph, pw, ph, pw), int(a["groups"]))
    if layer.op == "groupnorm":
        gr = int(a["groups"])
        v = x.reshape(1, x.shape[1] * x.shape[2], gr, -1)
        mu = v.mean(axis=(1, 3), keepdims=True)
        var = ((v - mu) ** 2).mean(axis=(1, 3), keepdims=True)
        xh = ((v - mu) / np.sqrt(var + float(a["eps"]))).reshape(x.shape)
        return xh * p["gamma"] + p["beta"]
    if layer.op == "scale_shift":
        return x * p["gamma"] + p["beta"]
    if layer.op == "relu":
        return np.maximum(x, 0)
    if layer.op == "resize":
        h, w = a["size"]
        rows = np.arange(h) * x.shape[1] // h
        cols = np.arange(w) * x.shape[2] // w
        return x[:, rows][:, :, cols]
    raise AssertionError(layer.op)


def _linear_delta(node: Node, g: Graph, d: list[np.ndarray | None]) -> np.ndarray:
    """The change of a frozen node's real output for input changes d (its linear part)."""
    out_shape = g.tensors[node.outputs[0]].shape
    if node.op == "conv2d":
        w = g.tensors[node.inputs[1]]
        assert w.data is not None and w.quant is not None
        wf = w.data.astype(np.float64) * w.quant.scale.astype(np.float64)[:, None, None, None]
        assert d[0] is not None
        return _conv_np(d[0], wf, tuple(node.attrs["stride"]), tuple(node.attrs["pad"]),
                        int(node.attrs["groups"]))
    if node.op == "add":
        return sum(v if v is not None else 0.0 for v in d) + np.zeros(out_shape)
    if node.op == "global_avgpool":
        assert d[0] is not None
        return d[0].mean(axis=(1, 2), keepdims=True)
    if node.op == "reshape":
        assert d[0] is not None
        return d[0].reshape(out_shape)
    raise AssertionError(node.op)


def _mask_np(node: Node, g: Graph, q: np.ndarray) -> np.ndarray | None:
    """The fused activation's derivative, judged on the int8 output (strictly inside
    the int8 clamp bounds zp + round(0 / s) and zp + round(6 / s))."""
    act = node.attrs.get("act", "none")
    if act == "none":
        return None
    t = g.tensors[node.outputs[0]].quant
    assert t is not None
    s, zp = float(t.scale[0]), int(t.zero_point[0])
    lo = max(-128, zp)
    hi = min(127, zp + int(np.floor(6.0 / s + 0.5)))
    q = q.astype(np.int32)
    return (q > lo) & (q < hi) if act == "relu6" else q > lo


def _twin_loss(tm: TrainableModel, ref: TorchReference, theta: dict[str, np.ndarray],
               x_q: np.ndarray, label: int) -> float:
    """Loss of the straight-through linearisation around the reference's last forward."""
    g, tr = tm.backbone, ref.trace

    def deq(name: str, q: np.ndarray) -> np.ndarray:
        t = g.tensors[name].quant
        assert t is not None
        return (q.astype(np.float64) - int(t.zero_point[0])) * float(t.scale[0])

    src = {g.inputs[0]: deq(g.inputs[0], x_q)}
    delta: dict[str, np.ndarray] = {}
    conn = {m["target"]: (m, module_of(tm, m["index"])) for m in tm.info["modules"]}
    for node in g.nodes:
        out = node.outputs[0]
        if any(i in delta for i in node.inputs):
            dv = _linear_delta(node, g, [delta.get(i) for i in node.inputs])
            mask = _mask_np(node, g, tr.raw.get(out, tr.int8[out]))
            delta[out] = dv if mask is None else dv * mask
        if out in conn:
            info, layers = conn[out]
            p = src[info["source"]]
            for layer in layers:
                p = _layer_np(layer, p, {k: theta[f"{layer.name}.{k}"] for k in layer.params})
            msum = deq(out, tr.raw[out]) + delta.get(out, 0.0) + p
            # the clamp to int8 out's range, linearised: its derivative is the mask of
            # the int8 values inside (-128, 127); the rounding is straight-through
            q = g.tensors[out].quant
            assert q is not None
            s32, zp = np.float32(q.scale[0]), int(q.zero_point[0])
            at = tr.values[f"sum_{out}"].astype(np.float64)
            clamped = np.clip(at, float(s32 * np.float32(-128 - zp)),
                              float(s32 * np.float32(127 - zp)))
            used = tr.used[out].reshape(at.shape)
            delta[out] = (msum - at) * ((used > -128) & (used < 127))
            src[out] = clamped + delta[out]
    fo = g.outputs[0]
    feat = (deq(fo, tr.int8[fo]) + delta.get(fo, 0.0)).reshape(1, -1)
    logits = feat @ theta["head.weight"].T + theta["head.bias"]
    z = logits[0] - logits[0].max()
    return float(np.log(np.exp(z).sum()) - z[label])


def _perturb(tm: TrainableModel, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in tm.nodes:
        if "gamma" in layer.params:
            layer.params["gamma"][:] = rng.uniform(0.5, 1.5, layer.params["gamma"].shape)
            layer.params["beta"][:] = rng.normal(0, 0.2, layer.params["beta"].shape)


@pytest.mark.parametrize("norm", ["groupnorm", "scale_shift"])
def test_gradients_match_finite_differences_of_a_float64_twin(small: Graph, norm: str) -> None:
    tm = _small_model(small, norm=norm)
    _perturb(tm, 1)
    ref = TorchReference(tm)
    rng = np.random.default_rng(2)
    x = _inputs(tm.backbone, 1, 3)[0]
    label = 1
    loss = ref.loss(x, label)
    loss.backward()
    theta = {n: a.astype(np.float64) for n, a in tm.parameters()}
    assert abs(_twin_loss(tm, ref, theta, x, label) - loss.item()) < 1e-5
    assert any(m is not None and 0 < m.mean() < 1 for m in ref.trace.masks.values())
    h = 1e-6
    checked = 0
    for name, p in ref.named_trainable():
        grad = p.grad.numpy()
        assert np.abs(grad).max() > 0, f"{name}: no gradient reaches it"
        flat = theta[name].reshape(-1)
        for k in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[k]
            flat[k] = old + h
            up = _twin_loss(tm, ref, theta, x, label)
            flat[k] = old - h
            down = _twin_loss(tm, ref, theta, x, label)
            flat[k] = old
            fd = (up - down) / (2 * h)
            g = float(grad.reshape(-1)[k])
            assert abs(g - fd) <= 1e-3 * max(abs(fd), 1e-2), (name, k, g, fd)
            checked += 1
    assert checked > 50


def test_training_lowers_the_loss(small: Graph) -> None:
    """30 SGD steps (momentum 0.9, batches of 4 by accumulation) on a separable toy set;
    also with the head frozen, so only the side network (through the frozen int8
    backbone's straight-through backward) can lower it. (That is slower: a module's
    output changes the int8 backbone only once it exceeds half a quantisation step.)"""
    rng = np.random.default_rng(5)
    n = 24
    labels = np.arange(n) % 3
    xs = rng.integers(-60, 20, (n, 1, 8, 8, 3))
    for i, y in enumerate(labels):  # class = which third of the rows is bright
        xs[i, 0, 3 * y:3 * y + 2, :, :] += 100
    xs = xs.astype(np.int8)
    for train_head, lr, factor in ((True, 0.05, 0.5), (False, 0.3, 0.9)):
        tm = _small_model(small)
        ref = TorchReference(tm)
        params = [p for name, p in ref.named_trainable()
                  if train_head or not name.startswith("head.")]
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
        with torch.no_grad():
            before = float(ref.batch_loss(xs, labels))
        for step in range(30):
            idx = rng.choice(n, 4, replace=False)
            opt.zero_grad()
            ref.batch_loss(xs[idx], labels[idx]).backward()
            opt.step()
            del step
        with torch.no_grad():
            after = float(ref.batch_loss(xs, labels))
        assert after < factor * before, (train_head, before, after)
        gammas = [p for name, p in ref.named_trainable() if name.endswith("5.gamma")]
        assert all(float(gm.detach().abs().max()) > 0 for gm in gammas)
    ref.load_into()
    assert dict(tm.parameters())["m0_groupnorm5.gamma"].any()
