"""Device selection and per-device defaults (autocast, memory format)."""

from __future__ import annotations

import contextlib

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
    """Whether ``device`` computes bfloat16 matmuls/convolutions natively (so autocast speeds training up).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AMX-BF16 or AVX512-BF16 instructions (Intel Cooper Lake,
    Sapphire Rapids and later; AMD Zen 4 and later), which oneDNN uses for bfloat16 convolutions; without
    them bfloat16 is emulated and slower than float32, so the engine keeps float32.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            caps = torch.cpu.get_capabilities()
        except (AttributeError, RuntimeError):  # older torch: no capability query, stay in float32
            return False
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return False


def resolve_precision(device: torch.device, amp: bool | None, channels_last: bool | None) -> tuple[bool, bool]:
    """The engine's ``(amp, channels_last)`` for ``device``; ``None`` means "the measured default":

    - amp (bfloat16 autocast of the model's forward pass; losses and metrics stay float32): on wherever
      bfloat16 is native (:func:`bf16_is_fast`);
    - channels_last: on for CUDA, and on the CPU together with bfloat16 (oneDNN's bf16 convolutions are
      faster in NHWC); float32 on the CPU gains nothing from it.

    See benchmarks/train_throughput.py for the figures behind these defaults.
    """
    use_amp = bf16_is_fast(device) if amp is None else bool(amp)
    if channels_last is None:
        channels_last = device.type == "cuda" or use_amp
    return use_amp, bool(channels_last)


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
