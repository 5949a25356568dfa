"""``CalibrationLoss.sum_per_sample``: target losses summed, a batch term (MMCE) once per sample, and the trainer's
``loss_normalization: per_sample`` step built on it (the SST protocol: a tree's loss summed over its nodes)."""

import math

import pytest
import torch
import torch.nn.functional as F

from focalcal.engine import Trainer
from focalcal.errors import InputError
from focalcal.losses import build_loss

from ..engine.test_text_engine import sst_config, tree_data


def mmce_w_reference(logits: torch.Tensor, labels: torch.Tensor, bandwidth: float = 0.4) -> float:
    """Kumar et al.'s weighted MMCE written out as the three double sums, in float64 Python loops."""
    probs = torch.softmax(logits.double(), dim=1)
    r, pred = probs.max(dim=1)
    r, ok = r.tolist(), (pred == labels).tolist()
    good = [i for i in range(len(r)) if ok[i]]
    bad = [i for i in range(len(r)) if not ok[i]]
    m, w = len(good), len(bad)

    def k(i, j):
        return math.exp(-abs(r[i] - r[j]) / bandwidth)

    total = sum((1 - r[i]) * (1 - r[j]) * k(i, j) for i in good for j in good) / m**2
    total += sum(r[i] * r[j] * k(i, j) for i in bad for j in bad) / w**2
    total -= 2 * sum((1 - r[i]) * r[j] * k(i, j) for i in good for j in bad) / (m * w)
    return math.sqrt(total)


def batch(n=30, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 2, torch.randint(0, k, (n,), generator=g)


def test_targets_are_summed_like_torchs_cross_entropy():
    logits, labels = batch()
    loss = build_loss("ce", num_classes=3)
    for samples in (1, 7, 30):  # no batch term: the sum of the targets' losses whatever the samples
        got = loss.sum_per_sample(logits, labels, samples)
        assert float(got) == pytest.approx(float(F.cross_entropy(logits, labels, reduction="sum")), rel=1e-6)


def test_class_weights_and_ignored_targets_count_as_in_torch():
    logits, labels = batch(seed=1)
    labels[:4] = -100
    alpha = torch.tensor([0.5, 1.0, 2.0])
    loss = build_loss("ce", num_classes=3, alpha=alpha.tolist())
    want = F.cross_entropy(logits, labels, weight=alpha, reduction="sum", ignore_index=-100)
    assert float(loss.sum_per_sample(logits, labels, 5)) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("lam", [1.0, 2.5])
def test_mmce_counts_once_per_sample_not_once_per_target(lam):
    logits, labels = batch(seed=2)  # 30 targets (tree nodes) in 4 samples (trees)
    loss = build_loss("mmce_weighted", num_classes=3, lam=lam)
    ce_sum = float(F.cross_entropy(logits, labels, reduction="sum"))
    mmce = mmce_w_reference(logits, labels)
    assert mmce > 0.05  # the case has a real batch term
    got = float(loss.sum_per_sample(logits, labels, 4))
    assert got == pytest.approx(ce_sum + 4 * lam * mmce, rel=1e-5)
    # the "sum" reduction shares the term out to every target: 30 times, not 4
    summed = build_loss("mmce_weighted", num_classes=3, lam=lam, reduction="sum")(logits, labels)
    assert float(summed) == pytest.approx(ce_sum + 30 * lam * mmce, rel=1e-5)


@pytest.mark.parametrize("samples", [0, -1, 2.0, True, "3"])
def test_samples_must_be_a_positive_integer(samples):
    logits, labels = batch()
    with pytest.raises(InputError, match="samples must be a positive integer"):
        build_loss("ce", num_classes=3).sum_per_sample(logits, labels, samples)


def test_per_sample_training_step_weighs_mmce_against_one_trees_loss(tmp_path):
    """The SST step: (sum over the batch's nodes of CE + trees * lam * MMCE) / trees."""
    torch.manual_seed(0)
    cfg = sst_config(epochs=1, loss="mmce_weighted", loss_options={"lam": 1.0}, batch_size=10)
    trainer = Trainer(cfg, tmp_path / "run", data=tree_data(), progress=False)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    x, y = next(iter(trainer.train_loader.epoch(0)))
    assert y.shape[0] > 2 * len(x)  # several labelled nodes a tree
    loss, logits = trainer._step(x, y, params)
    logits = logits.detach().float()
    assert mmce_w_reference(logits, y) > 1e-2  # large enough to tell once per tree from once per node
    want = (float(F.cross_entropy(logits, y, reduction="sum")) + len(x) * mmce_w_reference(logits, y)) / len(x)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-4)
