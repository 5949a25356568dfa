"""Brier, MMCE, label smoothing, dual focal and MbLS against arithmetic written out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from focalcal.losses import DualFocalLoss, LabelSmoothingLoss, MMCELoss, build_loss


def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def test_brier_by_hand():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1])
    p = softmax([1.0, 0.0, -1.0])
    b1 = (1 - p[0]) ** 2 + p[1] ** 2 + p[2] ** 2
    q = softmax([0.0, 0.0, 2.0])
    b2 = q[0] ** 2 + (1 - q[1]) ** 2 + q[2] ** 2
    loss = build_loss("brier", num_classes=3, reduction="none")(logits, labels)
    torch.testing.assert_close(loss, torch.tensor([b1, b2]))
    # range 0..2: confidently right -> 0, confidently wrong -> 2
    extreme = build_loss("brier", num_classes=2, reduction="none")(
        torch.tensor([[100.0, -100.0], [100.0, -100.0]]), torch.tensor([0, 1])
    )
    torch.testing.assert_close(extreme, torch.tensor([0.0, 2.0]))


# Three samples, two classes. Sample 1 correct (conf r1), samples 2 and 3 wrong (conf r2 = r3).
MMCE_LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
MMCE_LABELS = torch.tensor([0, 0, 1])
R1 = 1 / (1 + math.exp(-2))  # 0.8808, predicted class 0 = label -> correct
R2 = 1 / (1 + math.exp(-1))  # 0.7311, predicted class 1 != label 0 -> wrong
R3 = R2  # predicted class 0 != label 1 -> wrong
K12 = math.exp(-abs(R1 - R2) / 0.4)
K13 = math.exp(-abs(R1 - R3) / 0.4)
K23 = math.exp(-abs(R2 - R3) / 0.4)  # = 1
CE_MEAN = (-math.log(R1) - math.log(1 - R2) - math.log(1 - R3)) / 3


def test_mmce_unweighted_by_hand():
    d1, d2, d3 = 1 - R1, 0 - R2, 0 - R3  # c_i - r_i
    mmce2 = (d1 * d1 + d2 * d2 + d3 * d3 + 2 * d1 * d2 * K12 + 2 * d1 * d3 * K13 + 2 * d2 * d3 * K23) / 3**2
    loss = MMCELoss(2, weighted=False, lam=2.0)
    assert loss.mmce(MMCE_LOGITS, MMCE_LABELS).item() == pytest.approx(math.sqrt(mmce2), rel=1e-5)
    assert loss(MMCE_LOGITS, MMCE_LABELS).item() == pytest.approx(CE_MEAN + 2 * math.sqrt(mmce2), rel=1e-5)
    squared = build_loss("mmce", num_classes=2, squared="true", lam=1)
    assert squared(MMCE_LOGITS, MMCE_LABELS).item() == pytest.approx(CE_MEAN + mmce2, rel=1e-5)


def test_mmce_weighted_by_hand():
    m, w = 1, 2  # one correct, two wrong
    correct_correct = (1 - R1) * (1 - R1) * 1.0 / m**2
    wrong_wrong = (R2 * R2 * 1.0 + R3 * R3 * 1.0 + 2 * R2 * R3 * K23) / w**2
    cross = 2 * ((1 - R1) * R2 * K12 + (1 - R1) * R3 * K13) / (m * w)
    mmce_w2 = correct_correct + wrong_wrong - cross
    assert mmce_w2 == pytest.approx(0.4286, abs=1e-3)
    loss = build_loss("mmce_weighted", num_classes=2)  # lam 2 by default
    assert loss.mmce(MMCE_LOGITS, MMCE_LABELS).item() == pytest.approx(math.sqrt(mmce_w2), rel=1e-5)
    assert loss(MMCE_LOGITS, MMCE_LABELS).item() == pytest.approx(CE_MEAN + 2 * math.sqrt(mmce_w2), rel=1e-5)


@pytest.mark.parametrize("name", ["mmce", "mmce_weighted"])
@pytest.mark.parametrize("labels", [[0, 1, 0], [1, 0, 1]])  # all correct / all wrong
def test_mmce_all_correct_or_all_wrong_batch_is_finite(name, labels):
    logits = torch.tensor([[30.0, -30.0], [-30.0, 30.0], [50.0, 0.0]], requires_grad=True)
    loss = build_loss(name, num_classes=2)(logits, torch.tensor(labels))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    if name == "mmce_weighted":  # MMCE_w is undefined -> term 0, loss = CE
        ce = F.cross_entropy(logits.detach(), torch.tensor(labels))
        torch.testing.assert_close(loss.detach(), ce)


def test_label_smoothing_paper_and_torch_conventions_by_hand():
    z = [1.0, 0.0, -1.0]
    lse = math.log(sum(math.exp(v) for v in z))
    logp = [v - lse for v in z]
    eps = 0.1
    paper = -((1 - eps) * logp[0] + eps / 2 * logp[1] + eps / 2 * logp[2])  # eps/(K-1), K = 3
    torch_conv = -((1 - eps + eps / 3) * logp[0] + eps / 3 * logp[1] + eps / 3 * logp[2])  # eps/K
    x = torch.tensor([z])
    y = torch.tensor([0])
    assert build_loss("ls", num_classes=3, smoothing=0.1)(x, y).item() == pytest.approx(paper, rel=1e-6)
    assert build_loss("ls_torch", num_classes=3, smoothing="0.1")(x, y).item() == pytest.approx(torch_conv, rel=1e-6)
    assert LabelSmoothingLoss(3).smoothing == 0.05  # paper default LS-0.05


def test_label_smoothing_torch_convention_matches_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 5, generator=g) * 3
    labels = torch.randint(0, 5, (10,), generator=g)
    labels[3] = -100
    for reduction in ("mean", "sum", "none"):
        ours = build_loss("ls_torch", num_classes=5, smoothing=0.2, reduction=reduction)(logits, labels)
        ref = F.cross_entropy(logits, labels, label_smoothing=0.2, reduction=reduction)
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "abc"])
def test_label_smoothing_rejects_bad_eps(bad):
    with pytest.raises(ValueError, match="smoothing"):
        build_loss("ls", num_classes=3, smoothing=bad)


def test_dual_focal_by_hand():
    gamma = 2.0
    # correct sample: p_j is the largest non-target probability in both readings
    p = softmax([2.0, 1.0, 0.0])
    correct = -((1 - p[0] + p[1]) ** gamma) * math.log(p[0])
    # misclassified, label 2 with p2 in the middle: "below" -> p0 (largest under p2); "max_other" -> p1
    q = softmax([0.0, 2.0, 1.0])
    below = -((1 - q[2] + q[0]) ** gamma) * math.log(q[2])
    max_other = -((1 - q[2] + q[1]) ** gamma) * math.log(q[2])
    # label with the smallest probability: nothing below it -> p_j = 0 -> plain focal
    smallest = -((1 - p[2]) ** gamma) * math.log(p[2])
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [2.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2, 2])
    got = DualFocalLoss(3, gamma=gamma, reduction="none")(logits, labels)
    torch.testing.assert_close(got, torch.tensor([correct, below, smallest]))
    got = build_loss("dual_focal", num_classes=3, gamma=2, secondary="max_other", reduction="none")(logits, labels)
    torch.testing.assert_close(got, torch.tensor([correct, max_other, -((1 - p[2] + p[0]) ** 2) * math.log(p[2])]))


def test_mbls_by_hand():
    logits = torch.tensor([[12.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    ce1 = -(12.0 - math.log(math.exp(12) + 1 + math.exp(1)))
    ce2 = -(0.0 - math.log(math.exp(1) + 2))
    # distances to the max logit: [0, 12, 11] -> relu(d - 10) = [0, 2, 1], sum 3; row 2: all < 10 -> 0
    expected = torch.tensor([ce1 + 0.1 * 3, ce2])
    got = build_loss("mbls", num_classes=3, reduction="none")(logits, labels)
    torch.testing.assert_close(got, expected)
    got_mean_cls = build_loss("mbls", num_classes=3, reduction="none", class_reduction="mean")(logits, labels)
    torch.testing.assert_close(got_mean_cls, torch.tensor([ce1 + 0.1 * 3 / 3, ce2]))
