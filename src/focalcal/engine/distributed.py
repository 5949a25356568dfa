"""Multi-process training through torch.distributed, launched by ``torchrun`` (never a home-made launcher).

``torchrun --nproc_per_node N -m focalcal.cli.main train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the
trainer then joins the process group (NCCL on CUDA, gloo on CPU), shards every epoch's sample order across
ranks, wraps the model in DistributedDataParallel, and lets only rank 0 write files.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..distributed_ops import all_gather_rows


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun job (or not part of one), from the environment."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment; single-process when it describes none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        # tear the group down before interpreter exit: left to process teardown, gloo's threads can abort
        # the process ("terminate called without an active exception") after the work has succeeded
        atexit.register(_destroy_process_group)
    return info


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over ranks in place (a no-op in a single process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_ranks_true(flags: list[bool], info: DistInfo, device: torch.device | str = "cpu") -> list[bool]:
    """Each flag stays True only if it is True on every rank (unchanged in a single process).

    ``device``: where the collective runs (the rank's CUDA device under NCCL, the CPU under gloo).
    """
    if not info.enabled:
        return list(flags)
    t = all_reduce_sum(torch.tensor([float(f) for f in flags], device=device), info)
    return [v == info.world_size for v in t.tolist()]


def gather_rows(local: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``[n_r, K]`` rows in rank order; shards may differ in size or be empty (an
    empty shard may be ``[0, 0]``). Every rank gets the whole ``[sum n_r, K]`` tensor, each row exactly once
    (the padding needed by ``all_gather`` is stripped); in a single process ``local`` itself. The padded
    gather is :func:`focalcal.distributed_ops.all_gather_rows` (its errors: ``InputError``)."""
    if not info.enabled:
        return local
    return all_gather_rows(local)


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers of ``module`` (e.g. AdaFocal's per-bin gammas) to every rank."""
    if info.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
