"""The one kernel behind every calibration metric: a single chunked pass over the ``[N, K]`` scores.

Per chunk of rows the softmax is computed once, and every per-sample quantity the metrics need
(top-label confidence, label probability, max and label logits, sum of squared probabilities) and the
classwise bin sums are read from it while it is in cache. Nothing of size ``[N, K]`` is allocated, so a
whole :func:`~focalcal.metrics.calibration_summary` costs about one softmax pass over the input. It is torch
code that runs on any device; numpy input is wrapped (no copy) and handled the same way.

Classwise sums use a sparse trick: per class only the probabilities outside the first bin (at most
``n_bins`` per row, since a row sums to 1) are binned explicitly; the first bin's sum is the column sum
minus the rest. The result equals binning all ``N * K`` entries, up to float rounding.

Equal-width bins (:func:`equal_width_index`): ``closed="left"`` puts a value ``v`` into bin b when
``edges[b] <= v < edges[b+1]`` (torchmetrics' rule; the last bin is closed, so 1.0 is in it); ``"right"``
uses ``edges[b] < v <= edges[b+1]`` (the rule of the paper authors' code; the first bin is closed, so 0.0
is in it rather than dropped as there). They differ only for a value exactly on an inner edge.

>>> import torch
>>> edges = equal_width_edges(4, torch.float32)
>>> v = torch.tensor([0.0, 0.25, 0.5, 1.0])
>>> equal_width_index(v, edges).tolist(), equal_width_index(v, edges, closed="right").tolist()
([0, 1, 2, 3], [0, 0, 1, 3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..defaults import BIN_CLOSED
from ..validation import check_closed, check_labels, check_probs_values, pick_scores, raise_nonfinite, work_dtype

#: Elements (rows x classes) per chunk on CPU: ~1 MiB of float32, small enough to stay in the L2 cache.
CPU_CHUNK_ELEMENTS = 1 << 18
#: On accelerators bigger chunks amortise kernel launches.
DEVICE_CHUNK_ELEMENTS = 1 << 25


@dataclass
class Scan:
    """Per-sample quantities of one scan.

    Attributes:
        confidence: ``[N]`` top-label probability, float32 (float64 for float64 input).
        correct: ``[N]`` bool, ``argmax == label`` (ties: the first maximal class, as ``torch.max``).
        nll: ``[N]`` float64 negative log-likelihood in nats, or None.
        brier: ``[N]`` float64 ``sum_k (p_k - 1[y=k])^2``, or None.
        classwise_diff: ``[K, n_bins]`` float64 ``sum_i 1[y_i=k] - p_ik`` over the samples whose ``p_ik``
            falls in equal-width bin b, or None.
        classwise_counts: ``[K, n_bins]`` int64 number of ``p_ik`` in bin b, or None (only when asked).
        num_classes: K.
    """

    confidence: Tensor
    correct: Tensor
    nll: Tensor | None
    brier: Tensor | None
    classwise_diff: Tensor | None
    classwise_counts: Tensor | None
    num_classes: int


def equal_width_edges(n_bins: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
    """``torch.linspace(0, 1, n_bins + 1)`` in ``dtype``: the same edges torchmetrics uses."""
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=dtype, device=device)


def equal_width_index(values: Tensor, edges: Tensor, closed: str = BIN_CLOSED) -> Tensor:
    """Equal-width bin index of each value (see the module docstring for ``closed``).

    Values slightly outside [0, 1] from rounding land in the first / last bin.
    """
    inner = edges[1:-1].to(values.dtype)
    return torch.bucketize(values, inner, right=(closed == "left"))


def scan(*, logits=None, probs=None, labels, **options: Any) -> Scan:
    """Check the inputs and compute the per-sample quantities in one chunked pass (see the module docstring).

    Args:
        logits / probs: ``[N, K]`` floating scores, exactly one of them (torch tensor or numpy array).
        labels: ``[N]`` integer class indices in ``[0, K)``.
        options: what to compute, as :func:`scan_tensor` (``need_nll``, ``need_brier``, ``classwise_bins``,
            ``classwise_counts``, ``closed``, ``chunk_elements``).

    Raises:
        InputError: invalid inputs (see :mod:`focalcal.validation`).
    """
    scores, from_logits = pick_scores(logits, probs)
    n, k = scores.shape
    y = check_labels(labels, n, k, scores.device)
    return scan_tensor(scores, y, from_logits=from_logits, **options)


def scan_tensor(
    scores: Tensor,
    y: Tensor,
    *,
    from_logits: bool,
    need_nll: bool = False,
    need_brier: bool = False,
    classwise_bins: int | None = None,
    classwise_counts: bool = False,
    closed: str = BIN_CLOSED,
    chunk_elements: int | None = None,
) -> Scan:
    """:func:`scan` on already checked tensors (``scores [N, K]`` float, ``y [N]`` int64 in range).

    Args:
        from_logits: ``scores`` are logits (softmax is applied), else probabilities.
        need_nll, need_brier: compute the per-sample NLL / Brier score.
        classwise_bins: compute the classwise bin sums over this many equal-width bins.
        classwise_counts: also count the entries per (class, bin).
        closed: the equal-width bin rule, ``"left"`` or ``"right"``.
        chunk_elements: rows x classes per chunk (default: by device).

    Raises:
        InputError: an unknown ``closed``; non-finite scores; probabilities with a negative entry or a row
            not summing to 1.
    """
    check_closed(closed)
    n, k = scores.shape
    dev = scores.device
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()  # half / bfloat16: probabilities are computed in float32 anyway
    wd = work_dtype(scores)
    if chunk_elements is None:
        chunk_elements = CPU_CHUNK_ELEMENTS if dev.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    rows = max(1, chunk_elements // k)
    edges = None if classwise_bins is None else equal_width_edges(int(classwise_bins), wd, dev)
    sums = _chunked_pass(scores, y, from_logits, need_nll, need_brier, edges, classwise_counts, closed, rows)
    _check_values(scores, sums["checks"], from_logits)
    return _finish(scores, y, from_logits, need_nll, wd, edges, closed, sums)


def _chunked_pass(scores, y, from_logits, need_nll, need_brier, edges, want_counts, closed, rows) -> dict:
    """The pass itself: per chunk, one softmax and everything read from it (see the module docstring)."""
    n, k = scores.shape
    dev = scores.device
    wd = work_dtype(scores)
    cw = edges is not None
    nb = edges.numel() - 1 if cw else 0
    conf = torch.empty(n, dtype=wd, device=dev)
    py = torch.empty(n, 1, dtype=wd, device=dev)
    pred = None if cw else torch.empty(n, dtype=torch.int64, device=dev)
    want_z = need_nll and from_logits
    z_top = torch.empty(n, dtype=scores.dtype, device=dev) if want_z else None
    z_y = torch.empty(n, 1, dtype=scores.dtype, device=dev) if want_z else None
    sq = torch.empty(n, dtype=wd, device=dev) if need_brier else None
    if cw:
        e1 = edges[1]
        hi = torch.zeros(k * nb, dtype=torch.float64, device=dev)
        colsum = torch.zeros(k, dtype=torch.float64, device=dev)
        cnt_hi = torch.zeros(k * nb, dtype=torch.int64, device=dev) if want_counts else None
        max_rows: list[Tensor] = []
        max_cols: list[Tensor] = []
    checks: list[Tensor] = []
    for s in range(0, n, rows):
        e = min(s + rows, n)
        xc = scores[s:e]
        yc = y[s:e]
        if from_logits:
            checks.append(xc.sum().double().reshape(1))  # non-finite iff an entry is (or a sum overflows)
            pc = torch.softmax(xc, 1, dtype=wd)
        else:
            pc = xc.to(wd)
            checks.append(torch.stack(((pc.sum(1) - 1).abs().amax(), pc.amin())).double())
        if cw:
            torch.amax(pc, 1, out=conf[s:e])
        else:
            torch.max(pc, 1, out=(conf[s:e], pred[s:e]))
        torch.gather(pc, 1, yc[:, None], out=py[s:e])
        if want_z:
            torch.amax(xc, 1, out=z_top[s:e])
            torch.gather(xc, 1, yc[:, None], out=z_y[s:e])
        if sq is not None:
            torch.linalg.vecdot(pc, pc, out=sq[s:e])
        if cw:
            colsum += pc.sum(0, dtype=torch.float64)
            outside = pc > e1 if closed == "right" else pc >= e1  # entries not in the first bin
            r, c = outside.nonzero(as_tuple=True)
            v = pc[r, c]
            flat = c * nb + equal_width_index(v, edges, closed)
            hi += torch.bincount(flat, weights=v.double(), minlength=k * nb)
            if cnt_hi is not None:
                cnt_hi += torch.bincount(flat, minlength=k * nb)
            top = v == conf[s:e][r]
            max_rows.append(r[top] + s)
            max_cols.append(c[top])
    return {
        "conf": conf,
        "py": py.squeeze(1),
        "z_top": z_top,
        "z_y": None if z_y is None else z_y.squeeze(1),
        "sq": sq,
        "pred": pred,
        "colsum": colsum if cw else None,
        "hi": hi if cw else None,
        "cnt_hi": cnt_hi if cw else None,
        "max_rows": torch.cat(max_rows) if cw else None,
        "max_cols": torch.cat(max_cols) if cw else None,
        "checks": torch.cat(checks) if from_logits else torch.stack(checks),
    }


def _check_values(scores: Tensor, chk: Tensor, from_logits: bool) -> None:
    """Raise for non-finite or invalid probabilities, from the pass's per-chunk checks."""
    if not bool(torch.isfinite(chk).all()):
        raise_nonfinite(scores, "logits" if from_logits else "probs")
    if not from_logits:
        check_probs_values(float(chk[:, 0].max()), float(chk[:, 1].min()))


def _finish(scores, y, from_logits, need_nll, wd, edges, closed, t: dict) -> Scan:
    """Correctness, NLL, Brier and the classwise differences from the pass's outputs."""
    n, k = scores.shape
    conf, py = t["conf"], t["py"]
    if t["pred"] is not None:
        correct = t["pred"] == y
    else:
        # argmax == label  <=>  p_y is the row maximum and no smaller class index ties with it. Every entry
        # equal to a row maximum outside the first bin was collected by the pass; rows whose maximum lies in
        # the first bin (possible when K > n_bins) get an explicit argmax.
        correct = py == conf
        mr, mc = t["max_rows"], t["max_cols"]
        correct[mr[mc < y[mr]]] = False
        in_first = conf <= edges[1] if closed == "right" else conf < edges[1]
        low = in_first.nonzero().squeeze(1)
        if low.numel():
            xl = scores[low]
            pl = torch.softmax(xl, 1, dtype=wd) if from_logits else xl.to(wd)
            correct[low] = pl.argmax(1) == y[low]
    nll = brier = None
    if need_nll and from_logits:
        # log softmax at the label: z_y - logsumexp(z), with logsumexp(z) = z_max - log p_max
        # (an exact identity; p_max >= 1/K never underflows, so this is as accurate as log_softmax)
        nll = (t["z_top"].double() - t["z_y"].double()) - torch.log(conf.double())
    elif need_nll:
        nll = -torch.log(py.double().clamp_min(torch.finfo(wd).tiny))
    if t["sq"] is not None:
        brier = (t["sq"].double() - 2 * py.double() + 1).clamp_min_(0)
    diff = counts = None
    if edges is not None:
        nb = edges.numel() - 1
        cw_y = torch.bincount(y * nb + equal_width_index(py, edges, closed), minlength=k * nb)
        hi = t["hi"].view(k, nb)
        sum_p = hi.clone()
        sum_p[:, 0] += t["colsum"] - hi.sum(1)
        diff = cw_y.view(k, nb).double() - sum_p
        if t["cnt_hi"] is not None:
            counts = t["cnt_hi"].view(k, nb).clone()
            counts[:, 0] += n - counts.sum(1)
    return Scan(conf, correct, nll, brier, diff, counts, k)
