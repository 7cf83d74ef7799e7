"""Two small PyTorch backbones that mcutl compiles in its examples and tests.

- ``TinyMBV2``: MobileNetV2-style classifier for 1x28x28 grey images (Fashion-MNIST).
- ``TinyIMU1D``: 1-D conv net for 6-axis IMU windows of 100 samples (6x100).

Both initialise deterministically from ``seed`` and use only ops that mcutl
compiles (conv, batchnorm, relu/relu6, add, global average pool, linear).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm2d (+ activation), 'same'-style padding k // 2."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project; residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.block = nn.Sequential(
            conv_bn(c_in, hidden, 1),
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            conv_bn(hidden, c_out, 1, act=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class TinyMBV2(nn.Module):
    """MobileNetV2-style backbone + head for 1x28x28 inputs; about 24k parameters."""

    # (expand, c_out, stride) per inverted-residual block
    BLOCKS = ((2, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2), (2, 32, 1))

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = conv_bn(1, 16, 3, stride=2)
            blocks: list[nn.Module] = []
            c = 16
            for expand, c_out, stride in self.BLOCKS:
                blocks.append(InvertedResidual(c, c_out, stride, expand))
                c = c_out
            self.blocks = nn.Sequential(*blocks)
            self.head = conv_bn(c, 64, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def conv1d_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
    )


class TinyIMU1D(nn.Module):
    """1-D conv classifier for (6, 100) IMU windows: conv stack, depthwise-separable block."""

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                conv1d_bn(6, 16, 5),
                conv1d_bn(16, 32, 5, stride=2),
                conv1d_bn(32, 32, 5, stride=2, groups=32),  # depthwise
                conv1d_bn(32, 48, 1),  # pointwise
            )
            self.pool = nn.AdaptiveAvgPool1d(1)
            self.classifier = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def randomize_batchnorm_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine params, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def spread_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-normal weights (std sqrt(2 / fan_in)) for every conv and linear layer.

    PyTorch's default init leaves these small networks' outputs almost independent of
    the input; tests that compare outputs need a random network whose outputs vary.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model


BACKBONES: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "tiny_mbv2": (TinyMBV2, (1, 1, 28, 28)),
    "tiny_imu1d": (TinyIMU1D, (1, 6, 100)),
}
