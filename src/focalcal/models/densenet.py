"""DenseNet-BC for 32x32 inputs (Huang et al., CVPR 2017), as used by the paper (DenseNet-121, growth 32).

The network is DenseNet-121's (dense blocks of 6, 12, 24 and 16 bottleneck layers, growth rate 32, 4x
growth-rate bottlenecks, compression 0.5 in the transitions, 64 stem channels), with the CIFAR stem of the
paper's code: one 3x3 convolution instead of ImageNet's 7x7 convolution, batch norm and max-pool. A 32x32
input is halved by each of the three transitions, so the last block sees 4x4 maps, averaged to one vector.
Apart from the stem its parameters are exactly those of torchvision's ``densenet121`` (a test checks it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cifar_resnet import _init_weights


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4k channels) - BN-ReLU-3x3 conv (k channels); the output is concatenated to the input."""

    def __init__(self, in_planes: int, growth: int, bottleneck: int = 4):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, bottleneck * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(bottleneck * growth)
        self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv (compression) - 2x2 average pool."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__(
            nn.BatchNorm2d(in_planes),
            nn.ReLU(),
            nn.Conv2d(in_planes, out_planes, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNet(nn.Module):
    """DenseNet-BC with a 3x3 stem; ``blocks=(6, 12, 24, 16), growth=32`` is DenseNet-121.

    Args:
        blocks: layers per dense block.
        growth: channels each layer adds (k).
        num_classes: width of the output logits.
        compression: fraction of channels a transition keeps.
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = (6, 12, 24, 16),
        growth: int = 32,
        num_classes: int = 10,
        compression: float = 0.5,
    ):
        super().__init__()
        planes = 2 * growth
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, count in enumerate(blocks):
            layers = []
            for _ in range(count):
                layers.append(_DenseLayer(planes, growth))
                planes += growth
            stages.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                out = int(planes * compression)
                stages.append(_Transition(planes, out))
                planes = out
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.features(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
