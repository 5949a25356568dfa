"""Bootstrap confidence intervals for every metric (Efron & Tibshirani 1993, percentile interval).

Resampling is vectorised: the resample indices are drawn as a ``[n_boot, N]`` tensor (in chunks that bound
memory) from a seeded ``torch.Generator``, and the per-sample quantities (confidence, correctness, NLL,
Brier, classwise bin contributions) are computed once from one softmax pass and then gathered per resample.
Binned metrics are binned for all resamples at once (:func:`~focalcal.metrics.binning.bin_sums` with a
batch dimension); classwise-ECE uses a sparse ``[N, K * n_bins]`` matrix of per-sample bin contributions
multiplied by the resample multiplicities. Other callables fall back to a loop over resamples that still
reuses the probabilities (softmax is never redone).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..validation import check_binning, check_closed, check_labels, check_n_bins, check_norm, pick_scores, work_dtype
from . import calibration as C
from .binning import batched_calibration_error
from .kernel import equal_width_edges, equal_width_index, scan_tensor

#: Upper bound on ``resamples x N`` index elements materialised at once (64 MiB of int64).
CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class BootstrapResult:
    """A metric with its bootstrap percentile interval (all in the metric's units: fractions / nats).

    Attributes:
        estimate: the metric on the full data.
        low, high: the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the bootstrap distribution.
        std: bootstrap standard error.
        n_boot, alpha, seed: the settings used.
        samples: ``[n_boot]`` float64 bootstrap replicates.
    """

    estimate: float
    low: float
    high: float
    std: float
    n_boot: int
    alpha: float
    seed: int
    samples: np.ndarray

    def to_dict(self) -> dict[str, float]:
        """JSON-able summary (without the replicates)."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "std": self.std,
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "seed": self.seed,
        }


class _Data:
    """Per-sample quantities shared by all resamples (computed lazily, each at most once)."""

    def __init__(self, scores: Tensor, y: Tensor, from_logits: bool) -> None:
        self.scores, self.y, self.from_logits = scores, y, from_logits
        self.n, self.k = scores.shape
        sc = scan_tensor(scores, y, from_logits=from_logits, need_nll=True, need_brier=True)
        self.conf, self.correct, self.nll, self.brier = sc.confidence, sc.correct, sc.nll, sc.brier
        self._probs: Tensor | None = None
        self._cw: dict[int, tuple[Tensor, Tensor]] = {}

    @property
    def probs(self) -> Tensor:
        if self._probs is None:
            s = self.scores
            self._probs = torch.softmax(s, 1, dtype=work_dtype(s)) if self.from_logits else s.to(work_dtype(s))
        return self._probs

    def classwise_parts(self, n_bins: int, closed: str = "left") -> tuple[Tensor, Tensor]:
        """``(sparse [2 K n, N], probs [N, K])``: rows ``[0, Kn)`` hold ``p_ik`` at (k, bin) for the entries
        outside the first bin; rows ``[Kn, 2Kn)`` hold 1 at (y_i, bin of p_{i y_i})."""
        if (n_bins, closed) not in self._cw:
            p = self.probs
            k, n = self.k, self.n
            edges = equal_width_edges(n_bins, p.dtype, p.device)
            outside = p > edges[1] if closed == "right" else p >= edges[1]
            r, c = outside.nonzero(as_tuple=True)
            v = p[r, c]
            row_hi = c * n_bins + equal_width_index(v, edges, closed)
            py = p.gather(1, self.y[:, None]).squeeze(1)
            row_y = k * n_bins + self.y * n_bins + equal_width_index(py, edges, closed)
            rows = torch.cat([row_hi, row_y])
            cols = torch.cat([r, torch.arange(n, device=p.device)])
            vals = torch.cat([v.double(), torch.ones(n, dtype=torch.float64, device=p.device)])
            mat = torch.sparse_coo_tensor(
                torch.stack([rows, cols]), vals, (2 * k * n_bins, n), check_invariants=False
            ).coalesce()
            self._cw[(n_bins, closed)] = (mat, p)
        return self._cw[(n_bins, closed)]


def _multiplicities(idx: Tensor, n: int) -> Tensor:
    """``[B, N]`` float64: how often each sample occurs in each resample."""
    b = idx.shape[0]
    flat = (idx + torch.arange(b, device=idx.device)[:, None] * n).reshape(-1)
    return torch.bincount(flat, minlength=b * n).view(b, n).double()


def _classwise_batch(d: _Data, idx: Tensor, n_bins: int, closed: str = "left") -> Tensor:
    mat, p = d.classwise_parts(n_bins, closed)
    k = d.k
    w = _multiplicities(idx, d.n)  # [B, N]
    parts = torch.sparse.mm(mat, w.T).T  # [B, 2 K n]
    hi = parts[:, : k * n_bins].reshape(-1, k, n_bins)
    lab = parts[:, k * n_bins :].reshape(-1, k, n_bins)
    col = w @ p.double()  # [B, K] sum of p over each resample
    sum_p = hi.clone()
    sum_p[:, :, 0] += col - hi.sum(2)
    return (lab - sum_p).abs().sum((1, 2)) / (d.n * k)


def _calibration_error_batch(
    d: _Data,
    idx: Tensor,
    n_bins: int = 15,
    binning: str = "equal_width",
    norm: str = "l1",
    debias: bool = False,
    closed: str = "left",
) -> Tensor:
    return batched_calibration_error(d.conf[idx], d.correct[idx], n_bins, binning, norm, debias=debias, closed=closed)


def _ece_batch(d: _Data, idx: Tensor, n_bins: int = 15, norm: str = "l1", closed: str = "left") -> Tensor:
    return batched_calibration_error(d.conf[idx], d.correct[idx], n_bins, "equal_width", norm, closed=closed)


def _adaece_batch(d: _Data, idx: Tensor, n_bins: int = 15, norm: str = "l1") -> Tensor:
    return batched_calibration_error(d.conf[idx], d.correct[idx], n_bins, "equal_mass", norm)


def _mce_batch(d: _Data, idx: Tensor, n_bins: int = 15, binning: str = "equal_width", closed: str = "left") -> Tensor:
    return batched_calibration_error(d.conf[idx], d.correct[idx], n_bins, binning, "max", closed=closed)


_BATCHED: dict[Callable, Callable] = {
    C.ece: _ece_batch,
    C.adaptive_ece: _adaece_batch,
    C.mce: _mce_batch,
    C.calibration_error: _calibration_error_batch,
    C.classwise_ece: lambda d, idx, n_bins=15, closed="left": _classwise_batch(d, idx, n_bins, closed),
    C.nll: lambda d, idx: d.nll[idx].mean(1),
    C.brier_score: lambda d, idx: d.brier[idx].mean(1),
    C.error_rate: lambda d, idx: 1.0 - d.correct[idx].double().mean(1),
    C.accuracy: lambda d, idx: d.correct[idx].double().mean(1),
}
_BY_NAME = {fn.__name__: fn for fn in (*_BATCHED, C.calibration_summary)}


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    if "n_bins" in kwargs:
        kwargs["n_bins"] = check_n_bins(kwargs["n_bins"])
    if "norm" in kwargs:
        check_norm(kwargs["norm"])
    if "binning" in kwargs:
        check_binning(kwargs["binning"])
    if "closed" in kwargs:
        check_closed(kwargs["closed"])


def _result(estimate: float, samples: Tensor, n_boot: int, alpha: float, seed: int) -> BootstrapResult:
    s = samples.detach().cpu().double().numpy()
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(
        estimate=float(estimate),
        low=float(lo),
        high=float(hi),
        std=float(s.std(ddof=1)) if n_boot > 1 else 0.0,
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
        samples=s,
    )


def bootstrap_ci(
    metric_fn: Callable | str,
    *,
    logits=None,
    probs=None,
    labels,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    **metric_kwargs: Any,
) -> BootstrapResult | dict[str, BootstrapResult]:
    """Bootstrap percentile confidence interval of a metric.

    Args:
        metric_fn: a metric of :mod:`focalcal.metrics` (``ece``, ``adaptive_ece``, ``classwise_ece``, ``mce``,
            ``calibration_error``, ``nll``, ``brier_score``, ``error_rate``, ``accuracy``, or
            ``calibration_summary`` for all summary keys at once), its name as a string, or any callable
            with the same keyword interface (``fn(probs=..., labels=..., **metric_kwargs) -> float``; run in
            a loop over resamples, on probabilities computed once).
        logits / probs: ``[N, K]`` scores (exactly one), torch or numpy.
        labels: ``[N]`` integer class indices.
        n_boot: number of resamples (>= 1).
        alpha: two-sided level: the interval is ``[q(alpha/2), q(1-alpha/2)]`` (0.05 -> 95%).
        seed: seed of the ``torch.Generator`` drawing the resample indices (same seed, same result).
        **metric_kwargs: passed to the metric (e.g. ``n_bins=15``, ``norm="l2"``).

    Returns:
        :class:`BootstrapResult`, or ``{key: BootstrapResult}`` for ``calibration_summary`` (every resample
        is shared by all keys).

    Raises:
        ValueError: bad inputs (as the metrics), ``n_boot < 1``, ``alpha`` outside (0, 1), unknown metric name.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> ci = bootstrap_ci("ece", logits=logits, labels=labels, n_bins=2, n_boot=200, seed=0)
    >>> round(ci.estimate, 4), ci.low <= ci.estimate <= ci.high
    (0.0467, True)
    """
    if isinstance(metric_fn, str):
        if metric_fn not in _BY_NAME:
            raise InputError(f"unknown metric {metric_fn!r}; known: {', '.join(sorted(_BY_NAME))}")
        metric_fn = _BY_NAME[metric_fn]
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot must be an integer >= 1; got {n_boot!r}")
    if not (0 < alpha < 1):
        raise InputError(f"alpha must lie in (0, 1), e.g. 0.05 for a 95% interval; got {alpha!r}")
    scores, from_logits = pick_scores(logits, probs)
    y = check_labels(labels, scores.shape[0], scores.shape[1], scores.device)
    kw = dict(metric_kwargs)
    _check_kwargs(kw)
    d = _Data(scores, y, from_logits)
    score_kw = {"logits": scores} if from_logits else {"probs": scores}

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    rows = max(1, CHUNK_ELEMENTS // d.n)

    def draws():
        for s in range(0, n_boot, rows):
            b = min(rows, n_boot - s)
            yield torch.randint(0, d.n, (b, d.n), generator=gen).to(scores.device)

    if metric_fn is C.calibration_summary:
        n_bins, closed = kw.get("n_bins", 15), kw.get("closed", "left")
        fns = {
            "error": lambda idx: _BATCHED[C.error_rate](d, idx),
            "nll": lambda idx: _BATCHED[C.nll](d, idx),
            "ece": lambda idx: _ece_batch(d, idx, n_bins, closed=closed),
            "adaptive_ece": lambda idx: _adaece_batch(d, idx, n_bins),
            "classwise_ece": lambda idx: _classwise_batch(d, idx, n_bins, closed),
            "mce": lambda idx: _mce_batch(d, idx, n_bins, closed=closed),
            "brier": lambda idx: _BATCHED[C.brier_score](d, idx),
        }
        out: dict[str, list[Tensor]] = {key: [] for key in fns}
        for idx in draws():
            for key, f in fns.items():
                out[key].append(f(idx))
        full = C.calibration_summary(**score_kw, labels=y, **kw)
        return {key: _result(full[key], torch.cat(v), n_boot, alpha, seed) for key, v in out.items()}

    if metric_fn in _BATCHED:
        estimate = metric_fn(**score_kw, labels=y, **kw)
        batched = _BATCHED[metric_fn]
        samples = torch.cat([batched(d, idx, **kw) for idx in draws()])
    else:
        p = d.probs
        estimate = metric_fn(probs=p, labels=y, **kw)
        vals = []
        for idx in draws():
            for row in idx:
                vals.append(float(metric_fn(probs=p[row], labels=y[row], **kw)))
        samples = torch.tensor(vals, dtype=torch.float64)
    if not math.isfinite(float(samples.sum())):
        raise InputError("the metric returned non-finite values on some resamples")
    return _result(estimate, samples, n_boot, alpha, seed)
