"""Input checking shared by every metric: one place that turns user input into checked torch tensors.

All checks raise :class:`ValueError` with a message that names the problem and the fix. The checks that
need a pass over the ``[N, K]`` scores (finiteness, row sums, negativity) are done chunk by chunk inside
the scan of :mod:`focalcal.metrics._scan`, on data that is already in cache, so they cost little.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Largest allowed ``|sum_k probs[i, k] - 1|`` when probabilities are given (absolute, per row). Loose
#: enough for float16/bfloat16 softmax outputs, tight enough to catch logits passed as ``probs=``.
PROB_SUM_ATOL = 1e-3

_BINNINGS = ("equal_width", "equal_mass")
_NORMS = ("l1", "l2", "max")


def as_tensor(x: Any, name: str) -> Tensor:
    """``x`` (torch tensor, numpy array or nested list) as a torch tensor, sharing memory where possible."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ValueError(f"{name} is a numpy array of dtype object; pass a numeric array")
        if not x.flags.writeable:
            x = x.copy()
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a torch tensor or numpy array; got {type(x).__name__}") from exc


def check_n_bins(n_bins: Any) -> int:
    """``n_bins`` as an ``int >= 1``; raises ``ValueError`` otherwise."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r} ({type(n_bins).__name__})")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}. Use e.g. n_bins=15 (the paper's setting)")
    return int(n_bins)


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_binning(binning: str) -> str:
    return check_choice(binning, "binning", _BINNINGS)


def check_norm(norm: str) -> str:
    return check_choice(norm, "norm", _NORMS)


def pick_scores(logits: Any, probs: Any) -> tuple[Tensor, bool]:
    """Return ``(scores, from_logits)`` after checking that exactly one of ``logits``/``probs`` was given.

    Never guesses from the values whether they are logits or probabilities.
    """
    if logits is None and probs is None:
        raise ValueError("pass exactly one of logits= or probs= (got neither)")
    if logits is not None and probs is not None:
        raise ValueError("pass exactly one of logits= or probs= (got both); drop one of them")
    from_logits = logits is not None
    name = "logits" if from_logits else "probs"
    scores = as_tensor(logits if from_logits else probs, name)
    if scores.ndim != 2:
        raise ValueError(
            f"{name} must have shape [N, K] (samples x classes); got shape {tuple(scores.shape)}. "
            "For a binary problem pass two columns, e.g. probs=[1 - p, p]"
        )
    if not scores.is_floating_point():
        raise ValueError(f"{name} must be a floating-point array; got dtype {scores.dtype}. Cast it with .float()")
    n, k = scores.shape
    if n == 0:
        raise ValueError(f"{name} is empty (0 samples); metrics need at least one sample")
    if k < 2:
        raise ValueError(f"{name} has {k} column(s); need K >= 2 classes (binary: pass [1 - p, p])")
    return scores, from_logits


def check_labels(labels: Any, n: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """``labels`` as an int64 tensor of shape ``[n]`` with values in ``[0, num_classes)``."""
    y = as_tensor(labels, "labels")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must hold integer class indices; got dtype {y.dtype}. Cast them with .long()")
    if y.ndim != 1:
        raise ValueError(f"labels must have shape [N]; got shape {tuple(y.shape)} (pass class indices, not one-hot)")
    if y.shape[0] != n:
        raise ValueError(f"shape mismatch: {n} rows of scores but {y.shape[0]} labels; they must match")
    if device is not None and y.device != device:
        y = y.to(device)
    y = y.long()
    if n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"labels must lie in [0, {num_classes}) (K = {num_classes} columns of scores); found {bad}. "
                "Check that the scores have one column per class"
            )
    return y


def work_dtype(scores: Tensor) -> torch.dtype:
    """Floating dtype in which probabilities are computed: float64 stays float64, everything else float32."""
    return torch.float64 if scores.dtype == torch.float64 else torch.float32


def raise_nonfinite(scores: Tensor, name: str) -> None:
    """Raise the ``ValueError`` for non-finite scores (called once a cheap check has failed)."""
    bad = ~torch.isfinite(scores)
    n_bad = int(bad.sum())
    if n_bad == 0:  # the cheap check failed only because a float sum overflowed
        return
    n_nan = int(torch.isnan(scores).sum())
    raise ValueError(
        f"{name} contain {n_bad} non-finite value(s) ({n_nan} NaN, {n_bad - n_nan} inf); "
        "metrics need finite inputs: remove or fix those rows (e.g. check for a diverged model)"
    )
