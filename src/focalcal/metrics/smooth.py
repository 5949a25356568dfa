"""Smooth ECE (Blasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel Smoothing",
ICLR 2024 / arXiv 2309.12236), for the top-label confidence.

Definition. With confidences ``f_i``, correctness ``y_i`` and residuals ``r_i = y_i - f_i``, and the
Gaussian kernel of bandwidth ``sigma`` reflected at 0 and 1,
``K(t, f) = sum_m phi_sigma(t - f - 2m) + phi_sigma(t + f - 2m)`` (so ``int_0^1 K(t, f) dt = 1``)::

    smECE_sigma = int_0^1 | (1/N) sum_i K(t, f_i) r_i | dt

(the integral of |smoothed residual| times the smoothed density). ``smECE_sigma`` does not increase with
sigma, and the metric is taken at the fixed point ``sigma* = smECE_sigma*`` (found by bisection on
[1e-4, 1]; if ``smECE_1 >= 1`` then ``sigma* = 1``). Example: a constant confidence c that is always right
gives ``r_i = 1 - c`` and smECE = 1 - c for every sigma.

Computation (our own): the residual mass is put on a uniform grid of ``G >= 8 / sigma`` nodes by linear
binning, reflected onto a circle of circumference 2, convolved with the sampled wrapped Gaussian by FFT and
integrated with the trapezoid rule: O(N + G log G) per bandwidth. ``exact=True`` evaluates the kernel sums
directly at the grid nodes instead (O(N G); for checking).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError
from .kernel import scan

SIGMA_MIN = 1e-4


def _grid_size(sigma: float) -> int:
    return int(min(max(1025, math.ceil(8.0 / sigma) + 1), (1 << 17) + 1))


def _wrapped_kernel(p: int, delta: float, sigma: float) -> Tensor:
    """Samples ``phi_wrap(q * delta)`` on a circle of ``p`` nodes (circumference 2), normalised so that
    ``delta * sum = 1``."""
    q = torch.arange(p, dtype=torch.float64)
    d = torch.minimum(q, p - q) * delta
    m = torch.arange(-math.ceil(3 * sigma) - 1, math.ceil(3 * sigma) + 2, dtype=torch.float64)
    x = d[:, None] - 2 * m[None, :]
    c = torch.exp(-0.5 * (x / sigma) ** 2).sum(1)
    return c / (c.sum() * delta)


def _trapezoid_abs(h: Tensor, delta: float) -> float:
    a = h.abs()
    return float(delta * (a.sum() - 0.5 * (a[0] + a[-1])))


def smooth_ece_at(f: Tensor, r: Tensor, sigma: float, *, exact: bool = False) -> float:
    """``smECE_sigma`` of confidences ``f [N]`` in [0, 1] and residuals ``r [N]`` (float64, CPU)."""
    n = f.numel()
    g = _grid_size(sigma)
    delta = 1.0 / (g - 1)
    if exact:
        t = torch.linspace(0, 1, g, dtype=torch.float64)
        m = torch.arange(-math.ceil(3 * sigma) - 1, math.ceil(3 * sigma) + 2, dtype=torch.float64)
        h = torch.zeros(g, dtype=torch.float64)
        for s in range(0, n, 256):
            fc, rc = f[s : s + 256], r[s : s + 256]
            img = torch.cat([fc[:, None] + 2 * m, -fc[:, None] + 2 * m], 1)  # [B, images]
            k = torch.exp(-0.5 * ((t[:, None, None] - img[None]) / sigma) ** 2).sum(2)  # [G, B]
            h += k @ rc
        h /= n * sigma * math.sqrt(2 * math.pi)
        return _trapezoid_abs(h, delta)
    pos = f * (g - 1)
    i0 = pos.floor().clamp(0, g - 2).long()
    frac = pos - i0
    mass = torch.zeros(g, dtype=torch.float64)
    mass.index_add_(0, i0, (1 - frac) * r)
    mass.index_add_(0, i0 + 1, frac * r)
    # reflect onto the circle [0, 2): node j and its mirror 2 - j; the end nodes are their own mirrors
    ext = torch.cat([mass, mass.flip(0)[1:-1]])
    ext[0] *= 2
    ext[g - 1] *= 2
    p = ext.numel()
    ker = _wrapped_kernel(p, delta, sigma)
    h_ext = torch.fft.irfft(torch.fft.rfft(ext) * torch.fft.rfft(ker), n=p)
    # on [0, 1], h_ext(t) = sum_i r_i (phi_wrap(t - f_i) + phi_wrap(t + f_i)) = sum_i r_i K(t, f_i)
    h = h_ext[:g] / n
    return _trapezoid_abs(h, delta)


def smooth_ece_from_confidences(
    f: Tensor, y: Tensor, *, sigma: float | None = None, tol: float = 1e-5, exact: bool = False
) -> tuple[float, float]:
    """``(smECE, sigma)`` of top-label confidences ``f [N]`` and correctness ``y [N]`` (0/1)."""
    f = f.detach().double().cpu().clamp(0, 1)
    r = y.detach().double().cpu() - f
    if sigma is not None:
        if not (sigma > 0):
            raise InputError(f"sigma must be > 0; got {sigma!r}")
        return smooth_ece_at(f, r, float(sigma), exact=exact), float(sigma)

    def gap(s: float) -> float:
        return smooth_ece_at(f, r, s, exact=exact) - s

    lo, hi = SIGMA_MIN, 1.0
    if gap(hi) >= 0:
        return smooth_ece_at(f, r, hi, exact=exact), hi
    # gap is non-increasing: bisect; if it never turns positive the interval closes on SIGMA_MIN
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
    s = 0.5 * (lo + hi)
    return smooth_ece_at(f, r, s, exact=exact), s


def smooth_ece(
    *,
    logits=None,
    probs=None,
    labels,
    sigma: float | None = None,
    return_sigma: bool = False,
    exact: bool = False,
) -> float | tuple[float, float]:
    """Smooth ECE of the top-label confidence (Blasiok & Nakkiran 2023), a fraction in [0, 1].

    Args:
        logits / probs: ``[N, K]`` scores (exactly one); labels: ``[N]`` int in ``[0, K)``.
        sigma: fixed kernel bandwidth; default None picks the paper's fixed point ``sigma = smECE_sigma``.
        return_sigma: also return the bandwidth used.
        exact: evaluate kernel sums directly (slow, O(N / sigma)) instead of by linear binning + FFT.

    Returns:
        ``smECE`` (float), or ``(smECE, sigma)`` when ``return_sigma``.

    Raises:
        ValueError: as the other metrics; ``sigma <= 0``.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> round(smooth_ece(logits=logits, labels=labels), 4)
    0.1865
    """
    sc = scan(logits=logits, probs=probs, labels=labels)
    val, s = smooth_ece_from_confidences(sc.confidence, sc.correct, sigma=sigma, exact=exact)
    return (val, s) if return_sigma else val
