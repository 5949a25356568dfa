"""Wide-ResNet (Zagoruyko & Komodakis, 2016), e.g. WRN-26-10 as used in the paper's Table 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cifar_resnet import _init_weights


class _WideBlock(nn.Module):
    """Pre-activation basic block with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-width with n = (depth - 2) / 6 pre-activation blocks per stage (WRN-26-10: 4 blocks).

    Zagoruyko & Komodakis count depth as 6n + 4; the paper's "WRN-26-10" is read here as 6n + 2 with n = 4.
    """

    def __init__(self, depth: int = 26, width: int = 10, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"Wide-ResNet depth must be 6n+2 (e.g. 26, 28), got {depth}")
        n = (depth - 2) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        layers, in_planes = [], widths[0]
        for planes, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                layers.append(_WideBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
