"""CPU kernel of the metrics scan, in numpy (see :mod:`focalcal.metrics._scan` for what it computes).

Why numpy on CPU: per chunk the scan runs ~20 small operations on data that sits in cache. numpy runs
them single-threaded with no per-call thread-pool synchronisation, which on small machines is several times
faster than torch's OpenMP kernels for this access pattern (and immune to an oversubscribed OpenMP pool).
Parallelism comes from Python threads over fixed row chunks (numpy releases the GIL inside its loops).
Chunk boundaries do not depend on the number of threads, and the per-chunk partial sums are added in chunk
order, so results are identical for any thread count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass
class KernelOut:
    conf: np.ndarray  # [N] top-label probability
    py: np.ndarray  # [N] probability of the label
    z_top: np.ndarray | None  # [N] max logit (from logits, with NLL)
    z_y: np.ndarray | None  # [N] label logit
    sq: np.ndarray | None  # [N] sum_k p_k^2
    pred: np.ndarray | None  # [N] argmax (only without classwise)
    colsum: np.ndarray | None  # [K] float64
    hi: np.ndarray | None  # [K * nb] float64 sums of p >= edges[1] per (class, bin)
    cnt_hi: np.ndarray | None  # [K * nb] int64 counts of those entries
    max_rows: np.ndarray | None  # rows / classes of entries >= edges[1] equal to their row's maximum
    max_cols: np.ndarray | None
    checks: np.ndarray  # logits: [chunks] sums; probs: [chunks, 2] (max |row sum - 1|, min)


def equal_width_index_np(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Same bins as ``torch.bucketize(values, edges, right=True) - 1`` clamped to ``[0, nb-1]``, computed
    as ``floor(v * nb)`` corrected by one exact comparison with each neighbouring edge."""
    nb = edges.shape[0] - 1
    b = np.clip((values * nb).astype(np.int64), 0, nb - 1)
    b -= values < edges[b]
    np.clip(b, 0, nb - 1, out=b)
    b += (values >= edges[b + 1]) & (b < nb - 1)
    return b


def _colsum(p: np.ndarray) -> np.ndarray:
    """Column sums in float64: float32 partial sums over 64-row blocks (relative error ~1e-7 of a block),
    then float64 across blocks. About 2x the cost of a float32 sum, 2x cheaper than a float64 one."""
    r, k = p.shape
    cut = r // 64 * 64
    out = p[cut:].sum(0, dtype=np.float64)
    if cut:
        out += p[:cut].reshape(-1, 64, k).sum(1).sum(0, dtype=np.float64)
    return out


def softmax_np(x: np.ndarray, m: np.ndarray, wd: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(softmax(x) [R, K], 1 / row sums [R])`` given the row maxima ``m``; as torch's softmax, the
    exponentials are multiplied by the reciprocal of their sum, so the largest entry is exactly ``inv``."""
    p = np.subtract(x, m[:, None], dtype=wd)
    np.exp(p, out=p)
    inv = 1.0 / np.einsum("ij->i", p)
    p *= inv[:, None]
    return p, inv


def finish_numpy(
    x: np.ndarray, y: np.ndarray, out: KernelOut, *, from_logits: bool, need_nll: bool, edges, wd: np.dtype
) -> dict:
    """Per-sample correctness / NLL / Brier and the classwise differences from the kernel outputs (numpy
    twin of the torch post-processing in :mod:`focalcal.metrics._scan`)."""
    conf, py = out.conf, out.py
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if out.pred is not None:
            correct = out.pred == y
        else:
            # argmax == label  <=>  p_y is the row maximum and no smaller class index ties with it. Every
            # entry equal to a row maximum >= edges[1] was collected by the kernel; rows whose maximum is
            # below edges[1] (possible when K > n_bins) get an explicit argmax.
            correct = py == conf
            earlier = out.max_cols < y[out.max_rows]
            correct[out.max_rows[earlier]] = False
            low = np.flatnonzero(conf < edges[1])
            if low.size:
                xl = x[low]
                pl = softmax_np(xl, xl.max(1), wd)[0] if from_logits else xl.astype(wd, copy=False)
                correct[low] = pl.argmax(1) == y[low]
        nll = brier = diff = counts = None
        if need_nll and from_logits:
            # log softmax at the label: z_y - logsumexp(z), with logsumexp(z) = z_max - log p_max
            # (an exact identity; p_max >= 1/K never underflows, so this is as accurate as log_softmax)
            nll = (out.z_top.astype(np.float64) - out.z_y) - np.log(conf.astype(np.float64))
        elif need_nll:
            nll = -np.log(np.maximum(py.astype(np.float64), np.finfo(wd).tiny))
        if out.sq is not None:
            brier = np.maximum(out.sq.astype(np.float64) - 2 * py.astype(np.float64) + 1, 0.0)
        if edges is not None:
            nb = edges.shape[0] - 1
            k = out.colsum.shape[0]
            cw_y = np.bincount(y * nb + equal_width_index_np(py, edges), minlength=k * nb)
            hi = out.hi.reshape(k, nb)
            sum_p = hi.copy()
            sum_p[:, 0] += out.colsum - hi.sum(1)
            diff = cw_y.reshape(k, nb) - sum_p
            if out.cnt_hi is not None:
                counts = out.cnt_hi.reshape(k, nb).copy()
                counts[:, 0] += y.shape[0] - counts.sum(1)
    return {"correct": correct, "nll": nll, "brier": brier, "diff": diff, "counts": counts}


def scan_numpy(
    x: np.ndarray,
    y: np.ndarray,
    *,
    from_logits: bool,
    need_nll: bool,
    need_brier: bool,
    edges: np.ndarray | None,
    want_counts: bool,
    rows: int,
    threads: int,
    wd: np.dtype,
) -> KernelOut:
    """One pass over ``x [N, K]`` (logits or probabilities) in chunks of ``rows`` rows."""
    n, k = x.shape
    cw = edges is not None
    nb = 0 if edges is None else edges.shape[0] - 1
    e1 = None if edges is None else edges[1]
    conf = np.empty(n, wd)
    py = np.empty(n, wd)
    want_z = need_nll and from_logits
    z_top = np.empty(n, x.dtype) if want_z else None
    z_y = np.empty(n, x.dtype) if want_z else None
    sq = np.empty(n, wd) if need_brier else None
    pred = None if cw else np.empty(n, np.int64)
    starts = list(range(0, n, rows))
    n_chunks = len(starts)
    colsums = np.zeros((n_chunks, k)) if cw else None
    his = np.zeros((n_chunks, k * nb)) if cw else None
    cnts = np.zeros((n_chunks, k * nb), np.int64) if cw and want_counts else None
    mrs: list = [None] * n_chunks
    mcs: list = [None] * n_chunks
    checks = np.zeros((n_chunks, 2)) if not from_logits else np.zeros(n_chunks)

    def work(ci: int) -> None:
        s = starts[ci]
        e = min(s + rows, n)
        xc = x[s:e]
        yc = y[s:e]
        ar = np.arange(e - s)
        if from_logits:
            # non-finite iff some entry is (or on float overflow: then re-checked exactly). Row sums by
            # einsum: several times faster than ndarray.sum(1) on short rows, and no BLAS threads
            checks[ci] = np.einsum("ij->i", xc).sum()
            m = xc.max(1)
            if want_z:
                z_top[s:e] = m
                z_y[s:e] = xc[ar, yc]
            pc, inv = softmax_np(xc, m, wd)
        else:
            pc = xc.astype(wd, copy=False)
            checks[ci, 0] = np.abs(np.einsum("ij->i", pc) - 1).max()
            checks[ci, 1] = pc.min()
        if cw:
            cc = conf[s:e]
            if from_logits:
                cc[:] = inv  # the maximal entry is exp(0) * inv = inv exactly
            else:
                pc.max(1, out=cc)
        else:
            pred[s:e] = pc.argmax(1)
            conf[s:e] = pc[ar, pred[s:e]]
        py[s:e] = pc[ar, yc]
        if sq is not None:
            sq[s:e] = np.einsum("ij,ij->i", pc, pc)
        if cw:
            colsums[ci] = _colsum(pc)
            f = np.flatnonzero(pc >= e1)
            v = pc.ravel()[f]
            r, c = np.divmod(f, k)
            flat = c * nb + equal_width_index_np(v, edges)
            his[ci] = np.bincount(flat, weights=v, minlength=k * nb)
            if cnts is not None:
                cnts[ci] = np.bincount(flat, minlength=k * nb)
            top = v == cc[r]
            mrs[ci] = r[top] + s
            mcs[ci] = c[top]

    # non-finite input is reported by the caller from ``checks``; keep numpy quiet meanwhile
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if threads > 1 and n_chunks > 1:
            with ThreadPoolExecutor(max_workers=min(threads, n_chunks)) as ex:
                list(ex.map(work, range(n_chunks)))
        else:
            for ci in range(n_chunks):
                work(ci)

    return KernelOut(
        conf=conf,
        py=py,
        z_top=z_top,
        z_y=z_y,
        sq=sq,
        pred=pred,
        colsum=colsums.sum(0) if cw else None,
        hi=his.sum(0) if cw else None,
        cnt_hi=cnts.sum(0) if cnts is not None else None,
        max_rows=np.concatenate(mrs) if cw else None,
        max_cols=np.concatenate(mcs) if cw else None,
        checks=checks,
    )
