"""Non-parametric calibrators on probabilities: histogram binning (Zadrozny & Elkan 2001) and isotonic
regression (Zadrozny & Elkan 2002), both one-vs-rest for K classes as in Guo et al. (ICML 2017).

For each class k a map ``g_k`` from the predicted ``p_k = softmax(logits)_k`` to the calibrated frequency of
class k is fitted on validation data; at transform time ``q_k = max(g_k(p_k), min_prob)`` is renormalised
over the classes (one-vs-rest maps do not sum to 1 on their own) and ``log q`` is returned: calibrated
log-probabilities, which are logits of the calibrated distribution (``softmax(log q) = q``). The floor
``min_prob`` (default 1e-6) keeps the log finite when a map outputs 0; it caps a sample's NLL at about
``-log(min_prob) = 13.8`` nats and is a documented choice, not part of the original methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..defaults import N_BINS
from ..errors import InputError
from ..metrics.kernel import equal_width_edges, equal_width_index
from ..validation import check_n_bins
from .base import PASS_SECONDS, Calibrator, to_list


def _finish(q: Tensor, min_prob: float, dtype: torch.dtype) -> Tensor:
    q = q.clamp_min(min_prob)
    q = q / q.sum(1, keepdim=True)
    return torch.log(q).to(dtype)


def _check_min_prob(min_prob: float) -> float:
    if not (0 < min_prob < 1):
        raise InputError(f"min_prob must lie in (0, 1); got {min_prob!r}")
    return float(min_prob)


class HistogramBinning(Calibrator):
    """Histogram binning, one-vs-rest: ``g_k(p)`` = fraction of class k among the validation samples whose
    ``p_k`` falls in the same equal-width bin (bins as :mod:`focalcal.metrics.binning`; an empty bin keeps
    its midpoint).

    Args:
        n_bins: bins per class (default 15).
        min_prob: floor before renormalising (see module doc).
    """

    name = "histogram"

    def __init__(self, n_bins: int = N_BINS, min_prob: float = 1e-6) -> None:
        super().__init__()
        self.n_bins = check_n_bins(n_bins)
        self.min_prob = _check_min_prob(min_prob)
        self.theta: Tensor | None = None  # [K, n_bins] float64

    @property
    def n_parameters(self) -> int | None:
        """``K n_bins``: one frequency per class and bin; None before fitting."""
        return None if self.theta is None else int(self.theta.numel())

    def _fit(self, z: Tensor, y: Tensor) -> None:
        p = torch.softmax(z.double(), 1)
        n, k = p.shape
        nb = self.n_bins
        edges = equal_width_edges(nb, torch.float64, p.device)
        idx = equal_width_index(p, edges)  # [N, K]
        flat = (idx + torch.arange(k, device=p.device) * nb).reshape(-1)
        counts = torch.bincount(flat, minlength=k * nb).view(k, nb).double()
        lab = y * nb + idx.gather(1, y[:, None]).squeeze(1)
        pos = torch.bincount(lab, minlength=k * nb).view(k, nb).double()
        mid = (edges[:-1] + edges[1:]) / 2
        self.theta = torch.where(counts > 0, pos / counts.clamp(min=1), mid.expand(k, nb)).cpu()

    def _transform(self, z: Tensor) -> Tensor:
        p = torch.softmax(z.double(), 1)
        edges = equal_width_edges(self.n_bins, torch.float64, p.device)
        idx = equal_width_index(p, edges)
        theta = self.theta.to(p.device)
        q = theta.gather(1, idx.T).T  # q[i, k] = theta[k, idx[i, k]]
        return _finish(q, self.min_prob, z.dtype)

    def _get_state(self) -> dict[str, Any]:
        return {"n_bins": self.n_bins, "min_prob": self.min_prob, "theta": to_list(self.theta)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.__init__(n_bins=state["n_bins"], min_prob=state["min_prob"])
        self.theta = torch.tensor(state["theta"], dtype=torch.float64)


class IsotonicCalibration(Calibrator):
    """Isotonic regression, one-vs-rest: ``g_k`` is scikit-learn's ``IsotonicRegression(y_min=0, y_max=1,
    out_of_bounds="clip")`` fitted on ``(p_k, 1[y = k])``; it is stored as its breakpoints and applied by
    linear interpolation (``np.interp``, clipping outside the fitted range), as scikit-learn predicts.

    Args:
        min_prob: floor before renormalising (see module doc).
    """

    name = "isotonic"

    def __init__(self, min_prob: float = 1e-6) -> None:
        super().__init__()
        self.min_prob = _check_min_prob(min_prob)
        self.x_thresholds: list[np.ndarray] | None = None
        self.y_thresholds: list[np.ndarray] | None = None

    @property
    def n_parameters(self) -> int | None:
        """Two numbers (x, y) per fitted breakpoint, summed over the classes; None before fitting."""
        if self.x_thresholds is None:
            return None
        return int(sum(2 * len(x) for x in self.x_thresholds))

    def _fit(self, z: Tensor, y: Tensor) -> None:
        from sklearn.isotonic import IsotonicRegression

        p = torch.softmax(z.double(), 1).cpu().numpy()
        yy = y.cpu().numpy()
        xs, ys = [], []
        for k in range(p.shape[1]):  # one 1-D fit per class (scikit-learn's PAVA is O(N))
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
            iso.fit(p[:, k], (yy == k).astype(np.float64))
            xs.append(np.asarray(iso.X_thresholds_, dtype=np.float64))
            ys.append(np.asarray(iso.y_thresholds_, dtype=np.float64))
        self.x_thresholds, self.y_thresholds = xs, ys

    def _transform(self, z: Tensor) -> Tensor:
        p = torch.softmax(z.double(), 1).cpu().numpy()
        q = np.empty_like(p)
        for k in range(p.shape[1]):
            q[:, k] = np.interp(p[:, k], self.x_thresholds[k], self.y_thresholds[k])
        return _finish(torch.from_numpy(q).to(z.device), self.min_prob, z.dtype)

    def fit_seconds(self, n_rows: int, n_classes: int) -> float:
        """Estimated seconds of one fit, from conservative cost constants: one scikit-learn isotonic fit per
        class (a fixed cost plus sorting the ``n_rows`` probabilities) and two passes of
        :data:`~focalcal.calibration.base.PASS_SECONDS` per score value."""
        return n_classes * (1e-3 + 4e-7 * n_rows) + 2 * PASS_SECONDS * n_rows * n_classes

    def _get_state(self) -> dict[str, Any]:
        return {
            "min_prob": self.min_prob,
            "x_thresholds": [x.tolist() for x in self.x_thresholds] if self.x_thresholds else None,
            "y_thresholds": [v.tolist() for v in self.y_thresholds] if self.y_thresholds else None,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.__init__(min_prob=state["min_prob"])
        self.x_thresholds = [np.asarray(x, dtype=np.float64) for x in state["x_thresholds"]]
        self.y_thresholds = [np.asarray(v, dtype=np.float64) for v in state["y_thresholds"]]
