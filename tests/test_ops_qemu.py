"""Every backbone op, compiled end to end on random odd shapes, equals tflite-runtime's
reference kernels bit for bit on the host build and in QEMU (stm32f405)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from mcutl.compile import compile_backbone
from mcutl.run import prepare_inputs, run_build
from mcutl.tflite.oracle import run_tflite_ref
from tests.conftest import needs_qemu

pytestmark = [pytest.mark.tflite, pytest.mark.qemu, needs_qemu]


class Zoo(nn.Module):
    """conv (standard / grouped / depthwise, stride, pad) -> maxpool -> standalone ReLU ->
    branch: avgpool + pointwise || depthwise; concat; residual add; GAP; linear."""

    def __init__(self, c_in: int, c1: int, groups: int, k: int, stride: int, pool: int,
                 n_out: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(c_in, c1 * groups, k, stride, k // 2, groups=groups)
        self.bn = nn.BatchNorm2d(c1 * groups)
        self.pool = nn.MaxPool2d(pool, 1, pool // 2) if pool % 2 else nn.MaxPool2d(pool, 1)
        self.relu = nn.ReLU()
        c = c1 * groups
        self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.pw = nn.Conv2d(c, c, 1)
        self.dw = nn.Conv2d(c, c, 3, 1, 1, groups=c)
        self.mix = nn.Conv2d(2 * c, c, 1)
        self.fc = nn.Linear(c, n_out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.pool(self.bn(self.conv(x))))
        a = self.pw(self.avg(y))
        b = torch.clamp(self.dw(y), 0, 6)
        z = self.mix(torch.cat([a, b], 1)) + y
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    c_in=st.integers(1, 5),
    c1=st.integers(1, 6),
    groups=st.sampled_from([1, 1, 2, 3]),
    k=st.sampled_from([1, 3, 5]),
    stride=st.integers(1, 2),
    hw=st.tuples(st.integers(5, 13), st.integers(5, 13)),
    pool=st.integers(2, 3),
    n_out=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
def test_random_graph_host_and_qemu(
    tmp_path_factory: pytest.TempPathFactory, c_in: int, c1: int, groups: int, k: int,
    stride: int, hw: tuple[int, int], pool: int, n_out: int, seed: int,
) -> None:
    c_in = c_in * groups if groups > 1 else c_in
    model = Zoo(c_in, c1, groups, k, stride, pool, n_out, seed).eval()
    shape = (1, c_in, *hw)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((16, *shape[1:]), dtype=np.float32)
    out = tmp_path_factory.mktemp("zoo")
    info, _, _ = compile_backbone(model, "stm32f405", out, calib=calib, input_shape=shape)
    x = rng.standard_normal((12, *shape[1:]), dtype=np.float32)
    q = prepare_inputs(info, x)
    tfl = (Path(out) / "model.tflite").read_bytes()
    ref = np.concatenate([run_tflite_ref(tfl, [s[None]])[0] for s in q])
    np.testing.assert_array_equal(run_build(out, x).y, ref)
    np.testing.assert_array_equal(run_build(out, x, qemu=True).y, ref)
