"""Registry of post-hoc calibrators: ``build_calibrator(name, **options)`` and ``available_calibrators()``."""

from __future__ import annotations

import inspect
from typing import Any

from .base import Calibrator, Identity
from .binning import HistogramBinning, IsotonicCalibration
from .matrix import DirichletCalibration, MatrixScaling, VectorScaling
from .temperature import TemperatureScaling

_REGISTRY: dict[str, type[Calibrator]] = {}


def register_calibrator(cls: type[Calibrator]) -> type[Calibrator]:
    """Add a :class:`Calibrator` subclass under ``cls.name`` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name (class attribute 'name')")
    _REGISTRY[cls.name] = cls
    return cls


def available_calibrators() -> list[str]:
    """Sorted registry names accepted by :func:`build_calibrator`."""
    return sorted(_REGISTRY)


def calibrator_class(name: str) -> type[Calibrator]:
    """The class registered as ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown calibrator {name!r}; available: {', '.join(available_calibrators())}"
        ) from None


def calibrator_options(name: str) -> dict[str, Any]:
    """Constructor options of calibrator ``name`` with their defaults."""
    sig = inspect.signature(calibrator_class(name).__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def build_calibrator(name: str, **options: Any) -> Calibrator:
    """An unfitted calibrator by registry name, e.g. ``build_calibrator("temperature", method="ece_grid")``.

    Raises:
        ValueError: unknown ``name`` (the message lists :func:`available_calibrators`) or unknown option
            names (the message lists the valid ones).
    """
    cls = calibrator_class(name)
    valid = calibrator_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for calibrator {name!r}; valid: {', '.join(valid) or 'none'}"
        )
    return cls(**options)


for _cls in (
    Identity,
    TemperatureScaling,
    VectorScaling,
    MatrixScaling,
    DirichletCalibration,
    HistogramBinning,
    IsotonicCalibration,
):
    register_calibrator(_cls)
