"""Out-of-distribution (OOD) scores and detection metrics.

Convention, used everywhere in focalcal: **OOD is the positive class** and **a higher score means "more
OOD"**. A detector flags an input as OOD when its score is at or above a threshold, so

- true positive rate (TPR) = fraction of OOD inputs flagged,
- false positive rate (FPR) = fraction of in-distribution inputs flagged.

Scores (all computed in float64 from a log-softmax, so ``-inf`` logits, a class with probability that
underflows to 0, or a top probability that rounds to 1 in float32 all give finite, correct values):

- :func:`entropy_score`: softmax entropy in nats, ``-sum_k p_k log p_k`` (the paper's OOD score, Sec. 5).
- :func:`msp_score`: ``1 - max_k p_k``, i.e. the maximum softmax probability baseline of Hendrycks &
  Gimpel (2017) turned into an OOD score; computed as ``s / (1 + s)`` with ``s = sum_{k != argmax}
  exp(z_k - z_max)``, so it stays resolved when ``max_k p_k`` rounds to 1 (e.g. ``1 - p = 1e-30``).
- :func:`energy_score`: the free energy ``-T * logsumexp(logits / T)`` of Liu et al., "Energy-based
  Out-of-distribution Detection" (NeurIPS 2020); in-distribution inputs have lower energy.

Metrics (:func:`detection_metrics`, :func:`ood_metrics`) use scikit-learn's ``roc_auc_score``,
``average_precision_score`` and ``roc_curve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..errors import InputError
from ..validation import check_logits

SCORES = ("entropy", "msp", "energy")
DETECTION_KEYS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")
#: The TPR (fraction of OOD inputs flagged) at which ``fpr_at_95_tpr`` is read.
TPR_LEVEL = 0.95


def _checked(logits: Any) -> torch.Tensor:
    """``logits`` as a checked float64 ``[N, K]`` CPU tensor (``-inf`` entries allowed: masked classes)."""
    return check_logits(logits, allow_neg_inf=True).to(device="cpu", dtype=torch.float64)


def _log_probs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_softmax [N, K], s [N])`` of checked float64 logits; ``s = sum_{k != argmax} exp(z_k - z_max)``.

    Computed as ``log p_k = (z_k - z_max) - log1p(s)``, which keeps ``log p_max = -log1p(s)`` resolved when
    ``s`` is below float64's epsilon (``torch.log_softmax`` returns exactly 0 there).
    """
    top = x.argmax(dim=1, keepdim=True)
    shifted = x - x.gather(1, top)
    rest = shifted.exp().scatter(1, top, 0.0).sum(dim=1)
    return shifted - torch.log1p(rest)[:, None], rest


def entropy_score(logits: Any) -> np.ndarray:
    """Softmax entropy ``-sum_k p_k log p_k`` in nats, float64 ``[N]``; higher = more OOD.

    Classes with logit ``-inf`` (probability exactly 0) contribute 0, as ``0 log 0 = 0``.

    Args:
        logits: ``[N, K]`` torch tensor or numpy array (any float dtype).

    Raises:
        ValueError: wrong shape, NaN or ``+inf`` logits, or a row that is entirely ``-inf``.

    >>> entropy_score([[0.0, 0.0], [4.0, 0.0]]).round(4).tolist()  # log 2 for a uniform pair
    [0.6931, 0.0901]
    """
    logp, _ = _log_probs(_checked(logits))
    terms = torch.where(torch.isneginf(logp), torch.zeros_like(logp), logp.exp() * logp)
    return (-terms.sum(dim=1)).clamp_min(0.0).numpy()


def msp_score(logits: Any) -> np.ndarray:
    """``1 - max_k softmax(logits)_k``, float64 ``[N]`` in ``[0, 1 - 1/K]``; higher = more OOD.

    Raises:
        ValueError: as :func:`entropy_score`.

    >>> msp_score([[0.0, 0.0], [4.0, 0.0]]).round(4).tolist()
    [0.5, 0.018]
    """
    _, rest = _log_probs(_checked(logits))
    return (rest / (1.0 + rest)).numpy()  # 1 - 1 / (1 + s), without cancellation


def energy_score(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Free energy ``-T * logsumexp(logits / T)``, float64 ``[N]`` (units of the logits); higher = more OOD.

    ``temperature`` is the energy's own ``T`` (Liu et al. use 1); it is separate from temperature scaling,
    which is applied to the logits before scoring.

    Raises:
        ValueError: as :func:`entropy_score`, or ``temperature <= 0``.

    >>> energy_score([[0.0, 0.0], [4.0, 0.0]]).round(4).tolist()  # -logsumexp
    [-0.6931, -4.0181]
    """
    if not temperature > 0:
        raise InputError(f"energy temperature must be > 0; got {temperature}")
    x = _checked(logits)
    return (-temperature * torch.logsumexp(x / temperature, dim=1)).numpy()


_SCORE_FUNCS = {"entropy": entropy_score, "msp": msp_score, "energy": energy_score}


def ood_scores(logits: Any, scores: Sequence[str] = SCORES) -> dict[str, np.ndarray]:
    """Several OOD scores of the same ``[N, K]`` logits: ``{name: float64 [N]}``.

    Raises:
        ValueError: an unknown score name (lists the valid ones), or invalid logits.
    """
    unknown = [s for s in scores if s not in _SCORE_FUNCS]
    if unknown:
        raise InputError(f"unknown OOD score(s) {unknown}; choose from {', '.join(SCORES)}")
    return {s: _SCORE_FUNCS[s](logits) for s in scores}


def _check_detection_input(scores: Any, is_ood: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    y = np.asarray(is_ood.detach().cpu() if isinstance(is_ood, torch.Tensor) else is_ood)
    if s.ndim != 1 or y.shape != s.shape:
        raise InputError(f"scores and is_ood must be 1-D of equal length; got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise InputError("OOD scores contain NaN or inf")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise InputError("is_ood must be boolean (or 0/1): True marks an out-of-distribution input")
        y = y.astype(bool)
    n_ood = int(y.sum())
    if n_ood == 0 or n_ood == y.size:
        present = "only OOD" if n_ood else "only in-distribution"
        raise InputError(
            f"OOD detection needs both in-distribution and OOD inputs; got {present} ({y.size} inputs). "
            "AUROC/AUPR/FPR are undefined with one class"
        )
    return s, y


def detection_metrics(scores: Any, is_ood: Any) -> dict[str, float]:
    """OOD-detection metrics of ``scores`` (higher = more OOD) against ``is_ood`` (True = OOD = positive).

    Returns fractions (not %):

    - ``auroc``: area under the ROC curve, OOD positive (0.5 = chance; ties count half).
    - ``aupr_out``: average precision with OOD as the positive class and the score as given.
    - ``aupr_in``: average precision with in-distribution as the positive class and the negated score.
    - ``fpr_at_95_tpr``: the fraction of in-distribution inputs flagged at the highest threshold that flags
      at least 95% of the OOD inputs (read off scikit-learn's full ROC curve, no interpolation).

    Args:
        scores: float ``[N]`` (numpy or torch).
        is_ood: bool (or 0/1) ``[N]``.

    Raises:
        ValueError: shapes differ, non-finite scores, or only one class present.
    """
    s, y = _check_detection_input(scores, is_ood)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    i = int(np.searchsorted(tpr, TPR_LEVEL, side="left"))
    return {
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(~y, -s)),
        "aupr_out": float(average_precision_score(y, s)),
        "fpr_at_95_tpr": float(fpr[min(i, fpr.size - 1)]),
    }


def _stack(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(scores_in, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_out, dtype=np.float64).reshape(-1)
    return np.concatenate([a, b]), np.concatenate([np.zeros(a.size, bool), np.ones(b.size, bool)])


def ood_metrics(scores_in: Any, scores_out: Any) -> dict[str, float]:
    """:func:`detection_metrics` for in-distribution scores ``[N_in]`` against OOD scores ``[N_out]``.

    Raises:
        ValueError: either set is empty, or non-finite scores.

    >>> m = ood_metrics([0.1, 0.2, 0.3], [0.25, 0.5, 0.9])  # 8 of the 9 (in, out) pairs are ordered right
    >>> round(m["auroc"], 4), round(m["fpr_at_95_tpr"], 4)
    (0.8889, 0.3333)
    """
    return detection_metrics(*_stack(scores_in, scores_out))


def ood_roc_curve(scores_in: Any, scores_out: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve ``(fpr, tpr)`` (float64 arrays, OOD positive) for plotting; see :func:`ood_metrics`."""
    s, y = _check_detection_input(*_stack(scores_in, scores_out))
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr
