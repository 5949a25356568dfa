"""AdaFocal: one update step by hand, switching to inverse-focal, clipping, bins, checkpointing."""

import math

import pytest
import torch

from focalcal.losses import AdaFocalLoss, adafocal_gamma_update, build_loss


def _two_class_logits(confidences):
    """Logits [logit(r), 0]: class 0 predicted with confidence r."""
    return torch.tensor([[math.log(r / (1 - r)), 0.0] for r in confidences])


# Validation set: confidences 0.6, 0.7 (bin 0 after the update) and 0.8, 0.9 (bin 1).
VAL_LOGITS = _two_class_logits([0.6, 0.7, 0.8, 0.9])
VAL_LABELS = torch.tensor([0, 1, 0, 0])  # correct, wrong, correct, correct


def test_one_update_step_by_hand():
    loss = AdaFocalLoss(2, num_bins=2, lam=1.0, gamma_initial=1.0)
    assert AdaFocalLoss.needs_validation is True
    assert loss.bin_edges.tolist() == [0.5]
    loss.update_from_validation(VAL_LOGITS, VAL_LABELS)
    # equal-mass edge: median of [0.6, 0.7, 0.8, 0.9] = 0.75
    assert loss.bin_edges.item() == pytest.approx(0.75, abs=1e-6)
    gap0 = (0.6 + 0.7) / 2 - (1 + 0) / 2  # C - A = 0.65 - 0.5 = +0.15 (over-confident)
    gap1 = (0.8 + 0.9) / 2 - (1 + 1) / 2  # 0.85 - 1.0 = -0.15 (under-confident)
    torch.testing.assert_close(loss.last_gaps, torch.tensor([gap0, gap1]))
    expected = [1.0 * math.exp(1.0 * gap0), 1.0 * math.exp(1.0 * gap1)]  # 1.1618, 0.8607
    torch.testing.assert_close(loss.gammas, torch.tensor(expected))
    assert loss.num_updates.item() == 1


def test_switch_to_inverse_focal_and_clip_then_update_the_inverse_branch():
    loss = AdaFocalLoss(2, num_bins=2, lam=20.0)
    loss.update_from_validation(VAL_LOGITS, VAL_LABELS)
    # bin 0: 1 * exp(20 * 0.15) = 20.09 -> clipped to gamma_max 20
    # bin 1: 1 * exp(20 * -0.15) = 0.0498 < S_th = 0.2 -> switch to inverse-focal: -0.2
    torch.testing.assert_close(loss.gammas, torch.tensor([20.0, -0.2]))
    loss.lam = 1.0
    loss.update_from_validation(VAL_LOGITS, VAL_LABELS)
    # inverse branch: gamma <- gamma * exp(-lam * gap) = -0.2 * exp(0.15) = -0.2324 (more inverse-focal)
    # bin 0 stays clipped: 20 * exp(0.15) -> 20
    torch.testing.assert_close(loss.gammas, torch.tensor([20.0, -0.2 * math.exp(0.15)]))


def test_gamma_update_rule_vectorised():
    gammas = torch.tensor([1.0, 0.25, -0.5, -0.21, -1.9, 0.0])
    gaps = torch.tensor([0.1, -0.3, -0.2, 0.1, -0.5, 0.0])
    got = adafocal_gamma_update(gammas, gaps, lam=1.0, switch_threshold=0.2, gamma_min=-2.0, gamma_max=20.0)
    e = math.exp
    expected = [
        1.0 * e(0.1),  # focal, over-confident -> larger gamma
        -0.2,  # 0.25 * e(-0.3) = 0.185 < 0.2 -> switch to inverse-focal
        -0.5 * e(0.2),  # inverse, under-confident -> larger |gamma|
        0.2,  # -0.21 * e(-0.1) = -0.19 -> |.| < 0.2 -> switch back to focal
        -2.0,  # -1.9 * e(0.5) = -3.13 -> clipped at gamma_min
        0.2,  # 0 -> |0| < 0.2, not positive -> +S_th
    ]
    torch.testing.assert_close(got, torch.tensor(expected))


def test_forward_uses_bin_of_true_class_probability_and_inverse_focal():
    loss = AdaFocalLoss(2, num_bins=2, lam=20.0, reduction="none")
    loss.update_from_validation(VAL_LOGITS, VAL_LABELS)  # gammas [20, -0.2], edge 0.75
    logits = _two_class_logits([0.7, 0.8])
    labels = torch.tensor([0, 0])  # p = 0.7 -> bin 0 (focal, 20); p = 0.8 -> bin 1 (inverse, 0.2)
    assert loss.sample_gammas(logits, labels).tolist() == pytest.approx([20.0, -0.2])
    expected = [-((1 - 0.7) ** 20) * math.log(0.7), -((1 + 0.8) ** 0.2) * math.log(0.8)]
    torch.testing.assert_close(loss(logits, labels), torch.tensor(expected), rtol=1e-4, atol=1e-12)


def test_ties_and_empty_bins_leave_gamma_unchanged_and_all_confidences_are_binned():
    loss = AdaFocalLoss(3, num_bins=4)
    logits = torch.zeros(5, 3)  # every confidence is 1/3: all quantile edges coincide
    loss.update_from_validation(logits, torch.tensor([0, 1, 2, 0, 1]))
    # all ties land in the lowest bin: confidence 1/3, accuracy 2/5 (argmax picks class 0 on ties)
    gap = 1 / 3 - 2 / 5
    assert loss.last_gaps.tolist() == pytest.approx([gap, 0.0, 0.0, 0.0], abs=1e-6)
    assert loss.gammas.tolist() == pytest.approx([math.exp(gap), 1.0, 1.0, 1.0], abs=1e-6)
    assert loss.bin_index(torch.tensor([0.0, 1.0])).tolist() == [0, 3]


def test_state_dict_round_trip_and_ignore_index():
    loss = build_loss("adafocal", num_classes=2, num_bins="2", lam="1")
    labels = VAL_LABELS.clone()
    logits = torch.cat([VAL_LOGITS, torch.zeros(1, 2)])
    loss.update_from_validation(logits, torch.cat([labels, torch.tensor([-100])]))
    fresh = build_loss("adafocal", num_classes=2, num_bins=2)
    fresh.load_state_dict(loss.state_dict())
    for name in ("bin_edges", "gammas", "last_gaps", "num_updates"):
        assert torch.equal(getattr(fresh, name), getattr(loss, name))
    assert fresh.bin_edges.item() == pytest.approx(0.75, abs=1e-6)  # the ignored row did not count


@pytest.mark.parametrize(
    "kwargs",
    [{"num_bins": 0}, {"lam": 0}, {"switch_threshold": 0}, {"gamma_min": 0.5}, {"gamma_initial": 30}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AdaFocalLoss(3, **kwargs)
