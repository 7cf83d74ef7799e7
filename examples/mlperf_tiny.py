"""MLPerf-Tiny-style architectures (random weights: for memory and speed, not accuracy).

- ``MobileNetV1VWW``: MobileNetV1 with width 0.25 on 96x96x3 (visual wake words, 2
  classes): a 3x3 stem and 13 depthwise-separable blocks.
- ``DSCNNKWS``: DS-CNN for keyword spotting on 49x10 MFCCs (12 classes): a 10x4 stride-2
  conv and 4 depthwise-separable blocks of 64 channels. Its stem pads Keras-style, as
  the reference model ("same": rows 4 above and 5 below, columns 1 and 1), with an
  ``nn.ZeroPad2d`` before a padding-0 conv, so its first map is 25x5; mcutl folds the
  pad into the conv's explicit asymmetric padding (TFLite: a SAME conv).
- ``ResNet8``: MLPerf Tiny's CIFAR-10 ResNet-8 on 32x32x3.
- ``MobileNetV2``: torchvision's ``mobilenet_v2(width_mult=...)`` layer for layer (the
  same channel rounding, ReLU6, residuals and 1280-wide last conv), without torchvision:
  MobileNetV2-w0.35 at 128x128 is the model that MIT's Tiny Training Engine trains in
  141 KB (issue 11).
"""

from __future__ import annotations

import torch
from torch import nn

from examples.backbones import InvertedResidual, conv_bn


def _dws(c_in: int, c_out: int, stride: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in, act=act),
                         conv_bn(c_in, c_out, 1, act=act))


class MobileNetV1VWW(nn.Module):
    def __init__(self, width: float = 0.25, num_classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)

        def c(n: int) -> int:
            return max(8, int(n * width))

        plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1),
                (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
        layers: list[nn.Module] = [conv_bn(3, c(32), 3, 2, act=nn.ReLU)]
        ch = c(32)
        for n, s in plan:
            layers.append(_dws(ch, c(n), s, nn.ReLU))
            ch = c(n)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class DSCNNKWS(nn.Module):
    def __init__(self, num_classes: int = 12, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.ZeroPad2d((1, 1, 4, 5)),  # left, right, top, bottom
                                  nn.Conv2d(1, 64, (10, 4), 2, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        self.blocks = nn.Sequential(*[_dws(64, 64, 1, nn.ReLU) for _ in range(4)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip: nn.Module = nn.Identity() if stride == 1 and c_in == c_out else \
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResNet8(nn.Module):
    """MLPerf Tiny's image-classification ResNet-8 on 32x32x3 (CIFAR-10 style): a 3x3
    stem of 16 channels and three residual stages of 16, 32 and 64 channels (stride 1,
    2, 2), global average pooling and a linear head."""

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.stages = nn.Sequential(_ResBlock(16, 16, 1), _ResBlock(16, 32, 2),
                                    _ResBlock(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: to a multiple of 8, never below 90 % of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (``features``: a 3x3 stride-2 stem, 17 inverted residuals,
    a 1x1 conv to ``max(1280, 1280 x width)``; average pool; linear classifier)."""

    # (expand t, channels c, repeats n, first stride s), as in the paper and torchvision
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width: float = 0.35, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        ch = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [conv_bn(3, ch, 3, 2)]
        for t, c, n, s in self.SETTING:
            out = make_divisible(c * width)
            for i in range(n):
                stride = s if i == 0 else 1
                if t == 1:  # no expansion: depthwise + project
                    layers.append(_NoExpand(ch, out, stride))
                else:
                    layers.append(InvertedResidual(ch, out, stride, t))
                ch = out
        layers.append(conv_bn(ch, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class _NoExpand(nn.Module):
    """The first block (t = 1): 3x3 depthwise + ReLU6, 1x1 project; residual when shapes
    match (never, in MobileNetV2's first block)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        self.block = nn.Sequential(conv_bn(c_in, c_in, 3, stride, groups=c_in),
                                   conv_bn(c_in, c_out, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y
