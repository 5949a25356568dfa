"""Focal loss family: CE equivalence, tiny-loss precision, FLSD, FLSc schedules, the KL bound, g(p, gamma)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcal.losses import (
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
    build_loss,
    flsd_gammas,
    g_factor,
    scale_schedule,
)


def test_focal_gamma0_equals_ce_hand_value():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2])
    # CE_1 = log(1 + e^-1 + e^-2) = 0.40761, CE_2 = log(2 + e^2) = 2.23954; mean 1.32358
    expected = (math.log(1 + math.exp(-1) + math.exp(-2)) + math.log(2 + math.exp(2))) / 2
    assert expected == pytest.approx(1.32358, abs=1e-5)
    got = build_loss("focal", num_classes=3, gamma=0)(logits, labels)
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_focal_gamma0_matches_cross_entropy_values_and_gradients(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, 5, generator=g) * 4
    logits[0] = torch.tensor([100.0, 0.0, 0.0, -100.0, 5.0])
    labels = torch.randint(0, 5, (16,), generator=g)
    labels[0] = 0
    for reduction in ("mean", "sum", "none"):
        a = logits.clone().requires_grad_(True)
        b = logits.clone().requires_grad_(True)
        ours = FocalLoss(5, gamma=0.0, reduction=reduction)(a, labels)
        ref = F.cross_entropy(b, labels, reduction=reduction)
        torch.testing.assert_close(ours, ref)
        ours.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
        assert torch.isfinite(a.grad).all()


def test_focal_gamma0_two_class_saturated_logit_has_no_nan():
    x = torch.tensor([[100.0, 0.0]], requires_grad=True)
    loss = FocalLoss(2, gamma=0.0)(x, torch.tensor([0]))
    loss.backward()
    ref = F.cross_entropy(torch.tensor([[100.0, 0.0]]), torch.tensor([0]))
    torch.testing.assert_close(loss, ref)
    assert torch.isfinite(x.grad).all()


def test_focal_gamma_half_tiny_loss_is_precise_and_gradient_finite():
    x = torch.tensor([[20.0, 0.0]], requires_grad=True)
    loss = FocalLoss(2, gamma=0.5)(x, torch.tensor([0]))
    one_minus_p = 1.0 / (1.0 + math.exp(20.0))  # 2.06e-9; float32 1 - p would round to 0
    expected = math.sqrt(one_minus_p) * math.log1p(math.exp(-20.0))
    assert expected == pytest.approx(9.36e-14, rel=2e-3)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=0.0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.99])
def test_focal_small_gamma_at_p_equal_one_has_finite_gradient(gamma):
    x = torch.tensor([[100.0, 0.0, -100.0]], requires_grad=True)
    loss = FocalLoss(3, gamma=gamma)(x, torch.tensor([0]))
    loss.backward()
    assert 0.0 <= loss.item() < 1e-40  # 1 - p = exp(-100) is below float32's normal range
    assert torch.isfinite(x.grad).all()


def test_flsd53_check_values():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])
    labels = torch.zeros(3, dtype=torch.long)
    loss = build_loss("flsd53", num_classes=3, reduction="sum")
    assert loss.sample_gammas(logits, labels).tolist() == [3.0, 3.0, 5.0]  # p = 0.787, 0.333, 0.090
    assert loss(logits, labels).item() == pytest.approx(1.830002, abs=2e-6)
    three = build_loss("flsd53_3level", num_classes=3, reduction="sum")
    assert three(logits, labels).item() == pytest.approx(1.830002, abs=2e-6)


def test_flsd_levels_switch_exactly_at_thresholds():
    th = torch.tensor([0.2])
    gm = torch.tensor([5.0, 3.0])
    p = torch.tensor([0.2 - 1e-6, 0.2, 0.2 + 1e-6], dtype=torch.float32)
    assert flsd_gammas(p, th, gm).tolist() == [5.0, 3.0, 3.0]
    three = build_loss("flsd53_3level", num_classes=3, gamma=2.0)
    p = torch.tensor([0.1, 0.2, 0.49999, 0.5, 0.9])
    assert flsd_gammas(p, three.thresholds, three.gammas).tolist() == [5.0, 3.0, 3.0, 2.0, 2.0]


def test_flsd_through_logits_below_and_above_threshold():
    # two classes: p = sigmoid(z); z = logit(0.2) -/+ 1e-3 puts p just below / above 0.2
    z = math.log(0.2 / 0.8)
    logits = torch.tensor([[z - 1e-3, 0.0], [z + 1e-3, 0.0]])
    loss = build_loss("flsd53", num_classes=2)
    assert loss.sample_gammas(logits, torch.tensor([0, 0])).tolist() == [5.0, 3.0]


def test_flsd_gradient_treats_gamma_as_constant():
    logits = torch.randn(20, 4, generator=torch.Generator().manual_seed(3)) * 2
    labels = torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(4))
    loss = SampleDependentFocalLoss(4, thresholds=(0.2, 0.5), gammas=(5.0, 3.0, 1.0), reduction="sum")
    gammas = loss.sample_gammas(logits, labels)
    a = logits.clone().requires_grad_(True)
    loss(a, labels).backward()
    b = logits.clone().requires_grad_(True)
    logp = F.log_softmax(b, 1).gather(1, labels[:, None]).squeeze(1)
    (-((1 - logp.exp()) ** gammas) * logp).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_flsd_general_rejects_bad_shapes():
    with pytest.raises(ValueError, match="len\\(gammas\\)"):
        build_loss("flsd", num_classes=3, thresholds="0.2", gammas="5,3,1")
    with pytest.raises(ValueError, match="increasing"):
        build_loss("flsd", num_classes=3, thresholds="0.5,0.2", gammas="5,3,1")


@pytest.mark.parametrize(
    "epochs, checks",
    [
        (350, {0: 5, 99: 5, 100: 3, 249: 3, 250: 1, 349: 1}),
        (35, {0: 5, 9: 5, 10: 3, 24: 3, 25: 1, 34: 1}),
        (100, {28: 5, 29: 3, 70: 3, 71: 1}),  # 28.57 -> 29, 71.43 -> 71 (round half up)
    ],
)
def test_flsc531_schedule(epochs, checks):
    loss = build_loss("flsc531", num_classes=3)
    for epoch, gamma in checks.items():
        loss.set_epoch(epoch, epochs)
        assert loss.gamma.item() == gamma, (epoch, epochs)


def test_flsc_scaling_rounds_half_up_and_general_schedule():
    assert scale_schedule([(0, 5), (175, 3)], 1) == [(0, 5.0), (1, 3.0)]  # 0.5 -> 1
    assert scale_schedule([(0, 5), (100, 3), (250, 1)], 35) == [(0, 5.0), (10, 3.0), (25, 1.0)]
    loss = build_loss("flsc", num_classes=3, schedule="0:4,10:2", reference_epochs="20")
    loss.set_epoch(4, 10)
    assert loss.gamma.item() == 4
    loss.set_epoch(5, 10)
    assert loss.gamma.item() == 2
    with pytest.raises(ValueError, match="epoch 0"):
        ScheduledFocalLoss(3, schedule=[(5, 2.0)])
    with pytest.raises(ValueError, match=">= 0"):
        ScheduledFocalLoss(3, schedule=[(0, -2.0)])


def test_flsc_uses_current_gamma_and_checkpoints_it():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = build_loss("flsc531", num_classes=3)
    torch.testing.assert_close(loss(logits, labels), FocalLoss(3, gamma=5)(logits, labels))
    loss.set_epoch(120, 350)
    torch.testing.assert_close(loss(logits, labels), FocalLoss(3, gamma=3)(logits, labels))
    state = loss.state_dict()
    fresh = build_loss("flsc531", num_classes=3)
    fresh.load_state_dict(state)
    assert fresh.gamma.item() == 3


@settings(max_examples=60, deadline=None)
@given(
    logits=st.lists(st.floats(-12, 12), min_size=2, max_size=6),
    label_seed=st.integers(0, 1000),
    gamma=st.floats(0, 6),
)
def test_focal_bound_kl_minus_gamma_entropy(logits, label_seed, gamma):
    """Mukhoti et al. Sec. 4: L_focal >= KL(q || p) - gamma * H[p] (q one-hot: KL = -log p_y)."""
    k = len(logits)
    x = torch.tensor([logits], dtype=torch.float32)
    y = label_seed % k
    focal = FocalLoss(k, gamma=gamma)(x, torch.tensor([y])).item()
    logp = torch.log_softmax(x.double(), 1)[0]
    kl = -logp[y].item()
    entropy = -(logp.exp() * logp).sum().item()
    assert focal >= kl - gamma * entropy - 1e-5 * (1 + abs(kl))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0, 5.0])
def test_last_layer_gradient_is_g_times_ce_gradient(gamma):
    torch.manual_seed(0)
    features = torch.randn(6, 7, dtype=torch.float64)
    weight = torch.randn(4, 7, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    focal = FocalLoss(4, gamma=gamma)
    ce = build_loss("ce", num_classes=4)
    for i in range(6):
        w1 = weight.clone().requires_grad_(True)
        w2 = weight.clone().requires_grad_(True)
        focal(features[i : i + 1] @ w1.T, labels[i : i + 1]).backward()
        ce(features[i : i + 1] @ w2.T, labels[i : i + 1]).backward()
        p = torch.softmax((features[i] @ weight.T).float(), 0)[labels[i]].item()
        expected = g_factor(p, gamma) * w2.grad
        torch.testing.assert_close(w1.grad, expected, rtol=2e-4, atol=1e-6)


def test_focal_matches_numpy_on_a_gamma_grid():
    logits = np.array([[3.0, 1.0, -2.0], [0.5, 0.4, 0.3]])
    labels = np.array([0, 2])
    lp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    p = np.exp(lp[np.arange(2), labels])
    for gamma in (0.0, 0.5, 2.0, 6.0):
        expected = np.mean(-((1 - p) ** gamma) * np.log(p))
        got = FocalLoss(3, gamma=gamma)(torch.tensor(logits), torch.tensor(labels)).item()
        assert got == pytest.approx(expected, rel=1e-5)


def test_true_class_log_prob_keeps_one_minus_p_precise():
    """1 - p from our log-softmax matches float64 where F.log_softmax's float32 result collapses to 0."""
    from focalcal.losses.base import true_class_log_prob

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(200, 6, generator=g, dtype=torch.float64) * 30
    labels = logits.argmax(1)  # p close to 1 on most rows
    # exact 1 - p = s / (1 + s), s = sum_{k != y} exp(z_k - z_y) (float64 log_softmax would also collapse)
    rel = torch.exp(logits - logits.gather(1, labels[:, None])).scatter(1, labels[:, None], 0.0).sum(1)
    exact = rel / (1 + rel)
    ours = -torch.expm1(true_class_log_prob(logits.float(), labels)).double()
    normal = exact > 1e-30
    torch.testing.assert_close(ours[normal], exact[normal], rtol=1e-5, atol=0.0)
    torch_f32 = -torch.expm1(torch.log_softmax(logits.float(), 1).gather(1, labels[:, None]).squeeze(1))
    assert (torch_f32[normal] == 0).any()  # what this function fixes
    grad_in = logits.float().requires_grad_(True)
    true_class_log_prob(grad_in, labels).sum().backward()
    expected = torch.nn.functional.one_hot(labels, 6) - torch.softmax(logits, 1)
    torch.testing.assert_close(grad_in.grad.double(), expected, rtol=1e-5, atol=1e-6)
