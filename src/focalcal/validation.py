"""Argument checks shared by metrics, calibrators, losses and OOD scores: one place, one set of rules.

Every check raises :class:`~focalcal.errors.InputError` (a ``ValueError``) whose message names the problem
and the fix. The rules, the same everywhere:

- scores (``logits`` or ``probs``) are ``[N, K]`` floating-point arrays with ``N >= 1`` and ``K >= 2``;
  torch tensors (any device) and numpy arrays are accepted; integer arrays are refused (cast them);
- ``logits`` are finite (``allow_neg_inf=True`` lets a row mask classes with ``-inf``, as OOD scores
  allow, as long as one entry per row is finite);
- ``probs`` are non-negative with rows summing to 1 within :data:`PROB_SUM_ATOL`;
- ``labels`` are ``[N]`` integer class indices in ``[0, K)``.

The checks that need a pass over the ``[N, K]`` scores (finiteness, row sums, negativity) are done inside
the metrics' single scan (:mod:`focalcal.metrics.kernel`), on data already in cache; :func:`check_logits`
does them directly for the other callers.

>>> import torch
>>> check_labels(torch.tensor([0, 2]), 2, 3).tolist()
[0, 2]
>>> check_labels(torch.tensor([0, 3]), 2, 3)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
focalcal.errors.InputError: labels must lie in [0, 3) (K = 3 columns of scores); found 3. ...
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .defaults import BIN_CLOSED_CHOICES, N_BINS, TS_METHODS
from .errors import InputError

#: Largest allowed ``|sum_k probs[i, k] - 1|`` when probabilities are given (absolute, per row). Loose
#: enough for float16/bfloat16 softmax outputs, tight enough to catch logits passed as ``probs=``.
PROB_SUM_ATOL = 1e-3

BINNINGS = ("equal_width", "equal_mass")
NORMS = ("l1", "l2", "max")


def as_tensor(x: Any, name: str) -> Tensor:
    """``x`` (torch tensor, numpy array or nested list) as a torch tensor, sharing memory where possible."""
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError(f"{name} is a numpy array of dtype object; pass a numeric array")
        if not x.flags.writeable:
            x = x.copy()
        return torch.from_numpy(np.ascontiguousarray(x))
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a torch tensor or numpy array; got {type(x).__name__}") from exc


def check_n_bins(n_bins: Any) -> int:
    """``n_bins`` as an ``int >= 1``.

    Raises:
        InputError: :func:`n_bins_problem`'s one line.
    """
    problem = n_bins_problem(n_bins)
    if problem:
        raise InputError(problem)
    return int(n_bins)


#: The rule every ``n_bins`` setting of a run or a command follows, as its messages state it.
N_BINS_RULE = f"must be >= 1 (a whole number; the paper uses {N_BINS})"


def n_bins_problem(n_bins: Any) -> str | None:
    """What is wrong with ``n_bins``, in the one wording every check of it uses (metrics, calibrators, a run's
    settings, ``--n-bins``); ``None`` when it is a whole number >= 1 (``bool`` is not).

    >>> n_bins_problem(0)
    'n_bins must be >= 1 (a whole number; the paper uses 15); got 0'
    >>> n_bins_problem(15) is None
    True
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        return f"n_bins {N_BINS_RULE}; got {n_bins!r}"
    return None


def eval_settings_problems(*, n_bins: Any, bin_closed: Any, ts_method: Any, eval_batch_size: Any = None) -> list[str]:
    """What is wrong with a run's evaluation settings, one phrase per problem (``[]``: nothing).

    ``n_bins``: a whole number >= 1; ``bin_closed``: one of :data:`focalcal.defaults.BIN_CLOSED_CHOICES`;
    ``ts_method``: one of :data:`focalcal.defaults.TS_METHODS`; ``eval_batch_size``: a whole number >= 1, or
    ``None`` (the device's default). The one check behind :class:`~focalcal.engine.TrainConfig` and
    :func:`focalcal.eval_settings.resolve_settings`.

    >>> eval_settings_problems(n_bins=0, bin_closed="left", ts_method="nll")
    ['n_bins must be >= 1 (a whole number; the paper uses 15); got 0']
    """
    out = [problem] if (problem := n_bins_problem(n_bins)) else []
    if bin_closed not in BIN_CLOSED_CHOICES:
        out.append(f"bin_closed must be one of {', '.join(BIN_CLOSED_CHOICES)} (got {bin_closed!r})")
    if ts_method not in TS_METHODS:
        out.append(f"ts_method must be one of {', '.join(TS_METHODS)} (got {ts_method!r})")
    if eval_batch_size is not None and (
        isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, (int, np.integer)) or eval_batch_size < 1
    ):
        out.append(f"eval_batch_size must be >= 1, or null for the device's default (got {eval_batch_size!r})")
    return out


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_binning(binning: str) -> str:
    return check_choice(binning, "binning", BINNINGS)


def check_norm(norm: str) -> str:
    return check_choice(norm, "norm", NORMS)


def check_closed(closed: str) -> str:
    return check_choice(closed, "closed", BIN_CLOSED_CHOICES)


def check_num_classes(num_classes: Any, name: str = "num_classes") -> int:
    """``num_classes`` as an ``int >= 2``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise InputError(f"{name} must be an integer >= 2; got {num_classes!r}")
    return int(num_classes)


def check_scores(x: Any, name: str) -> Tensor:
    """``x`` as a floating-point ``[N, K]`` tensor with ``N >= 1`` and ``K >= 2`` (values not checked)."""
    scores = as_tensor(x, name)
    if scores.ndim != 2:
        raise InputError(
            f"{name} must have shape [N, K] (samples x classes); got shape {tuple(scores.shape)}. "
            "For a binary problem pass two columns, e.g. probs=[1 - p, p]"
        )
    if not scores.is_floating_point():
        raise InputError(f"{name} must be a floating-point array; got dtype {scores.dtype}. Cast it with .float()")
    n, k = scores.shape
    if n == 0:
        raise InputError(f"{name} is empty (0 samples); at least one sample is needed")
    if k < 2:
        raise InputError(f"{name} has {k} column(s); need K >= 2 classes (binary: pass [1 - p, p])")
    return scores


def pick_scores(logits: Any, probs: Any) -> tuple[Tensor, bool]:
    """``(scores, from_logits)`` after checking that exactly one of ``logits``/``probs`` was given.

    Never guesses from the values whether they are logits or probabilities.
    """
    if logits is None and probs is None:
        raise InputError("pass exactly one of logits= or probs= (got neither)")
    if logits is not None and probs is not None:
        raise InputError("pass exactly one of logits= or probs= (got both); drop one of them")
    from_logits = logits is not None
    return check_scores(logits if from_logits else probs, "logits" if from_logits else "probs"), from_logits


def check_logits(
    logits: Any, name: str = "logits", num_classes: int | None = None, *, allow_neg_inf: bool = False
) -> Tensor:
    """``logits`` as a checked floating ``[N, K]`` tensor whose values are finite.

    Args:
        num_classes: when given, the required K (e.g. what a calibrator was fitted on).
        allow_neg_inf: accept ``-inf`` entries (masked classes) as long as each row has a finite entry.
    """
    z = check_scores(logits, name)
    if num_classes is not None and z.shape[1] != num_classes:
        raise InputError(f"{name} has {z.shape[1]} classes but {num_classes} are expected")
    if allow_neg_inf:
        if bool(torch.isnan(z).any()) or bool(torch.isposinf(z).any()):
            raise InputError(f"{name} contain NaN or +inf; remove or fix those rows (e.g. a diverged model)")
        if bool(torch.isneginf(z).all(dim=1).any()):
            raise InputError(f"a row of {name} is entirely -inf; at least one class needs a finite value")
    elif not bool(torch.isfinite(z).all()):
        raise_nonfinite(z, name)
    return z


def check_labels(labels: Any, n: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """``labels`` as an int64 tensor of shape ``[n]`` with values in ``[0, num_classes)``."""
    y = as_tensor(labels, "labels")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise InputError(f"labels must hold integer class indices; got dtype {y.dtype}. Cast them with .long()")
    if y.ndim != 1:
        raise InputError(f"labels must have shape [N]; got shape {tuple(y.shape)} (pass class indices, not one-hot)")
    if y.shape[0] != n:
        raise InputError(f"shape mismatch: {n} rows of scores but {y.shape[0]} labels; they must match")
    if device is not None and y.device != device:
        y = y.to(device)
    y = y.long()
    if n:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise InputError(
                f"labels must lie in [0, {num_classes}) (K = {num_classes} columns of scores); found {bad}. "
                "Check that the scores have one column per class"
            )
    return y


def check_loss_inputs(logits: Any, labels: Any, num_classes: int) -> None:
    """Shape/dtype checks of a loss's inputs, without reading values (a training step must not sync):
    ``logits`` a floating tensor ``[N, num_classes]``, ``labels`` an integer tensor ``[N]`` on the same device."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise InputError("logits must be a floating-point tensor of shape [N, K]")
    if logits.dim() != 2:
        raise InputError(f"logits must have shape [N, K], got {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise InputError(f"logits have {logits.shape[1]} classes but the loss was built for num_classes={num_classes}")
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        raise InputError("labels must be an integer tensor of shape [N] (class indices)")
    if labels.dtype == torch.bool:
        raise InputError("labels must be an integer tensor of class indices, got a bool tensor")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise InputError(f"labels must have shape [N] = [{logits.shape[0]}], got {tuple(labels.shape)}")
    if labels.device != logits.device:
        raise InputError(f"labels are on {labels.device} but logits on {logits.device}")


def check_fit_inputs(logits: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """Checked ``(logits [N, K] float, labels [N] int64)`` on the logits' device (calibrator fitting)."""
    z = check_logits(logits)
    return z, check_labels(labels, z.shape[0], z.shape[1], z.device)


def work_dtype(scores: Tensor) -> torch.dtype:
    """Floating dtype in which probabilities are computed: float64 stays float64, everything else float32."""
    return torch.float64 if scores.dtype == torch.float64 else torch.float32


def raise_nonfinite(scores: Tensor, name: str) -> None:
    """Raise the error for non-finite scores (called once a cheap check has failed; returns if all finite)."""
    bad = ~torch.isfinite(scores)
    n_bad = int(bad.sum())
    if n_bad == 0:  # the cheap check failed only because a float sum overflowed
        return
    n_nan = int(torch.isnan(scores).sum())
    raise InputError(
        f"{name} contain {n_bad} non-finite value(s) ({n_nan} NaN, {n_bad - n_nan} inf); "
        "remove or fix those rows (e.g. check for a diverged model)"
    )


def check_probs_values(max_row_error: float, minimum: float) -> None:
    """Raise for un-normalised or negative probabilities, given the scan's worst row-sum error and minimum."""
    if max_row_error > PROB_SUM_ATOL:
        raise InputError(
            f"probs rows must sum to 1 (tolerance {PROB_SUM_ATOL}); the worst row is off by {max_row_error:.3g}. "
            "If these are logits pass them as logits=, otherwise normalise the rows"
        )
    if minimum < 0:
        raise InputError(f"probs must be non-negative; found {minimum:.3g}. If these are logits pass logits=")
