"""The one interface of every post-hoc calibrator.

A :class:`Calibrator` is fitted on held-out (validation) logits and labels and then maps logits to
*calibrated logits*: scores whose softmax is the calibrated distribution. Affine calibrators (temperature,
vector, matrix, Dirichlet scaling) return affine maps of the logits or log-probabilities; calibrators that
produce probabilities directly (histogram binning, isotonic regression) return the log of those
probabilities (log-probabilities are logits: ``softmax(log p) = p`` when the rows of p sum to 1). So
``softmax(transform(logits))`` is always the calibrated probability and every metric can take
``logits=transform(logits)``.

Inputs: ``logits [N, K]`` floating point and ``labels [N]`` integer in ``[0, K)``, torch tensors (any
device) or numpy arrays. ``transform`` returns the same kind (torch/numpy) as its input, on the input's
device and in the input's dtype (fitting is done in float64).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..validation import check_fit_inputs, check_logits

STATE_VERSION = 1
#: A conservative cost constant, not a timing of any machine: the seconds charged for one pass over one score
#: value (a float64 softmax and a binned ECE scan on one CPU core); the unit of :meth:`Calibrator.fit_seconds`.
PASS_SECONDS = 2.5e-8


def like_input(out: Tensor, original: Any) -> Any:
    """Return ``out`` as numpy when ``original`` was not a torch tensor."""
    if isinstance(original, Tensor):
        return out
    return out.detach().cpu().numpy()


class Calibrator(abc.ABC):
    """Base class of post-hoc calibrators: ``fit`` on validation logits, ``transform`` any logits.

    Subclasses set ``name`` (the registry key) and implement ``_fit``, ``_transform``, ``_get_state`` and
    ``_set_state``. ``state_dict()`` is JSON-able (plain floats, ints, strings and nested lists).
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.num_classes: int | None = None

    # -- public API ---------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.num_classes is not None

    def fit(self, logits: Any, labels: Any) -> Calibrator:
        """Fit on held-out ``logits [N, K]`` and ``labels [N]``; returns ``self``."""
        z, y = check_fit_inputs(logits, labels)
        self._fit(z, y)
        self.num_classes = int(z.shape[1])
        return self

    def transform(self, logits: Any) -> Any:
        """Calibrated logits ``[N, K]`` (softmax of them is the calibrated distribution)."""
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(logits, labels) first")
        z = check_logits(logits)
        if z.shape[1] != self.num_classes:
            raise InputError(f"logits has {z.shape[1]} classes but the calibrator was fitted on {self.num_classes}")
        return like_input(self._transform(z), logits)

    def fit_transform(self, logits: Any, labels: Any) -> Any:
        return self.fit(logits, labels).transform(logits)

    def predict_proba(self, logits: Any) -> Any:
        """Calibrated probabilities ``[N, K]`` (softmax of :meth:`transform`)."""
        out = self.transform(logits)
        t = torch.as_tensor(out)
        p = torch.softmax(t, dim=1)
        return like_input(p, logits)

    def fit_seconds(self, n_rows: int, n_classes: int) -> float:
        """A rough estimate, in seconds of one CPU core, of one :meth:`fit` on ``n_rows x n_classes`` logits
        (an order of magnitude, from timings of each calibrator; :func:`focalcal.calibration.compare.compare`
        uses it to skip calibrators whose cost is prohibitive for the input). The base class assumes a few
        passes over the scores (:data:`PASS_SECONDS` each); calibrators whose cost grows faster override it."""
        return 4 * PASS_SECONDS * n_rows * n_classes

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: ``{"name", "version", "num_classes", ...}``; see :meth:`from_state_dict`."""
        return {"name": self.name, "version": STATE_VERSION, "num_classes": self.num_classes, **self._get_state()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Calibrator:
        """Rebuild a fitted calibrator from :meth:`state_dict`.

        Called on the base class it dispatches on ``state["name"]`` through the registry.
        """
        if not isinstance(state, dict) or "name" not in state:
            raise InputError("state must be a dict produced by Calibrator.state_dict() (missing 'name')")
        if cls is Calibrator or not cls.name:
            from .registry import calibrator_class

            target = calibrator_class(state["name"])
        else:
            target = cls
            if state["name"] != cls.name:
                raise InputError(f"state is for calibrator {state['name']!r}, not {cls.name!r}")
        obj = target.__new__(target)
        Calibrator.__init__(obj)
        obj._set_state(state)
        obj.num_classes = None if state.get("num_classes") is None else int(state["num_classes"])
        return obj

    @property
    def n_parameters(self) -> int | None:
        """Number of fitted parameters (a fitted calibrator's size, which ``focalcal calibrate``'s one-standard-
        error rule prefers small); None where a subclass does not say (then it is never preferred for its size).
        """
        return None

    def __repr__(self) -> str:
        status = "fitted" if self.is_fitted else "unfitted"
        return f"{type(self).__name__}({status})"

    # -- subclass hooks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, z: Tensor, y: Tensor) -> None: ...

    @abc.abstractmethod
    def _transform(self, z: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def _get_state(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None: ...


class Identity(Calibrator):
    """No calibration: ``transform(logits) = logits`` (a baseline and a registry placeholder)."""

    name = "identity"

    @property
    def n_parameters(self) -> int:
        return 0

    def _fit(self, z: Tensor, y: Tensor) -> None:
        pass

    def _transform(self, z: Tensor) -> Tensor:
        return z.clone()

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass


def to_list(t: Tensor | np.ndarray) -> list:
    """Tensor/array as nested Python lists of floats (JSON-able)."""
    if isinstance(t, Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).tolist()
