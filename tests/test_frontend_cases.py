"""The model zoo the frontend and PTQ tests share: the example backbones and small odd
modules that exercise one import rule each, plus export helpers."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from backbones import (  # noqa: E402
    BACKBONES,
    TinyIMU1D,
    TinyMBV2,
    randomize_batchnorm_stats,
)

from examples.mlperf_tiny import DSCNNKWS  # noqa: E402


class OddNet(nn.Module):
    """Stride-2 conv on an odd map, BN, ReLU6 as clamp, grouped conv, padded maxpool,
    concat, a standalone BN, avgpool, depthwise with multiplier 2, mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.clamp(self.bn1(self.c1(x)), 0, 6)
        a = F.relu(self.grouped(y))
        b = F.max_pool2d(a, 3, 1, 1)
        c = self.bn2(torch.cat([a, b], 1))
        d = F.relu(F.avg_pool2d(c, 2))
        e = F.relu6(self.dw(d))
        return self.fc(e.mean((2, 3)))


class FlattenNet(nn.Module):
    """Conv1d stride 2 on an odd length, then flatten of a (C, L>1) map into a linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, stride=2)
        self.pool = nn.MaxPool1d(2, 1)
        self.fc = nn.Linear(6 * 11, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


class Flatten2dNet(nn.Module):
    """Flatten of a 4x4x5 map in NCHW order into two linears (ReLU between)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, stride=2, padding=1, bias=False)
        self.fc1 = nn.Linear(80, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(torch.flatten(self.conv(x), 1))))


class PadNet(nn.Module):
    """Zero pads: asymmetric (TF-style "same") before a stride-2 conv and before a
    depthwise conv (both folded into the conv), before a max pool and an avg pool
    (standalone: zeros win a max and count in an average there)."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 2, 4, 5))  # left, right, top, bottom
        self.conv = nn.Conv2d(3, 8, (6, 4), stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(self.pad(x))))
        d = self.dw(F.pad(y, (0, 1, 2, 1)))  # no activation: negative values meet the zeros
        m = F.max_pool2d(F.pad(d, (1, 0, 0, 1)), 2)
        a = F.avg_pool2d(F.pad(d, (0, 2, 1, 0)), 3, 2)
        return self.fc(torch.cat([m.mean((2, 3)), a.mean((2, 3))], 1))


class Pad1dNet(nn.Module):
    """Conv1d after an asymmetric F.pad of L; a zero pad before a max pool over L."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5, stride=2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, (3, 1)))
        return self.fc(F.max_pool1d(F.pad(y, (2, 0)), 3).mean(2))


class SigmoidNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


class DilatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


#: name -> (module factory, input shape with batch 1)
CASES: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "tiny_mbv2": (TinyMBV2, (1, 1, 28, 28)),
    "tiny_imu1d": (TinyIMU1D, (1, 6, 100)),
    "odd": (OddNet, (1, 3, 15, 15)),
    "flatten1d": (FlattenNet, (1, 4, 25)),
    "flatten2d": (Flatten2dNet, (1, 2, 7, 7)),
    "pad": (PadNet, (1, 3, 13, 11)),
    "pad1d": (Pad1dNet, (1, 4, 21)),
    "dscnn_kws": (DSCNNKWS, (1, 1, 49, 10)),
}


def make(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A case module in eval mode with non-trivial BN statistics."""
    cls, shape = CASES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls()
    return randomize_batchnorm_stats(model, seed).eval(), shape


def onnx_bytes(model: nn.Module, shape: tuple[int, ...]) -> bytes:
    """Export with torch's TorchScript ONNX exporter (the dynamo one needs onnxscript)."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), f, dynamo=False)
    return f.getvalue()


def samples(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


def torch_forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_modules_run_and_export_to_onnx(name: str) -> None:
    model, shape = make(name)
    assert torch_forward(model, samples(shape, 2)).shape[0] == 2
    onnx.checker.check_model(onnx.load_from_string(onnx_bytes(model, shape)))


def test_backbones_are_deterministic_and_small() -> None:
    a, b = TinyMBV2(seed=3), TinyMBV2(seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(TinyMBV2(seed=4).parameters()), next(a.parameters()))
    assert 20_000 <= sum(p.numel() for p in a.parameters()) <= 30_000
    assert set(BACKBONES) == {"tiny_mbv2", "tiny_imu1d"}
