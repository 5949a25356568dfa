"""One pass over the ``[N, K]`` scores that produces everything the metrics need.

The scores are processed in row chunks small enough to stay in the CPU cache: per chunk the softmax is
computed once and every per-sample quantity (top-label confidence, label probability, max and label
logits, sum of squares) and the classwise bin sums are read from it while it is still in cache. Nothing
of size ``[N, K]`` is allocated, so the whole scan costs about one softmax pass over the input. On CPU the
per-chunk work runs in numpy (:mod:`focalcal.metrics._kernel_np`), elsewhere in torch; both give the same
numbers up to float rounding.

Classwise sums use a sparse trick: per class only the probabilities ``>= edges[1]`` (at most ``n_bins``
per row, since a row sums to 1) are binned explicitly; the first bin's sum is the column sum minus the
rest. The result is the same as binning all ``N * K`` entries, up to float rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._kernel_np import finish_numpy, scan_numpy
from ._validate import PROB_SUM_ATOL, check_labels, pick_scores, raise_nonfinite, work_dtype

#: Elements (rows x classes) per chunk on CPU: ~1 MiB of float32, small enough for the L2 cache.
CPU_CHUNK_ELEMENTS = 1 << 18
#: On accelerators bigger chunks amortise kernel launches.
DEVICE_CHUNK_ELEMENTS = 1 << 25


@dataclass
class Scan:
    """Per-sample quantities of one scan (internal).

    Attributes:
        confidence: ``[N]`` top-label probability, float32 (float64 for float64 input).
        correct: ``[N]`` bool, ``argmax == label`` (ties: the first maximal class, as ``torch.max``).
        nll: ``[N]`` float64 negative log-likelihood in nats, or None.
        brier: ``[N]`` float64 ``sum_k (p_k - 1[y=k])^2``, or None.
        classwise_diff: ``[K, n_bins]`` float64 ``sum_i 1[y_i=k] - p_ik`` over the samples whose ``p_ik``
            falls in bin b (equal-width), or None.
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


def cpu_threads() -> int:
    """Python threads for the numpy kernel: ``torch.get_num_threads()``, reduced to the CPUs that the
    1-minute load average leaves idle (counting our own running thread), at least 1. On a shared machine
    two threads fighting another process for one core are slower than one. Results do not depend on it."""
    t = max(1, torch.get_num_threads())
    if t > 1:
        try:
            idle = len(os.sched_getaffinity(0)) - os.getloadavg()[0]
            t = max(1, min(t, int(idle + 1)))
        except (AttributeError, OSError):  # platforms without sched_getaffinity / getloadavg
            pass
    return t


def equal_width_edges(n_bins: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
    """``torch.linspace(0, 1, n_bins + 1)`` in ``dtype``: the same edges torchmetrics uses."""
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=dtype, device=device)


def equal_width_index(values: Tensor, edges: Tensor) -> Tensor:
    """Bin index of each value: bin b is ``[edges[b], edges[b+1])``; the last bin is closed ``[.., 1]``.

    A value of exactly 0 lands in bin 0 and exactly 1 in bin ``n_bins - 1``; values slightly outside
    [0, 1] from rounding land in the first / last bin. Equal to
    ``(torch.bucketize(values, edges, right=True) - 1).clamp(0, n_bins - 1)``, computed as
    ``floor(v * n_bins)`` corrected by one exact comparison with each neighbouring edge (faster).
    """
    n_bins = edges.numel() - 1
    e = edges.to(values.dtype)
    idx = (values * n_bins).long().clamp_(0, n_bins - 1)
    idx -= (values < e[idx]).long()
    idx.clamp_(0, n_bins - 1)
    idx += ((values >= e[idx + 1]) & (idx < n_bins - 1)).long()
    return idx


def scan(
    *,
    logits=None,
    probs=None,
    labels,
    need_nll: bool = False,
    need_brier: bool = False,
    classwise_bins: int | None = None,
    classwise_counts: bool = False,
    chunk_elements: int | None = None,
) -> Scan:
    """Check the inputs and compute the per-sample quantities in one chunked pass (see module doc)."""
    scores, from_logits = pick_scores(logits, probs)
    n, k = scores.shape
    y = check_labels(labels, n, k, scores.device)
    return scan_tensor(
        scores,
        y,
        from_logits=from_logits,
        need_nll=need_nll,
        need_brier=need_brier,
        classwise_bins=classwise_bins,
        classwise_counts=classwise_counts,
        chunk_elements=chunk_elements,
    )


def scan_tensor(
    scores: Tensor,
    y: Tensor,
    *,
    from_logits: bool,
    need_nll: bool = False,
    need_brier: bool = False,
    classwise_bins: int | None = None,
    classwise_counts: bool = False,
    chunk_elements: int | None = None,
    backend: str | None = None,
) -> Scan:
    """:func:`scan` on already checked tensors (``scores [N, K]`` float, ``y [N]`` int64 in range).

    ``backend``: ``"numpy"`` (default on CPU) or ``"torch"`` (default elsewhere); both give the same
    numbers up to float rounding (the tests run both).
    """
    n, k = scores.shape
    dev = scores.device
    if backend is None:
        backend = "numpy" if dev.type == "cpu" else "torch"
    if scores.dtype not in (torch.float32, torch.float64):
        scores = scores.float()  # half / bfloat16: probabilities are computed in float32 anyway
    wd = work_dtype(scores)
    if chunk_elements is None:
        chunk_elements = CPU_CHUNK_ELEMENTS if dev.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    rows = max(1, chunk_elements // k)
    cw = classwise_bins is not None
    nb = int(classwise_bins) if cw else 0
    edges = equal_width_edges(nb, wd, dev) if cw else None
    if backend == "numpy":
        xn = np.ascontiguousarray(scores.numpy())
        yn = y.numpy()
        wdn = np.dtype(np.float32 if wd == torch.float32 else np.float64)
        en = None if edges is None else edges.numpy()
        out = scan_numpy(
            xn, yn, from_logits=from_logits, need_nll=need_nll, need_brier=need_brier, edges=en,
            want_counts=classwise_counts, rows=rows, threads=cpu_threads(), wd=wdn,
        )
        _check_inputs(scores, torch.from_numpy(np.asarray(out.checks)), from_logits)
        f = finish_numpy(xn, yn, out, from_logits=from_logits, need_nll=need_nll, edges=en, wd=wdn)

        def tt(a):
            return None if a is None else torch.from_numpy(np.asarray(a))

        return Scan(tt(out.conf), tt(f["correct"]), tt(f["nll"]), tt(f["brier"]), tt(f["diff"]),
                    tt(f["counts"]), k)
    t = _scan_torch(scores, y, from_logits, need_nll, need_brier, edges, classwise_counts, rows)
    return _finish(scores, y, from_logits, need_nll, wd, edges, t, n, k)


def _scan_torch(scores, y, from_logits, need_nll, need_brier, edges, want_counts, rows) -> dict:
    """The chunked scan in torch (used on accelerators; same outputs as the numpy kernel)."""
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
            checks.append(xc.sum().double().reshape(1))
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
            sq[s:e] = (pc * pc).sum(1)
        if cw:
            colsum += pc.sum(0)
            r, c = (pc >= e1).nonzero(as_tuple=True)
            v = pc[r, c]
            flat = c * nb + equal_width_index(v, edges)
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


def _check_inputs(scores: Tensor, chk: Tensor, from_logits: bool) -> None:
    """Raise the ValueErrors of non-finite or invalid probabilities from the kernel's per-chunk checks."""
    if from_logits:
        if not bool(torch.isfinite(chk).all()):
            raise_nonfinite(scores, "logits")
        return
    if not bool(torch.isfinite(chk).all()):
        raise_nonfinite(scores, "probs")
    worst_sum = float(chk[:, 0].max())
    if worst_sum > PROB_SUM_ATOL:
        raise ValueError(
            f"probs rows must sum to 1 (tolerance {PROB_SUM_ATOL}); the worst row is off by {worst_sum:.3g}. "
            "If these are logits pass them as logits=, otherwise normalise the rows"
        )
    lowest = float(chk[:, 1].min())
    if lowest < 0:
        raise ValueError(f"probs must be non-negative; found {lowest:.3g}. If these are logits pass logits=")


def _finish(scores, y, from_logits, need_nll, wd, edges, t: dict, n: int, k: int) -> Scan:
    """Input checks, then correctness, NLL, Brier and classwise sums from the torch kernel's outputs."""
    _check_inputs(scores, t["checks"], from_logits)

    conf, py = t["conf"], t["py"]
    if t["pred"] is not None:
        correct = t["pred"] == y
    else:
        # argmax == label  <=>  p_y is the row maximum and no smaller class index ties with it. Every
        # entry equal to a row maximum >= edges[1] was collected by the kernel; rows whose maximum is
        # below edges[1] (possible when K > n_bins) get an explicit argmax.
        correct = py == conf
        mr, mc = t["max_rows"], t["max_cols"]
        earlier = mc < y[mr]
        correct[mr[earlier]] = False
        low = (conf < edges[1]).nonzero().squeeze(1)
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
        cw_y = torch.bincount(y * nb + equal_width_index(py, edges), minlength=k * nb)
        hi = t["hi"].view(k, nb)
        sum_p = hi.clone()
        sum_p[:, 0] += t["colsum"] - hi.sum(1)
        diff = cw_y.view(k, nb).double() - sum_p
        if t["cnt_hi"] is not None:
            counts = t["cnt_hi"].view(k, nb).clone()
            counts[:, 0] += n - counts.sum(1)
    return Scan(conf, correct, nll, brier, diff, counts, k)
