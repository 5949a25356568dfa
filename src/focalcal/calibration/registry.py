"""Registry of post-hoc calibrators: ``build_calibrator(name, **options)`` and ``available_calibrators()``.

The same registry shape as losses and models (:class:`focalcal.registry.Registry`): each entry is a
:class:`Calibrator` subclass with its name, label, description and options (read from its constructor,
with converters from the defaults' types so that ``"0.01"`` from a command line becomes a float).

>>> build_calibrator("temperature", method="ece_grid").method
'ece_grid'
>>> calibrator_label("temperature", {"method": "ece_grid"})
'TS (ECE grid)'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InputError
from ..registry import Converter, Registry, as_bool, as_float, as_int, as_is, as_str
from .base import Calibrator, Identity
from .binning import HistogramBinning, IsotonicCalibration
from .matrix import DirichletCalibration, MatrixScaling, VectorScaling
from .temperature import TemperatureScaling

#: Every registered calibrator.
CALIBRATORS = Registry("calibrator")

_BY_TYPE: dict[type, Converter] = {bool: as_bool, int: as_int, float: as_float, str: as_str}


def _constructor_options(cls: type[Calibrator]) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def register_calibrator(
    cls: type[Calibrator],
    *,
    description: str | None = None,
    label: str | Callable[[Mapping[str, Any]], str] | None = None,
    replace: bool = False,
) -> type[Calibrator]:
    """Add a :class:`Calibrator` subclass under ``cls.name``; its options are its constructor's arguments."""
    if not cls.name:
        raise InputError(f"{cls.__name__} has no registry name (class attribute 'name')")
    defaults = _constructor_options(cls)
    options = {k: _BY_TYPE.get(type(v), as_is) for k, v in defaults.items()}
    doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    CALIBRATORS.register(
        cls.name,
        cls,
        description=description or doc,
        label=label,
        options=options,
        meta={"defaults": defaults},
        replace=replace,
    )
    return cls


def available_calibrators() -> list[str]:
    """Sorted registry names accepted by :func:`build_calibrator`."""
    return CALIBRATORS.names()


def calibrator_class(name: str) -> type[Calibrator]:
    """The class registered as ``name``; an error listing the valid names otherwise."""
    return CALIBRATORS.entry(name).factory


def calibrator_options(name: str) -> dict[str, Any]:
    """Constructor options of calibrator ``name`` with their defaults."""
    return dict(CALIBRATORS.entry(name).meta["defaults"])


def calibrator_label(name: str, options: Mapping[str, Any] | None = None) -> str:
    """Display name of a calibrator with its options (for reports)."""
    return CALIBRATORS.label(name, options)


def build_calibrator(name: str, **options: Any) -> Calibrator:
    """An unfitted calibrator by registry name, e.g. ``build_calibrator("temperature", method="ece_grid")``.

    Raises:
        InputError: unknown ``name`` (the message lists :func:`available_calibrators`) or unknown option
            names (the message lists the valid ones).
    """
    return CALIBRATORS.build(name, **options)


def _ts_label(options: Mapping[str, Any]) -> str:
    return "TS (ECE grid)" if options.get("method") == "ece_grid" else "TS (NLL)"


for _cls, _label, _description in (
    (Identity, "uncalibrated", "no calibration (a baseline)"),
    (
        TemperatureScaling,
        _ts_label,
        "temperature scaling (Guo et al. 2017): by validation NLL, or the paper's ECE grid",
    ),
    (VectorScaling, "vector scaling", "vector scaling (Guo et al. 2017): a per-class scale and bias of the logits"),
    (MatrixScaling, "matrix scaling", "matrix scaling (Guo et al. 2017): a K x K affine map of the logits"),
    (DirichletCalibration, "Dirichlet (ODIR)", "Dirichlet calibration with ODIR regularisation (Kull et al. 2019)"),
    (HistogramBinning, "histogram binning", "histogram binning, one-vs-rest (Zadrozny & Elkan 2001)"),
    (IsotonicCalibration, "isotonic regression", "isotonic regression, one-vs-rest (Zadrozny & Elkan 2002)"),
):
    register_calibrator(_cls, label=_label, description=_description)
