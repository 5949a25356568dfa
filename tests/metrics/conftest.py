"""Shared generators of test logits (random, real-looking, tied, saturated), exposed as the ``gen`` fixture."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


def random_logits(seed: int, n: int = 2000, k: int = 10, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return z, y


def real_looking_logits(seed: int, n: int = 3000, k: int = 10, acc: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Overconfident-classifier-like logits: the predicted class is right with probability ``acc``,
    margins vary over a wide range so confidences cover (1/k, 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    z = torch.randn(n, k, generator=g)
    right = torch.rand(n, generator=g) < acc
    target = torch.where(right, y, torch.randint(0, k, (n,), generator=g))
    margin = torch.rand(n, generator=g) * 12.0
    z[torch.arange(n), target] += margin
    return z, y


def tied_saturated_logits(seed: int, n: int = 2000, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer logits on a coarse grid (many tied confidences, some exactly on bin edges such as 0.5)
    plus rows with a margin of 60 (confidence exactly 1.0 in float32), with random labels so that some
    confidence-1.0 predictions are wrong."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(-2, 3, (n, k), generator=g).float()
    sat = torch.rand(n, generator=g) < 0.2
    z[sat, 0] = 60.0
    two = torch.rand(n, generator=g) < 0.1  # two tied leaders -> confidence exactly 0.5 for k=2 style rows
    z[two, :2] = 40.0
    y = torch.randint(0, k, (n,), generator=g)
    return z, y


@pytest.fixture
def gen():
    """Namespace of the logit generators above."""
    return SimpleNamespace(
        random_logits=random_logits,
        real_looking_logits=real_looking_logits,
        tied_saturated_logits=tied_saturated_logits,
    )
