"""Loss registry: ``build_loss(name, *, num_classes, **options)`` and ``available_losses()``.

Options may arrive from the command line as strings; each option has a converter (``"3"`` -> 3.0,
``"true"`` -> True, ``"0.2,0.5"`` -> (0.2, 0.5), ``"0:5,100:3,250:1"`` -> a schedule). Every loss also takes
the shared options ``reduction``, ``ignore_index``, ``alpha`` and ``validate`` (see ``CalibrationLoss``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InputError
from ..registry import (
    Converter,
    Registry,
    as_bool,
    as_float,
    as_float_tuple,
    as_int,
    as_is,
    as_str,
    option_suffix,
)
from . import focal
from .adafocal import AdaFocalLoss
from .base import CalibrationLoss
from .brier import BrierLoss
from .mmce import MMCELoss
from .smoothing import LabelSmoothingLoss, MarginLabelSmoothingLoss

__all__ = [
    "LOSSES",
    "available_losses",
    "build_loss",
    "loss_description",
    "loss_identity",
    "loss_label",
    "loss_options",
    "register_loss",
]


_SHARED: dict[str, Converter] = {
    "reduction": as_str,
    "ignore_index": as_int,
    "alpha": as_is,
    "validate": as_bool,
}

#: Every registered loss. ``LOSSES.register(...)`` adds one (see :func:`register_loss`).
LOSSES = Registry("loss", shared_options=_SHARED)


def register_loss(
    name: str,
    factory: Callable[..., CalibrationLoss],
    *,
    description: str,
    label: str | Callable[[Mapping[str, Any]], str] | None = None,
    options: Mapping[str, Converter] | None = None,
    fixed: Mapping[str, Any] | None = None,
    replace: bool = False,
):
    """Register a loss: ``factory(num_classes, **fixed, **options)`` must return a :class:`CalibrationLoss`.

    ``label`` is the name shown in plot legends and tables (a string, or a function of the run's loss
    options); ``options`` maps each option name to a converter from the command line's strings.
    """
    return LOSSES.register(
        name, factory, description=description, label=label, options=options, fixed=fixed, replace=replace
    )


def _flsd53_3level(num_classes: int, gamma: float = 3.0, **kwargs: Any) -> focal.SampleDependentFocalLoss:
    """FLSD-53 as in the authors' code: p < 0.2 -> 5, p < 0.5 -> 3, else ``gamma`` (3)."""
    return focal.SampleDependentFocalLoss(num_classes, thresholds=(0.2, 0.5), gammas=(5.0, 3.0, gamma), **kwargs)


def _gamma_digits(gammas: Any) -> str | None:
    """``"53"`` for gammas (5, 3): the paper names a focal schedule by its gammas (whole numbers 0-9)."""
    try:
        gs = [float(g) for g in gammas]
    except (TypeError, ValueError):
        return None
    return "".join(str(int(g)) for g in gs) if gs and all(g.is_integer() and 0 <= g < 10 for g in gs) else None


def _schedule_label(name: str, gammas: Any, shown: Mapping[str, Any]) -> str:
    """``FLSD-53`` / ``FLSc-531`` from the gammas (when they are whole numbers), the paper's names whatever
    the thresholds or switch epochs (which a protocol sets, e.g. the text experiments'); else the name with
    its options."""
    digits = _gamma_digits(gammas)
    return f"{name}-{digits}" if digits else name + option_suffix(dict(shown))


def _flsd_label(options: Mapping[str, Any]) -> str:
    """``flsd`` with gammas (5, 3) -> ``"FLSD-53"``, whatever its thresholds."""
    return _schedule_label("FLSD", options.get("gammas", focal.FLSD_53_GAMMAS), options)


def _flsc_label(options: Mapping[str, Any]) -> str:
    """``flsc`` with schedule ``"0:5,14:3,35:1"`` -> ``"FLSc-531"``, whatever its switch epochs."""
    schedule = options.get("schedule", focal.FLSC_531_SCHEDULE)
    try:
        gammas = [g for _, g in focal.parse_schedule(schedule, 10**9)]
    except InputError:
        gammas = None
    return _schedule_label("FLSc", gammas, options)


_MMCE_OPTIONS = {"lam": as_float, "bandwidth": as_float, "squared": as_bool}
_ADAFOCAL_OPTIONS = {
    "num_bins": as_int,
    "lam": as_float,
    "gamma_initial": as_float,
    "gamma_min": as_float,
    "gamma_max": as_float,
    "switch_threshold": as_float,
}
for _name, _factory, _description, _label, _options, _fixed in (
    ("ce", focal.CrossEntropyLoss, "cross-entropy", "CE", {}, {}),
    ("focal", focal.FocalLoss, "focal loss, fixed gamma (default 3)", "FL-{gamma}", {"gamma": as_float}, {}),
    ("fl1", focal.FocalLoss, "focal loss, gamma 1 (FL-1)", "FL-1", {}, {"gamma": 1.0}),
    ("fl2", focal.FocalLoss, "focal loss, gamma 2 (FL-2)", "FL-2", {}, {"gamma": 2.0}),
    ("fl3", focal.FocalLoss, "focal loss, gamma 3 (FL-3)", "FL-3", {}, {"gamma": 3.0}),
    (
        "flsc531",
        focal.ScheduledFocalLoss,
        "scheduled focal loss FLSc-531: gamma 5, 3 from epoch 100, 1 from 250 (of 350, scaled)",
        "FLSc-531",
        {"reference_epochs": as_int},
        {"schedule": focal.FLSC_531_SCHEDULE},
    ),
    (
        "flsc",
        focal.ScheduledFocalLoss,
        "scheduled focal loss, schedule '0:5,100:3,250:1' of reference_epochs (350), scaled",
        _flsc_label,
        {"schedule": as_is, "reference_epochs": as_int},
        {},
    ),
    (
        "flsd53",
        focal.SampleDependentFocalLoss,
        "sample-dependent focal FLSD-53: gamma 5 where p < 0.2, else 3",
        "FLSD-53",
        {},
        {"thresholds": focal.FLSD_53_THRESHOLDS, "gammas": focal.FLSD_53_GAMMAS},
    ),
    (
        "flsd53_3level",
        _flsd53_3level,
        "FLSD-53 as in the authors' code: p<0.2 -> 5, p<0.5 -> 3, else gamma (default 3)",
        "FLSD-53 (3-level)",
        {"gamma": as_float},
        {},
    ),
    (
        "flsd",
        focal.SampleDependentFocalLoss,
        "sample-dependent focal, general: thresholds (ascending), gammas (one more); default FLSD-53",
        _flsd_label,
        {"thresholds": as_float_tuple, "gammas": as_float_tuple},
        {},
    ),
    ("brier", BrierLoss, "Brier score", "Brier", {}, {}),
    (
        "mmce",
        MMCELoss,
        "CE + lam * MMCE (unweighted, Laplacian kernel, lam 2)",
        "MMCE (unweighted)",
        _MMCE_OPTIONS,
        {"weighted": False},
    ),
    (
        "mmce_weighted",
        MMCELoss,
        "CE + lam * weighted MMCE (lam 2, as in the paper)",
        "MMCE",
        _MMCE_OPTIONS,
        {"weighted": True},
    ),
    (
        "ls",
        LabelSmoothingLoss,
        "label smoothing, paper convention: 1-eps on the true class, eps/(K-1) elsewhere (default 0.05)",
        "LS-{smoothing}",
        {"smoothing": as_float},
        {"convention": "paper"},
    ),
    (
        "ls_torch",
        LabelSmoothingLoss,
        "label smoothing, torch convention: (1-eps) onehot + eps/K (default 0.05)",
        "LS-{smoothing} (torch convention)",
        {"smoothing": as_float},
        {"convention": "torch"},
    ),
    (
        "dual_focal",
        focal.DualFocalLoss,
        "dual focal loss (Tao et al. 2023), default gamma 3",
        "dual FL-{gamma}",
        {"gamma": as_float, "secondary": as_str},
        {},
    ),
    (
        "adafocal",
        AdaFocalLoss,
        "AdaFocal (Ghosh et al. 2022): per-bin gamma updated from validation calibration",
        "AdaFocal",
        _ADAFOCAL_OPTIONS,
        {},
    ),
    (
        "mbls",
        MarginLabelSmoothingLoss,
        "margin-based label smoothing (Liu et al. 2022): CE + lam * sum_j relu(max z - z_j - margin)",
        "MbLS",
        {"margin": as_float, "lam": as_float, "class_reduction": as_str},
        {},
    ),
):
    register_loss(_name, _factory, description=_description, label=_label, options=_options, fixed=_fixed)


def available_losses() -> list[str]:
    """Names accepted by :func:`build_loss`, sorted."""
    return LOSSES.names()


def loss_options(name: str) -> list[str]:
    """Sorted option names :func:`build_loss` accepts for ``name``, the shared ones included.

    Raises:
        InputError: unknown ``name``.
    """
    return LOSSES.option_names(name)


def loss_description(name: str) -> str:
    """One-line description of a registered loss (for CLI help). Raises InputError for unknown names."""
    return LOSSES.entry(name).description


def loss_label(name: str, options: Mapping[str, Any] | None = None) -> str:
    """The paper's display name of a loss with its options, for legends and tables.

    ``("ce", {})`` -> ``"CE"``, ``("focal", {"gamma": 2})`` -> ``"FL-2"``, ``("fl3", {})`` -> ``"FL-3"``,
    ``("flsd53", {})`` -> ``"FLSD-53"``, ``("ls", {"smoothing": 0.1})`` -> ``"LS-0.1"``; options at their
    default are not shown, other options are appended. Options that only change how the loss is reduced or
    checked (``reduction``, ``validate``) are left out; an unknown name is shown with its options.

    >>> loss_label("focal", {"gamma": 2, "reduction": "sum"}), loss_label("mmce_weighted", {"lam": 2})
    ('FL-2', 'MMCE')
    >>> loss_label("mmce_weighted", {"lam": 4})
    'MMCE (λ=4)'
    """
    opts = {k: v for k, v in (options or {}).items() if k not in ("reduction", "validate")}
    try:  # typed, so that a run made when options were stored as strings ("2.0") shows "FL-2"
        opts = LOSSES.convert_options(name, opts)
    except InputError:  # an unknown loss or option is shown as it is
        pass
    return LOSSES.label(name, opts)


def loss_identity(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The loss a run trains with, whatever the spelling (JSON-able): its factory and every keyword argument
    (defaults, the entry's fixed options, the typed options), without ``validate`` (which changes nothing
    trained). ``("fl2", {})``, ``("focal", {"gamma": "2"})`` and ``("focal", {"gamma": 2.0})`` have one
    identity; ``focalcal table`` groups runs by it. A name or option that is not registered (a run of a loss
    registered elsewhere) gives ``{"loss": name, "options": options}``.

    >>> loss_identity("fl2") == loss_identity("focal", {"gamma": "2"}) != loss_identity("fl3")
    True
    """
    try:
        return LOSSES.identity(name, options, ignore=("validate",))
    except InputError:
        return {"loss": name, "options": dict(options or {})}


def build_loss(name: str, *, num_classes: int, **options: Any) -> CalibrationLoss:
    """Build the loss registered as ``name`` for ``num_classes`` classes.

    Args:
        name: one of :func:`available_losses` (case-insensitive).
        num_classes: K >= 2.
        **options: loss-specific options plus ``reduction``, ``ignore_index``, ``alpha``, ``validate``.
            Strings are converted (numbers, booleans, comma-separated lists, ``"0:5,100:3"`` schedules).

    Returns:
        A :class:`~focalcal.losses.base.CalibrationLoss` (an ``nn.Module``; move it with ``.to(device)``).

    Raises:
        InputError: unknown name (lists the available ones), unknown option (lists the valid ones), an
            option value that cannot be converted, or a value the loss rejects (e.g. negative gamma,
            smoothing outside [0, 1)).

    >>> import torch
    >>> loss = build_loss("flsd53", num_classes=3)
    >>> round(float(loss(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))), 4)
    0.0023
    """
    if options.get("alpha", 0) is None:
        options = {k: v for k, v in options.items() if k != "alpha"}
    return LOSSES.build(name, num_classes, **options)
