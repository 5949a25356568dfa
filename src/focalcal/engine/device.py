"""Device selection and per-device defaults (autocast, memory format)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto", *, here: bool = True) -> torch.device:
    """The torch device named ``name``: ``auto`` picks CUDA when available, else the CPU.

    ``here=False`` checks the name only (for runs on other machines, e.g. a SLURM cluster's nodes): ``auto``
    is then returned as the CPU device and a CUDA device is not looked for on this machine.

    Raises:
        ConfigError: an unknown device name (``tpu``), or (``here``) a CUDA device this machine does not have
            (no GPU, or ``cuda:N`` beyond its GPUs); the message says which devices to use instead.
    """
    if name == "auto":
        if not here:
            return torch.device("cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r} (--device): use auto, cpu, cuda or cuda:N") from None
    if not here:
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name}: this machine has no usable CUDA GPU (torch {torch.__version__} finds none); "
            "use --device cpu, or --device auto to use a GPU only where there is one"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError(f"--device {name}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}; pick one")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), as reported by torch.

    A torch too old to report CPU capabilities counts as no.
    """
    query = getattr(torch.cpu, "get_capabilities", None)
    if query is None:
        return False
    try:
        caps = query()
    except RuntimeError:
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16: CUDA compute capability 8.0+ (Ampere and later have bf16
    tensor cores; older GPUs emulate it), or a CPU with AVX512-BF16 / AMX-BF16. Whether bf16 is then
    actually *faster* on a CPU depends on the model: :mod:`focalcal.engine.precision` measures it."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def default_eval_batch(device: torch.device) -> int:
    """The evaluation batch when the config leaves it unset: 1024 on CUDA, 64 on a CPU.

    On a CPU the time per image of a forward pass grows with the batch once the activations leave the cache,
    while 64 images already amortise the per-batch overhead (the time per image at a given batch is measured
    by ``benchmarks/eval_share.py --eval-batch N``); a GPU needs large batches to be busy.
    """
    return 1024 if device.type == "cuda" else 64


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Run float32 convolutions and matmuls in full float32 on ``device`` (CUDA's TF32 off), then restore.

    Evaluation logits feed calibration metrics; TF32 (10-bit mantissa, on by default for cuDNN
    convolutions) would round them. A no-op on other devices.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
