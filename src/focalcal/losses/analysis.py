"""The paper's gradient analysis of focal loss: ``g(p, gamma)`` and the thresholds where it equals 1.

For a last linear layer ``logits = W x``, both CE and focal loss depend on ``W`` only through the true-class
probability ``p``, so ``dL_focal/dW = g(p, gamma) * dL_CE/dW`` with (Mukhoti et al. 2020, Sec. 4, Fig. 4)::

    g(p, gamma) = (1 - p) ** gamma - gamma * p * (1 - p) ** (gamma - 1) * log p

``g < 1`` means focal loss pushes less than CE (confident samples), ``g > 1`` more (hard samples). FLSD-53
takes gamma = 5 below p = 0.2 because ``g(0.2, gamma) = 1`` at gamma = 4.85 (and gamma = 3 because
``g(0.25, 3.07) = 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import lambertw, xlogy
from torch import Tensor

from ..errors import InputError

__all__ = ["FIG4_GAMMAS", "g_factor", "g_table", "gamma_threshold", "p_threshold"]


def g_factor(p, gamma):
    """``g(p, gamma) = (1 - p)^gamma - gamma * p * (1 - p)^(gamma - 1) * log p``, elementwise.

    Args:
        p: probabilities in [0, 1]; a float, numpy array or torch tensor.
        gamma: focusing parameter(s) >= 0; float, array or tensor broadcastable with ``p``.

    Returns:
        Same kind as ``p`` (torch tensor in -> tensor out, with autograd; else numpy float64 array or float).
        Limits are used at the ends: ``g(0, gamma) = 1``; ``g(1, gamma) = 0`` for gamma > 0 and 1 for
        gamma = 0.

    Raises:
        ValueError: ``p`` outside [0, 1] or ``gamma < 0`` (checked eagerly, also for tensors).

    >>> round(float(g_factor(0.2, 4.85)), 3)  # the paper's threshold: focal and CE push equally
    1.0
    """
    if isinstance(p, Tensor) or isinstance(gamma, Tensor):
        pt = torch.as_tensor(p)
        pt = pt if pt.is_floating_point() else pt.double()
        gt = torch.as_tensor(gamma, dtype=pt.dtype, device=pt.device)
        if bool(((pt < 0) | (pt > 1)).any()) or bool((gt < 0).any()):
            raise InputError("g_factor needs 0 <= p <= 1 and gamma >= 0")
        q = 1.0 - pt
        q_safe = torch.where(q > 0, q, torch.ones_like(q))
        inner = q.pow(gt) - gt * torch.xlogy(pt, pt) * q_safe.pow(gt - 1.0)
        at_one = torch.where(gt == 0, torch.ones_like(inner), torch.zeros_like(inner))
        return torch.where(q > 0, inner, at_one)
    pa = np.asarray(p, dtype=np.float64)
    ga = np.asarray(gamma, dtype=np.float64)
    if np.any((pa < 0) | (pa > 1)) or np.any(ga < 0):
        raise InputError("g_factor needs 0 <= p <= 1 and gamma >= 0")
    q = 1.0 - pa
    with np.errstate(divide="ignore", invalid="ignore"):
        q_safe = np.where(q > 0, q, 1.0)
        inner = q**ga - ga * xlogy(pa, pa) * q_safe ** (ga - 1.0)
    out = np.where(q > 0, inner, np.where(ga == 0, 1.0, 0.0))
    return float(out) if out.ndim == 0 else out


def p_threshold(gamma: float) -> float:
    """The probability ``p`` in (0, 1) where ``g(p, gamma) = 1`` (``gamma > 0``), by Brent's method.

    ``g(0, gamma) = 1`` trivially; for gamma > 0 there is exactly one further crossing in (0, 1): ``g > 1``
    below it (focal loss pushes harder than CE), ``g < 1`` above. E.g. ``p_threshold(1) = 1/e``,
    ``p_threshold(3) = 0.2526``, ``p_threshold(5) = 0.1968``.

    Raises:
        ValueError: ``gamma <= 0`` or not finite (no crossing), or if the root is not bracketed.

    >>> round(p_threshold(3.0), 4)  # above this p, FL-3 pushes the last layer less than CE
    0.2526
    """
    g = float(gamma)
    if not 0.0 < g < math.inf:
        raise InputError(f"p_threshold needs a finite gamma > 0, got {gamma!r}")
    lo, hi = 1e-6 / max(g, 1.0), 1.0 - 1e-12

    def f(p: float) -> float:
        return g_factor(p, g) - 1.0

    if not (f(lo) > 0.0 > f(hi)):
        raise InputError(f"could not bracket the root of g(p, {g}) = 1 in ({lo}, {hi})")
    return float(brentq(f, lo, hi, xtol=1e-14, rtol=1e-12))


def gamma_threshold(p: float) -> float:
    """The ``gamma > 0`` where ``g(p, gamma) = 1`` at this ``p``, in closed form with Lambert W.

    Writing ``g = (1 - p)^gamma (1 + c gamma)`` with ``c = -p log p / (1 - p)`` and ``L = log(1 - p)``, the
    non-trivial root (``gamma = 0`` is the trivial one) is ``gamma = W_{-1}(z) / L - 1 / c`` with
    ``z = (L / c) e^(L / c)``, W_{-1} the lower branch. ``gamma_threshold(0.2) = 4.8506``,
    ``gamma_threshold(0.25) = 3.0702``.

    Raises:
        ValueError: ``p`` not in (0, 0.5). For ``p >= 0.5``, ``g(p, gamma) < 1`` for every ``gamma > 0``.

    >>> round(gamma_threshold(0.2), 4), round(gamma_threshold(0.25), 4)  # FLSD-53's 5 and 3 come from these
    (4.8506, 3.0702)
    """
    pf = float(p)
    if not 0.0 < pf < 0.5:
        raise InputError(
            f"gamma_threshold needs 0 < p < 0.5, got {p!r} (for p >= 0.5, g(p, gamma) < 1 for all gamma > 0)"
        )
    big_l = math.log1p(-pf)
    c = -pf * math.log(pf) / (1.0 - pf)
    a = big_l / c  # in (-1, 0) for p < 0.5
    w = lambertw(a * math.exp(a), k=-1)
    return float(np.real(w)) / big_l - 1.0 / c


#: The gammas of the paper's Fig. 4.
FIG4_GAMMAS = (1.0, 2.0, 3.0, 4.0, 5.0)


def g_table(
    gammas: Sequence[float] = FIG4_GAMMAS, points: int = 501
) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, float], list[dict[str, float | None]]]:
    """The numbers of the paper's Fig. 4: ``g(p, gamma)`` on ``points`` evenly spaced values of p in [0, 1].

    Returns:
        ``(p, values, thresholds, rows)``: ``p`` float64 ``[points]``; ``values`` gamma -> ``g(p, gamma)``
        float64 ``[points]``; ``thresholds`` gamma -> :func:`p_threshold` (gammas > 0 only: ``g(p, 0) = 1 - p``
        never crosses 1); ``rows`` a tidy table, one row per gamma and p: ``gamma, p, g, p_threshold``.

    Raises:
        InputError: no gamma, a gamma that is negative or not finite, or ``points < 2``.
    """
    if not gammas:
        raise InputError("give at least one gamma")
    if points < 2:
        raise InputError(f"points (values of p) must be >= 2, got {points}")
    if any(g < 0 or not math.isfinite(g) for g in gammas):
        raise InputError(f"gammas must be finite and >= 0, got {list(gammas)}")
    p = np.linspace(0.0, 1.0, points)
    values = {float(g): np.asarray(g_factor(p, float(g))) for g in gammas}
    thresholds = {float(g): p_threshold(float(g)) for g in gammas if g > 0}
    rows = [
        {"gamma": g, "p": float(pi), "g": float(gi), "p_threshold": thresholds.get(g)}
        for g, v in values.items()
        for pi, gi in zip(p, v)
    ]
    return p, values, thresholds, rows
