"""Finite loss and gradients at extreme logits for every loss, in float32 and under bf16 autocast."""

import pytest
import torch

from focalcal.losses import available_losses, build_loss

GAMMAS = [0.0, 0.1, 0.5, 0.99, 1.0, 2.0, 3.0, 5.0, 6.0]

# Rows: saturated right, saturated wrong, uniform, tie at +100, huge spread; labels hit max, min and ties.
EXTREME_LOGITS = torch.tensor(
    [
        [100.0, -100.0, 0.0],
        [100.0, -100.0, 0.0],
        [0.0, 0.0, 0.0],
        [100.0, 100.0, -100.0],
        [-100.0, 100.0, 50.0],
        [1e-3, -1e-3, 100.0],
    ]
)
EXTREME_LABELS = torch.tensor([0, 1, 2, 0, 0, 2])


def _configs():
    for name in available_losses():
        if name in ("focal", "dual_focal"):
            for gamma in GAMMAS:
                yield name, {"gamma": gamma}
        elif name == "flsd":
            for gamma in GAMMAS:
                yield name, {"thresholds": "0.2,0.5", "gammas": [gamma, 6.0 - gamma, gamma]}
        else:
            yield name, {}


CONFIGS = list(_configs())


def _check(loss, logits, labels):
    x = logits.clone().requires_grad_(True)
    value = loss(x, labels)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value), value
    assert torch.isfinite(x.grad).all(), x.grad


@pytest.mark.parametrize("name, options", CONFIGS, ids=[f"{n}-{o}" for n, o in CONFIGS])
def test_extreme_logits_float32(name, options):
    for reduction in ("mean", "sum"):
        loss = build_loss(name, num_classes=3, reduction=reduction, **options)
        _check(loss, EXTREME_LOGITS, EXTREME_LABELS)


@pytest.mark.parametrize("gammas", [[0.0, 0.0, 0.0], [0.5, -0.5, 6.0], [-2.0, 20.0, 0.2]])
def test_adafocal_extreme_logits_for_focal_and_inverse_gammas(gammas):
    loss = build_loss("adafocal", num_classes=3, num_bins=3)
    loss.gammas.copy_(torch.tensor(gammas))
    _check(loss, EXTREME_LOGITS, EXTREME_LABELS)


def test_flsc531_all_phases_extreme_logits():
    loss = build_loss("flsc531", num_classes=3)
    for epoch in (0, 100, 250):
        loss.set_epoch(epoch, 350)
        _check(loss, EXTREME_LOGITS, EXTREME_LABELS)


@pytest.mark.parametrize("name", available_losses())
def test_bf16_autocast_gives_float32_and_finite_gradients(name):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.mul_(40.0)  # logits of order +-100
    features = torch.randn(8, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss = build_loss(name, num_classes=3)
    if loss.needs_validation:
        loss.update_from_validation(layer(features).detach(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(features)
        assert logits.dtype == torch.bfloat16
        value = loss(logits, labels)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("name", ["mmce", "mmce_weighted", "focal", "ls"])
def test_autocast_is_disabled_inside_the_loss(name):
    """Same bf16 logits give the same loss inside and outside autocast (matmuls stay float32)."""
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(32, 3, generator=g) * 2).to(torch.bfloat16)
    labels = torch.randint(0, 3, (32,), generator=g)
    loss = build_loss(name, num_classes=3)
    outside = loss(logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss(logits, labels)
    assert torch.equal(inside, outside)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", available_losses())
def test_cuda_fp16_autocast(name):
    device = torch.device("cuda")
    loss = build_loss(name, num_classes=3).to(device)
    logits = EXTREME_LOGITS.to(device)
    labels = EXTREME_LABELS.to(device)
    if loss.needs_validation:
        loss.update_from_validation(logits, labels)
    x = logits.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.float16):
        value = loss(x.half(), labels)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(x.grad).all()
