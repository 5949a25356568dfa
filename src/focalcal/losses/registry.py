"""Loss registry: ``build_loss(name, *, num_classes, **options)`` and ``available_losses()``.

Options may arrive from the command line as strings; each option has a converter (``"3"`` -> 3.0,
``"true"`` -> True, ``"0.2,0.5"`` -> (0.2, 0.5), ``"0:5,100:3,250:1"`` -> a schedule). Every loss also takes
the shared options ``reduction``, ``ignore_index``, ``alpha`` and ``validate`` (see ``CalibrationLoss``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .adafocal import AdaFocalLoss
from .base import CalibrationLoss
from .brier import BrierLoss
from .focal import (
    FLSC_531_SCHEDULE,
    FLSD_53_GAMMAS,
    FLSD_53_THRESHOLDS,
    CrossEntropyLoss,
    DualFocalLoss,
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
)
from .mmce import MMCELoss
from .smoothing import LabelSmoothingLoss, MarginLabelSmoothingLoss

__all__ = ["build_loss", "available_losses", "loss_options", "loss_description"]


# ---------------------------------------------------------------------------------------- converters
def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(as_float)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    return int(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _as_float_tuple(value: Any) -> tuple[float, ...]:
    if isinstance(value, str):
        items = [s for s in value.replace(";", ",").split(",") if s.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [value]
    else:
        items = list(value)
    return tuple(_as_float(v) for v in items)


def _identity(value: Any) -> Any:
    return value  # validated by the loss itself (alpha, schedule)


_SHARED: dict[str, Callable[[Any], Any]] = {
    "reduction": _as_str,
    "ignore_index": _as_int,
    "alpha": _identity,
    "validate": _as_bool,
}


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., CalibrationLoss]
    description: str
    options: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {
    "ce": _Entry(CrossEntropyLoss, "cross-entropy"),
    "focal": _Entry(FocalLoss, "focal loss, fixed gamma (default 3)", {"gamma": _as_float}),
    "fl1": _Entry(FocalLoss, "focal loss, gamma 1 (FL-1)", fixed={"gamma": 1.0}),
    "fl2": _Entry(FocalLoss, "focal loss, gamma 2 (FL-2)", fixed={"gamma": 2.0}),
    "fl3": _Entry(FocalLoss, "focal loss, gamma 3 (FL-3)", fixed={"gamma": 3.0}),
    "flsc531": _Entry(
        ScheduledFocalLoss,
        "scheduled focal loss FLSc-531: gamma 5, 3 from epoch 100, 1 from 250 (of 350, scaled)",
        {"reference_epochs": _as_int},
        fixed={"schedule": FLSC_531_SCHEDULE},
    ),
    "flsc": _Entry(
        ScheduledFocalLoss,
        "scheduled focal loss, schedule '0:5,100:3,250:1' of reference_epochs (350), scaled",
        {"schedule": _identity, "reference_epochs": _as_int},
    ),
    "flsd53": _Entry(
        SampleDependentFocalLoss,
        "sample-dependent focal FLSD-53: gamma 5 where p < 0.2, else 3",
        fixed={"thresholds": FLSD_53_THRESHOLDS, "gammas": FLSD_53_GAMMAS},
    ),
    "flsd": _Entry(
        SampleDependentFocalLoss,
        "sample-dependent focal, general: thresholds (ascending), gammas (one more); default FLSD-53",
        {"thresholds": _as_float_tuple, "gammas": _as_float_tuple},
    ),
    "brier": _Entry(BrierLoss, "Brier score"),
    "mmce": _Entry(
        MMCELoss,
        "CE + lam * MMCE (unweighted, Laplacian kernel, lam 2)",
        {"lam": _as_float, "bandwidth": _as_float, "squared": _as_bool},
        fixed={"weighted": False},
    ),
    "mmce_weighted": _Entry(
        MMCELoss,
        "CE + lam * weighted MMCE (lam 2, as in the paper)",
        {"lam": _as_float, "bandwidth": _as_float, "squared": _as_bool},
        fixed={"weighted": True},
    ),
    "ls": _Entry(
        LabelSmoothingLoss,
        "label smoothing, paper convention: 1-eps on the true class, eps/(K-1) elsewhere (default 0.05)",
        {"smoothing": _as_float},
        fixed={"convention": "paper"},
    ),
    "ls_torch": _Entry(
        LabelSmoothingLoss,
        "label smoothing, torch convention: (1-eps) onehot + eps/K (default 0.05)",
        {"smoothing": _as_float},
        fixed={"convention": "torch"},
    ),
    "dual_focal": _Entry(
        DualFocalLoss,
        "dual focal loss (Tao et al. 2023), default gamma 3",
        {"gamma": _as_float, "secondary": _as_str},
    ),
    "adafocal": _Entry(
        AdaFocalLoss,
        "AdaFocal (Ghosh et al. 2022): per-bin gamma updated from validation calibration",
        {
            "num_bins": _as_int,
            "lam": _as_float,
            "gamma_initial": _as_float,
            "gamma_min": _as_float,
            "gamma_max": _as_float,
            "switch_threshold": _as_float,
        },
    ),
    "mbls": _Entry(
        MarginLabelSmoothingLoss,
        "margin-based label smoothing (Liu et al. 2022): CE + lam * sum_j relu(max z - z_j - margin)",
        {"margin": _as_float, "lam": _as_float, "class_reduction": _as_str},
    ),
}


def _flsd53_3level(num_classes: int, gamma: float = 3.0, **kwargs: Any) -> SampleDependentFocalLoss:
    """FLSD-53 as in the authors' code: p < 0.2 -> 5, p < 0.5 -> 3, else ``gamma`` (3)."""
    return SampleDependentFocalLoss(num_classes, thresholds=(0.2, 0.5), gammas=(5.0, 3.0, gamma), **kwargs)


_REGISTRY["flsd53_3level"] = _Entry(
    _flsd53_3level,
    "FLSD-53 as in the authors' code: p<0.2 -> 5, p<0.5 -> 3, else gamma (default 3)",
    {"gamma": _as_float},
)


def available_losses() -> list[str]:
    """Names accepted by :func:`build_loss`, sorted."""
    return sorted(_REGISTRY)


def loss_options(name: str) -> list[str]:
    """Sorted option names :func:`build_loss` accepts for ``name``, the shared ones included.

    Raises:
        ValueError: unknown ``name``.
    """
    return sorted({**_lookup(name).options, **_SHARED})


def loss_description(name: str) -> str:
    """One-line description of a registered loss (for CLI help). Raises ValueError for unknown names."""
    return _lookup(name).description


def _lookup(name: str) -> _Entry:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(available_losses())}")
    return _REGISTRY[key]


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
        ValueError: unknown name (lists the available ones), unknown option (lists the valid ones), an
            option value that cannot be converted, or a value the loss rejects (e.g. negative gamma,
            smoothing outside [0, 1)).
    """
    entry = _lookup(name)
    valid = {**entry.options, **_SHARED}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for loss {name!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    kwargs: dict[str, Any] = dict(entry.fixed)
    for key, value in options.items():
        if value is None and key == "alpha":
            kwargs[key] = None
            continue
        try:
            kwargs[key] = valid[key](value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"option {key}={value!r} of loss {name!r} is invalid: {exc}") from exc
    return entry.factory(num_classes, **kwargs)
