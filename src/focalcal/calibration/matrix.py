"""Affine calibration maps fitted by minimising validation NLL: vector scaling, matrix scaling (Guo et al.,
ICML 2017) and Dirichlet calibration with ODIR regularisation (Kull et al., NeurIPS 2019).

All fit ``transform(x) = x W^T + b`` in float64 with L-BFGS (strong-Wolfe line search) on::

    mean_i NLL(softmax(x_i W^T + b), y_i)
        + reg_lambda / (K (K - 1)) * sum_{i != j} W_ij^2      (off-diagonal penalty, "OD")
        + reg_mu / K * sum_j b_j^2                             (intercept penalty, "IR")

where ``x`` is the logits (vector / matrix scaling) or the log-softmax of the logits (Dirichlet
calibration: ``softmax(W log p + b)`` is the Dirichlet calibration map of Kull et al.). Vector scaling has a
diagonal W. The start is the identity map (W = I, b = 0), i.e. the uncalibrated model. Kull et al. choose
``reg_lambda`` and ``reg_mu`` by cross-validation; the defaults here are mild fixed values.
The outputs are calibrated logits (the softmax of them is the calibrated distribution).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from .base import PASS_SECONDS, Calibrator, to_list


class _AffineCalibrator(Calibrator):
    """Common fitting code; subclasses choose the features and the shape of W."""

    diagonal = False
    on_log_probs = False

    def __init__(self, reg_lambda: float = 0.0, reg_mu: float = 0.0, max_iter: int = 300, tol: float = 1e-6) -> None:
        super().__init__()
        if reg_lambda < 0 or reg_mu < 0:
            raise InputError(f"reg_lambda and reg_mu must be >= 0; got {reg_lambda}, {reg_mu}")
        if int(max_iter) < 1:
            raise InputError(f"max_iter must be >= 1; got {max_iter}")
        self.reg_lambda = float(reg_lambda)
        self.reg_mu = float(reg_mu)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.weight: Tensor | None = None  # [K] (vector) or [K, K], float64, CPU
        self.bias: Tensor | None = None  # [K]
        self.converged = False
        self.n_iter = 0
        self.objective = math.nan

    @property
    def n_parameters(self) -> int | None:
        """``K^2 + K`` (matrix, Dirichlet) or ``2 K`` (vector): the weights and the bias; None before fitting."""
        if self.weight is None or self.bias is None:
            return None
        return int(self.weight.numel() + self.bias.numel())

    def _features(self, z: Tensor) -> Tensor:
        z = z.double()
        return torch.log_softmax(z, dim=1) if self.on_log_probs else z

    def _apply(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return x * w + b if self.diagonal else x @ w.T + b

    def _penalty(self, w: Tensor, b: Tensor, k: int) -> Tensor:
        pen = self.reg_mu / k * b.square().sum()
        if not self.diagonal and self.reg_lambda > 0:
            off = w.square().sum() - torch.diagonal(w).square().sum()
            pen = pen + self.reg_lambda / (k * (k - 1)) * off
        return pen

    def _fit(self, z: Tensor, y: Tensor) -> None:
        x = self._features(z)
        k = x.shape[1]
        dev = x.device
        w = (
            torch.ones(k, dtype=torch.float64, device=dev)
            if self.diagonal
            else torch.eye(k, dtype=torch.float64, device=dev)
        ).requires_grad_(True)
        b = torch.zeros(k, dtype=torch.float64, device=dev, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b],
            lr=1.0,
            max_iter=self.max_iter,
            tolerance_grad=self.tol,
            tolerance_change=1e-10,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def objective() -> Tensor:
            out = self._apply(x, w, b)
            return torch.nn.functional.cross_entropy(out, y) + self._penalty(w, b, k)

        def closure() -> Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
            loss = closure()
        grad = max(float(w.grad.abs().max()), float(b.grad.abs().max()))
        state = opt.state[opt._params[0]]
        self.n_iter = int(state.get("n_iter", 0))
        # converged: gradient small, or L-BFGS stopped on its own (no further progress) before the cap
        self.converged = grad <= 10 * self.tol or self.n_iter < self.max_iter
        self.objective = float(loss.detach())
        self.weight = w.detach().cpu()
        self.bias = b.detach().cpu()

    def _transform(self, z: Tensor) -> Tensor:
        x = self._features(z)
        out = self._apply(x, self.weight.to(x.device), self.bias.to(x.device))
        return out.to(z.dtype)

    def fit_seconds(self, n_rows: int, n_classes: int) -> float:
        """Estimated seconds of one fit at the iteration cap (``max_iter`` L-BFGS iterations; vector scaling on
        many classes and few rows reaches it): each iteration about 4 passes over the scores, plus the
        ``[N, K] x [K, K]`` products of a full matrix (about 1 ns per multiply-add)."""
        per_iter = 4 * PASS_SECONDS * n_rows * n_classes
        if not self.diagonal:
            per_iter += 1e-9 * n_rows * n_classes * n_classes
        return self.max_iter * per_iter

    def _get_state(self) -> dict[str, Any]:
        return {
            "reg_lambda": self.reg_lambda,
            "reg_mu": self.reg_mu,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "weight": to_list(self.weight) if self.weight is not None else None,
            "bias": to_list(self.bias) if self.bias is not None else None,
            "converged": bool(self.converged),
            "n_iter": int(self.n_iter),
            "objective": None if math.isnan(self.objective) else self.objective,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        keys = ("reg_lambda", "reg_mu", "max_iter", "tol")
        type(self).__init__(self, **{key: state[key] for key in keys if key in state})
        self.weight = torch.tensor(state["weight"], dtype=torch.float64)
        self.bias = torch.tensor(state["bias"], dtype=torch.float64)
        self.converged = bool(state.get("converged", True))
        self.n_iter = int(state.get("n_iter", 0))
        self.objective = math.nan if state.get("objective") is None else float(state["objective"])


class VectorScaling(_AffineCalibrator):
    """Vector scaling (Guo et al. 2017): ``logits * w + b`` with ``w, b`` in R^K.

    Args:
        reg_mu: intercept penalty ``reg_mu / K * ||b||^2`` (default 0).
        max_iter, tol: L-BFGS iteration cap and gradient tolerance (max-abs).
    """

    name = "vector"
    diagonal = True

    def __init__(self, reg_mu: float = 0.0, max_iter: int = 300, tol: float = 1e-6) -> None:
        super().__init__(reg_lambda=0.0, reg_mu=reg_mu, max_iter=max_iter, tol=tol)

    def _set_state(self, state: dict[str, Any]) -> None:
        state = {key: v for key, v in state.items() if key != "reg_lambda"}
        super()._set_state(state)


class MatrixScaling(_AffineCalibrator):
    """Matrix scaling (Guo et al. 2017): ``logits W^T + b`` with a full ``K x K`` matrix.

    Without regularisation it overfits for many classes; ``reg_lambda``/``reg_mu`` > 0 give Kull et al.'s
    "MS-ODIR" (off-diagonal and intercept regularisation).
    """

    name = "matrix"


class DirichletCalibration(_AffineCalibrator):
    """Dirichlet calibration with ODIR (Kull et al., NeurIPS 2019): ``softmax(W log p + b)``.

    ``transform`` returns ``log_softmax(logits) W^T + b`` (calibrated logits).

    Args:
        reg_lambda: off-diagonal penalty weight (default 1e-3).
        reg_mu: intercept penalty weight (default 1e-3).
        max_iter, tol: L-BFGS iteration cap and gradient tolerance.
    """

    name = "dirichlet"
    on_log_probs = True

    def __init__(self, reg_lambda: float = 1e-3, reg_mu: float = 1e-3, max_iter: int = 300, tol: float = 1e-6):
        super().__init__(reg_lambda=reg_lambda, reg_mu=reg_mu, max_iter=max_iter, tol=tol)
