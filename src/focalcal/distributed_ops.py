"""Collective operations over ``torch.distributed`` shared by the metrics and the engine.

It imports nothing of focalcal but its errors, so :mod:`focalcal.metrics` uses it without importing the
engine; :mod:`focalcal.engine.distributed` builds on it (``gather_rows``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import InputError


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def collective_device() -> torch.device:
    """Where the default process group's collectives take their tensors: the current CUDA device under NCCL,
    else the CPU (gloo)."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_rows(local: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order, on every rank (a collective: all ranks must call it).

    ``all_gather`` needs tensors of one shape, so each rank's rows are padded to the largest row count, gathered
    and unpadded: the result holds each rank's rows exactly once, no padding.

    Args:
        local: ``[n_r, W]`` this rank's rows, any dtype (the same on every rank), on the device of the group's
            backend (:func:`collective_device`). ``n_r`` may differ between ranks and may be 0; an empty shard
            may also be ``[0, 0]`` (a rank that does not know ``W``).

    Returns:
        ``[sum_r n_r, W]`` with ``local``'s dtype and device. Without an initialised process group ``local``
        itself (this process holds every row).

    Raises:
        InputError: ``local`` is not 2-D, or two non-empty shards differ in width (raised on every rank).
    """
    if local.ndim != 2:
        raise InputError(f"all_gather_rows takes rows of shape [n, W]; got shape {list(local.shape)}")
    if not is_distributed():
        return local
    meta = torch.tensor([local.shape[0], local.shape[1]], dtype=torch.int64, device=local.device)
    metas = [torch.zeros_like(meta) for _ in range(dist.get_world_size())]
    dist.all_gather(metas, meta)
    sizes = [int(m[0]) for m in metas]
    widths = {int(m[1]) for m, n in zip(metas, sizes) if n > 0}
    if len(widths) > 1:
        raise InputError(
            f"all_gather_rows: the ranks' rows differ in width ({sorted(widths)}); every rank must pass [n, W] "
            "rows of one width W"
        )
    width = widths.pop() if widths else max(int(m[1]) for m in metas)
    padded = torch.zeros((max(sizes), width), dtype=local.dtype, device=local.device)
    if local.shape[0]:
        padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])
