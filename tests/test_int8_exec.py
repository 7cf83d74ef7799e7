"""The numpy int8 executor (mcutl.quant.int8_exec, each op's reference_int8) equals
tflite-runtime's reference kernels bit for bit, on the example backbones and on a graph
that uses every op; its hook replaces tensors as they are produced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from examples.backbones import TinyIMU1D, TinyMBV2, randomize_batchnorm_stats, spread_init
from mcutl.codegen.context import CContext
from mcutl.compile import load_and_quantize
from mcutl.ir.graph import Graph
from mcutl.ops import get_op
from mcutl.quant.int8_exec import Int8ExecError, run_int8
from mcutl.tflite.export import export_tflite
from mcutl.tflite.oracle import run_tflite_ref

MODELS = {"mbv2": (TinyMBV2, (1, 1, 28, 28)), "imu1d": (TinyIMU1D, (1, 6, 100))}


def quantised_example(name: str) -> Graph:
    cls, shape = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=3), seed=4), seed=5).eval()
    rng = np.random.default_rng(0)
    if name == "mbv2":
        calib = rng.random((32, *shape[1:]), dtype=np.float32)
    else:
        calib = rng.standard_normal((32, *shape[1:]), dtype=np.float32)
    return load_and_quantize(model, calib, shape)


@pytest.fixture(scope="module", params=sorted(MODELS))
def example(request: pytest.FixtureRequest) -> Graph:
    return quantised_example(request.param)


def _random_inputs(g: Graph, n: int, seed: int) -> np.ndarray:
    shape = g.tensors[g.inputs[0]].shape
    return np.random.default_rng(seed).integers(-128, 128, (n, *shape)).astype(np.int8)


@pytest.mark.tflite
def test_examples_equal_tflite_bit_for_bit(example: Graph) -> None:
    g = example
    tfl = export_tflite(g)
    xs = _random_inputs(g, 50, 1)
    ours = np.stack([run_int8(g, x)[g.outputs[0]] for x in xs])
    ref = np.stack([run_tflite_ref(tfl, [x])[0] for x in xs])
    assert ours.dtype == np.int8 and ours.shape == ref.shape
    assert len({r.tobytes() for r in ref}) > 40  # the outputs depend on the input
    np.testing.assert_array_equal(ours, ref)


class Zoo(nn.Module):
    """Every op: grouped conv, max pool, standalone ReLU, padded average pool, pointwise,
    depthwise + ReLU6, concat, residual add, global average pool, linear."""

    def __init__(self, c_in: int, c1: int, groups: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = c1 * groups
        self.conv = nn.Conv2d(c_in, c, 3, 2, 1, groups=groups)
        self.bn = nn.BatchNorm2d(c)
        self.pool = nn.MaxPool2d(2, 1)
        self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.pw = nn.Conv2d(c, c, 1)
        self.dw = nn.Conv2d(c, c, 3, 1, 1, groups=c)
        self.mix = nn.Conv2d(2 * c, c, 1)
        self.fc = nn.Linear(c, 5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.pool(self.bn(self.conv(x))))
        a = self.pw(self.avg(y))
        b = torch.clamp(self.dw(y), 0, 6)
        z = self.mix(torch.cat([a, b], 1)) + y
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


@pytest.mark.tflite
@pytest.mark.parametrize(("c_in", "c1", "groups", "hw", "seed"),
                         [(3, 4, 1, (9, 11), 0), (4, 3, 2, (12, 7), 1), (6, 2, 3, (8, 8), 2)])
def test_every_op_equals_tflite(c_in: int, c1: int, groups: int, hw: tuple[int, int],
                                seed: int) -> None:
    shape = (1, c_in, *hw)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((16, *shape[1:]), dtype=np.float32)
    g = load_and_quantize(Zoo(c_in, c1, groups, seed).eval(), calib, shape)
    ops = {n.op for n in g.nodes}
    assert {"conv2d", "maxpool2d", "avgpool2d", "concat", "add", "global_avgpool",
            "reshape", "linear"} <= ops, ops
    assert "relu" in ops  # standalone (a max pool cannot take a fused activation)
    assert any(n.attrs.get("act") == "relu6" for n in g.nodes)
    tfl = export_tflite(g)
    for x in _random_inputs(g, 12, seed):
        np.testing.assert_array_equal(run_int8(g, x)[g.outputs[0]], run_tflite_ref(tfl, [x])[0])


def test_returns_every_activation_and_reshape_is_a_view(example: Graph) -> None:
    g = example
    x = _random_inputs(g, 1, 2)[0]
    values = run_int8(g, x)
    assert set(values) == set(g.activations())
    for n in g.nodes:
        if n.op == "reshape":
            assert np.shares_memory(values[n.inputs[0]], values[n.outputs[0]])
    for name, v in values.items():
        assert v.dtype == np.int8 and v.shape == g.tensors[name].shape


def test_hook_replaces_tensors_as_they_are_produced(example: Graph) -> None:
    g = example
    x = _random_inputs(g, 1, 3)[0]
    plain = run_int8(g, x)
    seen: list[str] = []

    def identity(name: str, v: np.ndarray) -> np.ndarray:
        seen.append(name)
        return v

    again = run_int8(g, x, identity)
    assert seen == g.activations()  # input first, then in node order
    for k in plain:
        np.testing.assert_array_equal(plain[k], again[k])

    # replacing a mid tensor changes what its consumers read
    target = g.nodes[len(g.nodes) // 2].outputs[0]
    quant = g.tensors[target].quant
    assert quant is not None
    zp = int(quant.zero_point[0])

    def zero(name: str, v: np.ndarray) -> np.ndarray:
        return np.full_like(v, zp) if name == target else v

    out = run_int8(g, x, zero)
    assert np.all(out[target] == zp)
    consumer = g.consumers(target)[0]
    manual = dict(plain)
    manual[target] = out[target]
    expect = get_op(consumer.op).reference_int8(
        consumer, g, [manual.get(i) for i in consumer.inputs])[0]
    np.testing.assert_array_equal(out[consumer.outputs[0]], expect)


def test_bad_inputs_and_hooks_are_reported(example: Graph) -> None:
    g = example
    x = _random_inputs(g, 1, 4)[0]
    with pytest.raises(Int8ExecError, match="must be int8"):
        run_int8(g, x.astype(np.float32))
    with pytest.raises(Int8ExecError, match="must be int8"):
        run_int8(g, x[..., :0])
    with pytest.raises(Int8ExecError, match="hook returned"):
        run_int8(g, x, lambda name, v: v.astype(np.int16))


def test_lower_c_and_reference_int8_share_params(example: Graph) -> None:
    """The C lowering still emits the same params the executor uses (one builder)."""
    g = example
    for n in g.nodes:
        op = get_op(n.op, n)
        if not hasattr(op, "int8_kernel"):
            continue
        ctx = CContext(act_offsets={t: 0 for t in g.activations()})
        op.lower_c(n, g, ctx)
        p = op.int8_kernel(n, g)
        params = p[1] if isinstance(p, tuple) else p
        struct = next(s for s in ctx.structs if s.ctype.endswith("params_t"))
        fields = dict(struct.fields)
        for key in ("act_min", "act_max", "input_zero_point", "output_zero_point"):
            if hasattr(params, key):
                assert str(getattr(params, key)) == str(fields[key]), (n.name, key)
