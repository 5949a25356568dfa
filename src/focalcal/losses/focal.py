"""Cross-entropy and the focal-loss family of Mukhoti et al. (NeurIPS 2020), plus Dual Focal loss.

Notation: ``p`` is the softmax probability of the true class. ``log p`` comes from
:func:`~focalcal.losses.base.true_class_log_prob` (a log-softmax that stays accurate where ``p`` rounds to 1)
and ``1 - p`` is computed as ``-expm1(log p)``, which keeps its full relative precision when ``p`` is close
to 1: ``1 - p = 2.06e-9`` for logits ``[20, 0]``, where a float32 ``1 - p`` -- and even ``F.log_softmax`` --
would round it to 0. All powers go through :func:`~focalcal.losses.base.guarded_pow`, so loss and gradient
stay finite for every ``gamma >= 0`` and logits up to +-100 in float32.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .base import CalibrationLoss, guarded_pow, true_class_log_prob

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "ScheduledFocalLoss",
    "SampleDependentFocalLoss",
    "DualFocalLoss",
    "focal_from_log_prob",
    "flsd_gammas",
    "scale_schedule",
    "FLSC_531_SCHEDULE",
    "FLSD_53_THRESHOLDS",
    "FLSD_53_GAMMAS",
]

#: FLSc-531 as (start epoch in the paper's 350-epoch run, gamma): 5 before epoch 100, 3 from 100, 1 from 250.
FLSC_531_SCHEDULE: tuple[tuple[int, float], ...] = ((0, 5.0), (100, 3.0), (250, 1.0))
#: FLSD-53: gamma 5 where p < 0.2, else 3.
FLSD_53_THRESHOLDS: tuple[float, ...] = (0.2,)
FLSD_53_GAMMAS: tuple[float, ...] = (5.0, 3.0)


def _check_gamma(gamma: float, what: str = "gamma") -> float:
    try:
        value = float(gamma)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number, got {gamma!r}") from exc
    if not value >= 0 or value == float("inf"):
        raise InputError(f"{what} must be a finite number >= 0, got {gamma!r}")
    return value


def _as_index(value: object, what: str, minimum: int) -> int:
    """An integer (``int``, numpy or 0-dim integer tensor, not bool) >= ``minimum``, else ValueError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return out


def focal_from_log_prob(log_p: Tensor, gamma: Tensor | float) -> Tensor:
    """Per-sample focal loss ``-(1 - p) ** gamma * log p`` from ``log p`` (float32 ``[N]``).

    ``gamma`` is a float or a tensor broadcastable to ``log_p`` (per-sample gammas, FLSD). ``gamma = 0``
    gives exactly ``-log p`` (cross-entropy). Source: Lin et al. (ICCV 2017), Mukhoti et al. (2020) Sec. 4.
    """
    one_minus_p = -torch.expm1(log_p)
    return -guarded_pow(one_minus_p, gamma) * log_p


class CrossEntropyLoss(CalibrationLoss):
    """Cross-entropy ``-log p`` (nats). Registry name ``"ce"``.

    Equal to ``torch.nn.functional.cross_entropy`` (including ``weight=alpha`` and ``ignore_index`` in
    "mean"/"sum"/"none") up to float rounding -- it is more precise where ``p`` rounds to 1, see
    :func:`~focalcal.losses.base.true_class_log_prob` -- except that a fully ignored batch gives 0 instead of
    NaN. See :class:`~focalcal.losses.base.CalibrationLoss` for the shared arguments.
    """

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        return -true_class_log_prob(logits, labels)


class FocalLoss(CalibrationLoss):
    """Focal loss with a fixed gamma: ``-(1 - p) ** gamma * log p`` (nats).

    Registry names ``"focal"`` (option ``gamma``, default 3) and ``"fl1"``, ``"fl2"``, ``"fl3"``
    (FL-1/2/3 of the paper). ``gamma = 0`` is cross-entropy.

    Args:
        num_classes: K.
        gamma: focusing parameter, a finite float >= 0 (ValueError otherwise).
        **kwargs: ``reduction``, ``ignore_index``, ``alpha``, ``validate`` (see ``CalibrationLoss``).

    Source: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Mukhoti et al., NeurIPS 2020,
    Sec. 4 (the bound ``L_focal >= KL(q || p_hat) - gamma * H[p_hat]``).

    >>> import torch
    >>> logits, labels = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])  # p = 0.787
    >>> round(float(FocalLoss(3, gamma=0.0)(logits, labels)), 4)  # gamma 0 is cross-entropy: -log p
    0.2395
    >>> round(float(FocalLoss(3, gamma=3.0)(logits, labels)), 4)  # (1 - p)^3 -log p
    0.0023
    """

    def __init__(self, num_classes: int, gamma: float = 3.0, **kwargs) -> None:
        super().__init__(num_classes, **kwargs)
        self.gamma = _check_gamma(gamma)

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        return focal_from_log_prob(true_class_log_prob(logits, labels), self.gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"


def scale_schedule(
    schedule: Sequence[tuple[float, float]], epochs: int, reference_epochs: int = 350
) -> list[tuple[int, float]]:
    """Milestones ``(start_epoch, gamma)`` of a schedule for ``reference_epochs``, scaled to ``epochs``.

    Each start is scaled proportionally and rounded half up: ``start' = floor(start * epochs /
    reference_epochs + 1/2)``, computed exactly with fractions (so 100 of 350 -> 10 of 35, 250 of 350 -> 25
    of 35, and 100 of 350 -> 29 of 100 since 28.57 rounds to 29). Milestones that land on the same epoch
    keep the later gamma. Epochs are 0-based: gamma ``g`` applies from epoch ``start'`` on.

    Raises:
        ValueError: ``epochs < 1``, ``reference_epochs < 1``.
    """
    epochs = _as_index(epochs, "epochs", minimum=1)
    reference_epochs = _as_index(reference_epochs, "reference_epochs", minimum=1)
    scaled: dict[int, float] = {}
    for start, gamma in schedule:
        exact = Fraction(start) * epochs / reference_epochs
        scaled[math.floor(exact + Fraction(1, 2))] = float(gamma)
    return sorted(scaled.items())


def parse_schedule(schedule: object, reference_epochs: int) -> tuple[tuple[float, float], ...]:
    """``(start_epoch, gamma)`` pairs of a schedule given as ``"0:5,100:3,250:1"`` or as pairs, checked
    (first start 0, increasing starts below ``reference_epochs``, gammas >= 0).

    Raises:
        InputError: naming what is wrong.
    """
    if isinstance(schedule, str):  # "0:5,100:3,250:1"
        try:
            pairs = [tuple(float(v) for v in item.split(":")) for item in schedule.split(",") if item.strip()]
        except ValueError as exc:
            raise InputError(f"schedule must look like '0:5,100:3,250:1', got {schedule!r}") from exc
    else:
        try:
            pairs = [tuple(float(v) for v in item) for item in schedule]  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise InputError(f"schedule must be a list of (start_epoch, gamma) pairs, got {schedule!r}") from exc
    if not pairs or any(len(p) != 2 for p in pairs):
        raise InputError(f"schedule must be a non-empty list of (start_epoch, gamma) pairs, got {schedule!r}")
    starts = [p[0] for p in pairs]
    if starts[0] != 0:
        raise InputError(f"the first schedule milestone must start at epoch 0, got {starts[0]}")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise InputError(f"schedule start epochs must be strictly increasing, got {starts}")
    if starts[-1] >= reference_epochs:
        raise InputError(f"schedule starts must be < reference_epochs={reference_epochs}, got {starts}")
    for _, g in pairs:
        _check_gamma(g, "schedule gamma")
    return tuple((s, g) for s, g in pairs)  # type: ignore[misc]


class ScheduledFocalLoss(CalibrationLoss):
    """Focal loss whose gamma follows a schedule over epochs (FLSc). Registry ``"flsc531"``, ``"flsc"``.

    FLSc-531 (the default): gamma 5 for epochs [0, 100), 3 for [100, 250), 1 from 250 on, in the paper's
    350-epoch run (0-based epochs, as the engine passes them). For a run of ``epochs`` epochs the milestones
    are scaled by ``epochs / reference_epochs`` and rounded half up (see :func:`scale_schedule`), e.g.
    35 epochs -> switches at epochs 10 and 25.

    Args:
        num_classes: K.
        schedule: ``[(start_epoch_in_reference_run, gamma), ...]``, first start 0, strictly increasing, or
            a string ``"0:5,100:3,250:1"``.
        reference_epochs: the run length the schedule is written for (350 in the paper).
        **kwargs: shared ``CalibrationLoss`` arguments.

    The current gamma is the buffer ``gamma`` (float32 scalar; in ``state_dict``); it holds the first
    milestone's gamma until :meth:`set_epoch` is called. Source: Mukhoti et al. 2020, Sec. 5 (FLSc-531).
    """

    def __init__(
        self,
        num_classes: int,
        schedule: Sequence[tuple[float, float]] | str = FLSC_531_SCHEDULE,
        reference_epochs: int = 350,
        **kwargs,
    ) -> None:
        if isinstance(reference_epochs, bool) or not isinstance(reference_epochs, int) or reference_epochs < 1:
            raise InputError(f"reference_epochs must be an integer >= 1, got {reference_epochs!r}")
        super().__init__(num_classes, **kwargs)
        self.schedule = parse_schedule(schedule, reference_epochs)
        self.reference_epochs = reference_epochs
        # Training state (changes with the epoch): a buffer, so state_dict() checkpoints it.
        self.gamma: Tensor
        self.register_buffer("gamma", torch.tensor(self.schedule[0][1], dtype=torch.float32))

    def gamma_at(self, epoch: int, epochs: int) -> float:
        """Gamma used in 0-based ``epoch`` of a run of ``epochs`` epochs."""
        epoch = _as_index(epoch, "epoch", minimum=0)
        current = self.schedule[0][1]
        for start, gamma in scale_schedule(self.schedule, epochs, self.reference_epochs):
            if epoch >= start:
                current = gamma
        return current

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Set the buffer ``gamma`` for 0-based ``epoch`` of ``epochs`` (no host-device sync)."""
        self.gamma.fill_(self.gamma_at(epoch, epochs))

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        return focal_from_log_prob(true_class_log_prob(logits, labels), self.gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, schedule={list(self.schedule)}"


def flsd_gammas(p: Tensor, thresholds: Tensor, gammas: Tensor) -> Tensor:
    """Per-sample FLSD gamma: ``gammas[i]`` where ``thresholds[i-1] <= p < thresholds[i]``.

    Args:
        p: true-class probabilities ``[N]`` (detach them first; gamma must not carry gradient).
        thresholds: ascending float tensor ``[M]``.
        gammas: float tensor ``[M + 1]``.

    Returns:
        ``[N]`` tensor of gammas (dtype of ``gammas``). Vectorised with ``torch.bucketize``: no Python loop,
        no host-device sync. A ``p`` exactly at a threshold takes the upper level, as in the authors' code
        (``if p < 0.2: 5 elif p < 0.5: 3 ...``).
    """
    return gammas[torch.bucketize(p.to(thresholds.dtype), thresholds, right=True)]


class SampleDependentFocalLoss(CalibrationLoss):
    """Sample-dependent focal loss (FLSD): gamma chosen per sample from its (detached) ``p``.

    Registry names: ``"flsd53"`` (gamma 5 where p < 0.2, else 3), ``"flsd53_3level"`` (the authors' code:
    p < 0.2 -> 5, p < 0.5 -> 3, else the base ``gamma``, default 3 -- identical values to FLSD-53 then) and
    ``"flsd"`` (options ``thresholds``, ``gammas``).

    Args:
        num_classes: K.
        thresholds: ascending probabilities in (0, 1), M of them.
        gammas: M + 1 gammas >= 0; ``gammas[0]`` applies below ``thresholds[0]``, ``gammas[-1]`` from
            ``thresholds[-1]`` on.
        **kwargs: shared ``CalibrationLoss`` arguments.

    Thresholds come from solving ``g(p, gamma) = 1`` (see :mod:`focalcal.losses.analysis`); e.g.
    ``gamma_threshold(0.2) = 4.85`` motivates gamma 5 below p = 0.2. Source: Mukhoti et al. 2020, Sec. 4-5.
    """

    def __init__(
        self,
        num_classes: int,
        thresholds: Sequence[float] = FLSD_53_THRESHOLDS,
        gammas: Sequence[float] = FLSD_53_GAMMAS,
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        try:
            th = [float(t) for t in thresholds]
            gs = [_check_gamma(g, "FLSD gammas") for g in gammas]
        except TypeError as exc:
            raise InputError("thresholds and gammas must be sequences of numbers") from exc
        if len(gs) != len(th) + 1:
            raise InputError(
                f"FLSD needs len(gammas) == len(thresholds) + 1, got {len(gs)} gammas for {len(th)} thresholds"
            )
        if any(not 0.0 < t < 1.0 for t in th) or any(b <= a for a, b in zip(th, th[1:])):
            raise InputError(f"FLSD thresholds must be strictly increasing values in (0, 1), got {th}")
        # Constants, not training state: non-persistent buffers so they follow .to(device).
        self.register_buffer("thresholds", torch.tensor(th, dtype=torch.float32), persistent=False)
        self.register_buffer("gammas", torch.tensor(gs, dtype=torch.float32), persistent=False)

    def sample_gammas(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample gammas ``[N]`` (float32) for ``logits [N, K]`` and ``labels [N]``; no gradient."""
        with torch.no_grad(), torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, _ = self._prepare(logits, labels)
            return flsd_gammas(true_class_log_prob(x, y).exp(), self.thresholds, self.gammas)

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        log_p = true_class_log_prob(logits, labels)
        gamma = flsd_gammas(log_p.detach().exp(), self.thresholds, self.gammas)
        return focal_from_log_prob(log_p, gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, thresholds={self.thresholds.tolist()}, gammas={self.gammas.tolist()}"


class DualFocalLoss(CalibrationLoss):
    """Dual Focal loss: ``-(1 - p_y + p_j) ** gamma * log p_y`` (nats). Registry name ``"dual_focal"``.

    ``p_j`` is the "dual" probability. Tao et al. define it as the highest probability *ranked after the
    ground truth* -- the largest probability strictly below ``p_y``, 0 if there is none -- and their code
    does exactly that; this is ``secondary="below"`` (default). For a correctly classified sample it is
    the largest non-target probability; for a misclassified one it is not. ``secondary="max_other"``
    uses the largest non-target probability in every case. Gradient flows through ``p_y`` and the
    selected ``p_j`` (the selection itself is discrete). The base ``1 - p_y + p_j`` is in ``[0, 2]``.

    Args:
        num_classes: K.
        gamma: finite float >= 0. Default 3 is this project's choice (the paper tunes gamma per dataset).
        secondary: ``"below"`` or ``"max_other"``.
        **kwargs: shared ``CalibrationLoss`` arguments.

    Source: Tao, Dong, Xu, "Dual Focal Loss for Calibration", ICML 2023, Eq. 3.
    """

    SECONDARY = ("below", "max_other")

    def __init__(self, num_classes: int, gamma: float = 3.0, secondary: str = "below", **kwargs) -> None:
        super().__init__(num_classes, **kwargs)
        self.gamma = _check_gamma(gamma)
        if secondary not in self.SECONDARY:
            raise InputError(f"secondary must be one of {self.SECONDARY}, got {secondary!r}")
        self.secondary = secondary

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        probs = F.softmax(logits, dim=1)
        log_p = true_class_log_prob(logits, labels)  # precise 1 - p_y, see base.true_class_log_prob
        target = F.one_hot(labels, self.num_classes).bool()
        if self.secondary == "below":
            candidates = probs < probs.gather(1, labels.unsqueeze(1))
        else:
            candidates = ~target
        p_j = torch.where(candidates, probs, torch.zeros_like(probs)).amax(dim=1)
        base = -torch.expm1(log_p) + p_j
        return -guarded_pow(base, self.gamma) * log_p

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}, secondary={self.secondary!r}"
