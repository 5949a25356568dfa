"""Device selection and per-device defaults (autocast, memory format)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU. Raises ValueError for an unavailable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively, so that autocast speeds training up.

    CUDA: compute capability 8.0 or newer (Ampere and later have bf16 tensor cores; older GPUs emulate it).
    CPU: AMX-BF16 (Intel Sapphire Rapids and later), where oneDNN's bf16 kernels are measured at 2.3x
    (ResNet-20) to 3.7x (ResNet-50) the float32 baseline (benchmarks/train_throughput.py). CPUs with only
    AVX512-BF16 (Cooper Lake, AMD Zen 4) are not measured and stay float32; ``--amp`` opts in. A torch too
    old to query CPU capabilities also stays float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        query = getattr(torch.cpu, "get_capabilities", None)
        if query is None:
            return False
        try:
            return bool(query().get("amx_bf16"))
        except RuntimeError:
            return False
    return False


def resolve_precision(device: torch.device, amp: bool | None, channels_last: bool | None) -> tuple[bool, bool]:
    """The engine's ``(amp, channels_last)`` for ``device``; ``None`` picks the default:

    - amp (bfloat16 autocast of the model's forward pass in training; losses take float32 logits and
      evaluation runs in float32): on wherever bfloat16 is native (:func:`bf16_is_fast`);
    - channels_last: on for CUDA, and on the CPU together with bfloat16 (oneDNN's bf16 training steps
      measured 1.10x faster for ResNet-20 and 1.7x for ResNet-50 than NCHW on an AMX CPU); off for float32
      on the CPU: the float32 default only applies to CPUs without AMX, where it is not measured.
    """
    use_amp = bf16_is_fast(device) if amp is None else bool(amp)
    if channels_last is None:
        channels_last = device.type == "cuda" or use_amp
    return use_amp, bool(channels_last)


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
