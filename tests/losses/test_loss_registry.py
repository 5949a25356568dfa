"""Registry: every name builds and trains; errors name the valid choices; CLI strings are converted."""

import pytest
import torch

from focalcal.losses import CalibrationLoss, available_losses, build_loss, loss_description, loss_options

EXPECTED = {
    "ce", "focal", "fl1", "fl2", "fl3", "flsc531", "flsc", "flsd53", "flsd53_3level", "flsd", "brier",
    "mmce", "mmce_weighted", "ls", "ls_torch", "dual_focal", "adafocal", "mbls",
}  # fmt: skip


def test_available_losses():
    assert set(available_losses()) == EXPECTED
    assert available_losses() == sorted(available_losses())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_loss_builds_and_runs_forward_backward(name):
    loss = build_loss(name, num_classes=5)
    assert isinstance(loss, CalibrationLoss)
    assert loss_description(name) and "reduction" in loss_options(name)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(9, 5, generator=g) * 3).requires_grad_(True)
    labels = torch.randint(0, 5, (9,), generator=g)
    loss.set_epoch(3, 10)
    if loss.needs_validation:
        loss.update_from_validation(logits.detach(), labels)
    value = loss(logits, labels)
    assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown loss 'x'; choose one of: ") as info:
        build_loss("x", num_classes=3)
    for name in EXPECTED:
        assert name in str(info.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown option") as info:
        build_loss("focal", num_classes=3, gamm=2)
    message = str(info.value)
    assert "gamm" in message and "valid options: " in message
    for option in ("gamma", "reduction", "ignore_index", "alpha", "validate"):
        assert option in message
    with pytest.raises(ValueError, match="valid options: .*ignore_index"):
        build_loss("fl2", num_classes=3, gamma=1)  # fixed alias: gamma is not an option


def test_string_options_are_converted():
    assert build_loss("focal", num_classes=3, gamma="2.5").gamma == 2.5
    assert build_loss("FL3", num_classes=3).gamma == 3.0
    flsd = build_loss("flsd", num_classes=3, thresholds="0.2,0.5", gammas="5,3,2")
    assert flsd.thresholds.tolist() == pytest.approx([0.2, 0.5]) and flsd.gammas.tolist() == [5, 3, 2]
    assert build_loss("mmce", num_classes=3, squared="yes").squared is True
    assert build_loss("ce", num_classes=3, ignore_index="-1").ignore_index == -1
    assert build_loss("ce", num_classes=3, validate="false").validate is False
    assert build_loss("adafocal", num_classes=3, num_bins="10.0").num_bins == 10


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("focal", {"gamma": -1}, "gamma"),
        ("focal", {"gamma": "abc"}, "gamma"),
        ("dual_focal", {"gamma": -0.5}, "gamma"),
        ("ls", {"smoothing": 1.0}, "smoothing"),
        ("ls_torch", {"smoothing": -0.01}, "smoothing"),
        ("mbls", {"margin": -1}, "margin"),
        ("mmce", {"bandwidth": 0}, "bandwidth"),
        ("adafocal", {"num_bins": "2.5"}, "num_bins"),
        ("ce", {"reduction": "avg"}, "reduction"),
        ("dual_focal", {"secondary": "second"}, "secondary"),
        ("flsc", {"schedule": "0:5,x"}, "schedule"),
        ("ce", {"validate": "maybe"}, "validate"),
    ],
)
def test_bad_values_raise_value_error(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_loss(name, num_classes=3, **options)


def test_num_classes_is_checked():
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("ce", num_classes=1)
