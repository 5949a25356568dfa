"""Shared semantics of every loss: reductions, ignore_index, alpha weights, input checks, float32."""

import pytest
import torch
import torch.nn.functional as F

from focalcal.losses import CalibrationLoss, build_loss


def _batch(n=12, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ce_matches_torch_weighted_ce_with_ignore_index(reduction):
    logits, labels = _batch()
    labels[[1, 5]] = -100
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0])
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    ours = build_loss("ce", num_classes=4, alpha=alpha, reduction=reduction)(x1, labels)
    ref = F.cross_entropy(x2, labels, weight=alpha, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert x1.grad[[1, 5]].abs().max() == 0  # ignored rows get no gradient


def test_mean_with_alpha_is_normalised_by_kept_weights_by_hand():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, -100])
    alpha = torch.tensor([3.0, 1.0])
    ce0 = -F.log_softmax(logits[0], 0)[0].item()
    ce1 = -F.log_softmax(logits[1], 0)[0].item()
    expected = (3 * ce0 + 3 * ce1) / (3 + 3)  # row 3 ignored: neither numerator nor denominator
    got = build_loss("ce", num_classes=2, alpha=alpha)(logits, labels)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got_sum = build_loss("ce", num_classes=2, alpha=alpha, reduction="sum")(logits, labels)
    assert got_sum.item() == pytest.approx(3 * ce0 + 3 * ce1, rel=1e-6)


@pytest.mark.parametrize("name", ["focal", "flsd53", "brier", "ls", "dual_focal", "mbls", "mmce_weighted"])
def test_ignored_rows_are_not_counted(name):
    logits, labels = _batch(n=10, k=3, seed=1)
    labels[:6] = torch.tensor([0, 1, 2, 0, 1, 2])  # both correct and wrong rows exist for MMCE
    logits[0, 0] = 5.0
    labels_ign = labels.clone()
    labels_ign[[2, 7]] = -100
    kept = torch.tensor([i not in (2, 7) for i in range(10)])
    loss = build_loss(name, num_classes=3)
    torch.testing.assert_close(loss(logits, labels_ign), loss(logits[kept], labels[kept]))
    none = build_loss(name, num_classes=3, reduction="none")(logits, labels_ign)
    assert none.shape == (10,)
    assert none[2] == 0 and none[7] == 0


def test_ignore_index_inside_class_range_matches_torch():
    logits, labels = _batch(n=12, k=4, seed=3)
    ours = build_loss("ce", num_classes=4, ignore_index=2)(logits, labels)
    torch.testing.assert_close(ours, F.cross_entropy(logits, labels, ignore_index=2))


def test_custom_ignore_index_and_all_ignored_batch_gives_zero_not_nan():
    logits = torch.randn(3, 4, requires_grad=True)
    labels = torch.tensor([7, 7, 7])
    loss = build_loss("focal", num_classes=4, ignore_index=7)(logits, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 4))
    empty = build_loss("mmce_weighted", num_classes=4)(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_batch_term_is_shared_out_consistently_across_reductions():
    logits, labels = _batch(n=8, k=3, seed=2)
    mean = build_loss("mmce", num_classes=3)(logits, labels)
    total = build_loss("mmce", num_classes=3, reduction="sum")(logits, labels)
    none = build_loss("mmce", num_classes=3, reduction="none")(logits, labels)
    torch.testing.assert_close(total, mean * 8)
    torch.testing.assert_close(none.mean(), mean)


def test_output_is_float32_and_shapes():
    logits, labels = _batch()
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        out = build_loss("focal", num_classes=4)(logits.to(dtype), labels)
        assert out.dtype == torch.float32 and out.shape == ()
    assert build_loss("ce", num_classes=4, reduction="none")(logits, labels).shape == (12,)


def test_int32_labels_are_accepted():
    logits, labels = _batch()
    torch.testing.assert_close(build_loss("ce", num_classes=4)(logits, labels.int()), F.cross_entropy(logits, labels))


def test_out_of_range_labels_raise_a_clear_value_error():
    logits, labels = _batch(n=4)
    labels[2] = 4
    with pytest.raises(ValueError, match=r"\[0, 4\).*out-of-range labels \[4\]"):
        build_loss("ce", num_classes=4)(logits, labels)
    labels[2] = -3
    with pytest.raises(ValueError, match="out-of-range"):
        build_loss("focal", num_classes=4)(logits, labels)


def test_validate_false_skips_the_check():
    logits, labels = _batch(n=4)
    labels[0] = 9
    with pytest.raises((IndexError, RuntimeError)):  # torch's own gather error, not ours
        build_loss("ce", num_classes=4, validate=False)(logits, labels)


@pytest.mark.parametrize(
    "logits, labels, match",
    [
        (torch.zeros(3, 5), torch.zeros(3, dtype=torch.long), "num_classes=4"),
        (torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), r"shape \[N\]"),
        (torch.zeros(3, 4), torch.zeros(3), "integer"),
        (torch.zeros(3, 4, 1), torch.zeros(3, dtype=torch.long), r"\[N, K\]"),
        (torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_shapes_and_dtypes(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        build_loss("ce", num_classes=4)(logits, labels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reduction": "avg"}, "reduction"),
        ({"ignore_index": "x"}, "ignore_index"),
        ({"alpha": [1.0, 2.0]}, "one weight per class"),
        ({"alpha": [1.0, -2.0, 1.0, 1.0]}, ">= 0"),
    ],
)
def test_bad_shared_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_loss("ce", num_classes=4, **kwargs)


def test_alpha_is_a_buffer_and_follows_state_dict():
    loss = build_loss("focal", num_classes=3, alpha="1,2,3")
    assert torch.equal(loss.state_dict()["alpha"], torch.tensor([1.0, 2.0, 3.0]))


def test_base_class_defaults():
    assert CalibrationLoss.needs_validation is False
    loss = build_loss("ce", num_classes=3)
    loss.set_epoch(0, 10)  # no-op, must not raise
    loss.update_from_validation(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    assert isinstance(loss, torch.nn.Module)
