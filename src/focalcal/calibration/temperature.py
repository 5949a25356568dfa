"""Temperature scaling (Guo et al., ICML 2017), as used by Mukhoti et al. (NeurIPS 2020, Sec. 5).

``transform(logits) = logits / T`` with one scalar ``T > 0`` fitted on validation data. Dividing by a
positive scalar never changes the argmax (up to float rounding merging two logits within one ulp).

Two fitting methods:

* ``"nll"`` (default; the common protocol): minimise the validation NLL over T in float64. With
  ``b = 1/T = exp(-log T)`` the NLL ``g(b) = mean_i logsumexp(b z_i) - b z_iy`` is convex in b
  (``g''(b) = mean_i Var_{softmax(b z_i)}[z_i] >= 0``), so the minimiser is unique on the allowed range
  ``[t_min, t_max]``. It is found by safeguarded Newton steps on ``g'(b) = 0`` with a bracket that is
  bisected in log T whenever a Newton step leaves it; T is positive by construction. Attributes report
  ``converged`` (the step in log T fell below ``tol`` within ``max_iter`` iterations) and ``at_bound``
  (the minimum lies at ``t_min`` or ``t_max``: e.g. a perfectly separated validation set wants T -> 0).
* ``"ece_grid"`` (the paper's protocol, read from the authors' code): grid T = 0.1, 0.2, ..., 10.0 and
  take the T with the lowest validation ECE (``n_bins`` equal-width bins with the ``closed`` rule); the
  first (smallest) T wins a tie.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> labels = torch.randint(0, 3, (2000,), generator=g)
>>> calibrated = 4.0 * torch.nn.functional.one_hot(labels, 3) + 2.0 * torch.randn(2000, 3, generator=g)
>>> ts = TemperatureScaling().fit(3 * calibrated, labels)  # logits three times too confident
>>> round(ts.temperature, 2), ts.converged
(2.71, True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..defaults import BIN_CLOSED, N_BINS, TS_METHOD, TS_METHODS
from ..errors import InputError
from ..metrics.binning import bin_stats
from ..metrics.kernel import scan_tensor
from ..validation import check_closed, check_n_bins
from .base import PASS_SECONDS, Calibrator

#: The paper's grid: 0.1 .. 10.0 in steps of 0.1 (exact decimal values).
PAPER_GRID = tuple(i / 10 for i in range(1, 101))


def _nll_and_derivatives(dz: Tensor, b: float) -> tuple[float, float, float]:
    """``(g(b), g'(b), g''(b))`` of the mean NLL at inverse temperature ``b`` (float64).

    ``dz = z - z_y`` (logits relative to the label's): ``g(b) = mean_i logsumexp(b dz_i)``,
    ``g'(b) = mean_i E_p[dz_i]`` and ``g''(b) = mean_i Var_p[dz_i]`` with ``p = softmax(b dz_i)``. Working
    relative to the label keeps the sign of ``g'`` exact even when p is one-hot to machine precision.
    """
    s = dz * b
    lse = torch.logsumexp(s, dim=1)
    p = torch.exp(s - lse[:, None])
    m = torch.linalg.vecdot(p, dz)
    var = torch.linalg.vecdot(p, (dz - m[:, None]).square())
    return float(lse.mean()), float(m.mean()), float(var.mean())


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _from_json_float(x: float | None) -> float:
    return math.nan if x is None else float(x)


class TemperatureScaling(Calibrator):
    """Temperature scaling: ``transform(logits) = logits / T``.

    Args:
        method: ``"nll"`` (minimise validation NLL; default) or ``"ece_grid"`` (the paper's grid
            0.1..10.0 step 0.1 minimising validation ECE).
        n_bins: ECE bins for ``"ece_grid"`` (paper: 15).
        closed: ECE bin rule for ``"ece_grid"``, ``"left"`` ``[lo, hi)`` or ``"right"`` ``(lo, hi]``.
        t_min, t_max: allowed range of T for ``"nll"`` (default 0.01 .. 100).
        tol: convergence tolerance on the Newton step in log T (``"nll"``).
        max_iter: iteration cap (``"nll"``).

    Attributes (after ``fit``):
        temperature: the fitted T (float, > 0; 1.0 before fitting).
        converged: whether the optimiser met its tolerance (always True for the grid).
        at_bound: whether T is at an end of the allowed range (``t_min``/``t_max``, or 0.1/10.0 for the grid).
        n_iter: optimiser iterations (grid: number of grid points).
        objective: validation NLL (nats) or ECE (fraction) at the fitted T.
        objective_at_one: the same objective at T = 1.
    """

    name = "temperature"

    @property
    def n_parameters(self) -> int:
        """1: the temperature."""
        return 1

    def __init__(
        self,
        method: str = TS_METHOD,
        n_bins: int = N_BINS,
        closed: str = BIN_CLOSED,
        *,
        t_min: float = 0.01,
        t_max: float = 100.0,
        tol: float = 1e-10,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        if method not in TS_METHODS:
            raise InputError(f"method must be one of {', '.join(map(repr, TS_METHODS))}; got {method!r}")
        if not (0 < t_min < 1 < t_max < math.inf):
            raise InputError(f"need 0 < t_min < 1 < t_max < inf; got t_min={t_min}, t_max={t_max}")
        self.method = method
        self.n_bins = check_n_bins(n_bins)
        self.closed = check_closed(closed)
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.temperature = 1.0
        self.converged = False
        self.at_bound = False
        self.n_iter = 0
        self.objective = math.nan
        self.objective_at_one = math.nan
        self.grid_values: list[float] | None = None  # ece_grid: validation ECE per PAPER_GRID point

    # -- fitting ------------------------------------------------------------------------------------
    def _fit(self, z: Tensor, y: Tensor) -> None:
        if self.method == "nll":
            self._fit_nll(z, y)
        else:
            self._fit_grid(z, y)

    def _fit_nll(self, z: Tensor, y: Tensor) -> None:
        z = z.double()
        dz = z - z.gather(1, y[:, None])
        scale = 1.0 + float(dz.abs().mean())
        g1, d1, _ = _nll_and_derivatives(dz, 1.0)
        self.objective_at_one = g1
        b_lo, b_hi = 1.0 / self.t_max, 1.0 / self.t_min  # range of b = 1/T
        self.at_bound = False
        self.converged = True
        self.n_iter = 0
        if abs(d1) <= 1e-13 * scale:
            b = 1.0  # flat at T = 1 (e.g. constant logits): keep T = 1
        elif d1 > 0:  # NLL increases with b: optimum at b < 1 (T > 1)
            _, d_end, _ = _nll_and_derivatives(dz, b_lo)
            if d_end >= 0:
                b, self.at_bound = b_lo, True
            else:
                b = self._newton(dz, b_lo, 1.0)
        else:  # optimum at b > 1 (T < 1)
            _, d_end, _ = _nll_and_derivatives(dz, b_hi)
            if d_end <= 0:
                b, self.at_bound = b_hi, True
            else:
                b = self._newton(dz, 1.0, b_hi)
        self.temperature = 1.0 / b
        self.objective = _nll_and_derivatives(dz, b)[0]

    def _newton(self, dz: Tensor, lo: float, hi: float) -> float:
        """Root of g'(b) in (lo, hi) with g'(lo) < 0 < g'(hi): Newton from b = 1 (T = 1), safeguarded by
        the bracket, which is bisected in log-space whenever a Newton step would leave it."""
        self.converged = False
        b = 1.0
        for it in range(1, self.max_iter + 1):
            self.n_iter = it
            _, d, h = _nll_and_derivatives(dz, b)
            if d < 0:
                lo = b
            elif d > 0:
                hi = b
            else:
                self.converged = True
                return b
            step_ok = h > 0 and lo < b - d / h < hi
            b_new = b - d / h if step_ok else math.sqrt(lo * hi)
            if abs(math.log(b_new) - math.log(b)) < self.tol or math.log(hi / lo) < self.tol:
                self.converged = True
                return b_new
            b = b_new
        return b

    def _fit_grid(self, z: Tensor, y: Tensor) -> None:
        eces = self.grid_ece(z, y, PAPER_GRID)
        best = int(torch.argmin(eces))  # first minimum: the paper's loop keeps the smallest such T
        self.grid_values = eces.tolist()
        self.temperature = PAPER_GRID[best]
        self.objective = float(eces[best])
        self.objective_at_one = float(eces[PAPER_GRID.index(1.0)])
        self.converged = True
        self.at_bound = best in (0, len(PAPER_GRID) - 1)
        self.n_iter = len(PAPER_GRID)

    def grid_ece(self, z: Tensor, y: Tensor, temperatures) -> Tensor:
        """Validation ECE of ``softmax(z / t)`` for each ``t`` -> ``[len(temperatures)]`` float64.

        Exactly ``ece(logits=z / t, labels=y, n_bins=self.n_bins)`` for each t (same code path).
        """
        out = []
        for t in temperatures:
            sc = scan_tensor(z / t, y, from_logits=True)
            bins = bin_stats(sc.confidence, sc.correct, self.n_bins, "equal_width", self.closed)
            out.append(bins.calibration_error("l1"))
        return torch.tensor(out, dtype=torch.float64)

    # -- transform / state --------------------------------------------------------------------------
    def _transform(self, z: Tensor) -> Tensor:
        return z / self.temperature

    def fit_seconds(self, n_rows: int, n_classes: int) -> float:
        """Estimated seconds of one fit: the paper's grid makes one pass over the scores per temperature (100);
        the NLL fit about 30 (a few safeguarded Newton steps with first and second derivatives)."""
        passes = len(PAPER_GRID) if self.method == "ece_grid" else 30
        return passes * PASS_SECONDS * n_rows * n_classes

    def _get_state(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_bins": self.n_bins,
            "closed": self.closed,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "temperature": float(self.temperature),
            "converged": bool(self.converged),
            "at_bound": bool(self.at_bound),
            "n_iter": int(self.n_iter),
            "objective": _json_float(self.objective),
            "objective_at_one": _json_float(self.objective_at_one),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.__init__(
            method=state.get("method", TS_METHOD),
            n_bins=state.get("n_bins", N_BINS),
            closed=state.get("closed", BIN_CLOSED),
            t_min=state.get("t_min", 0.01),
            t_max=state.get("t_max", 100.0),
            tol=state.get("tol", 1e-10),
            max_iter=state.get("max_iter", 100),
        )
        t = float(state["temperature"])
        if not (t > 0 and math.isfinite(t)):
            raise InputError(f"temperature must be a positive finite number; got {t}")
        self.temperature = t
        self.converged = bool(state.get("converged", True))
        self.at_bound = bool(state.get("at_bound", False))
        self.n_iter = int(state.get("n_iter", 0))
        self.objective = _from_json_float(state.get("objective"))
        self.objective_at_one = _from_json_float(state.get("objective_at_one"))

    def __repr__(self) -> str:
        return f"TemperatureScaling(method={self.method!r}, temperature={self.temperature:.4g})"
