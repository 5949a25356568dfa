"""CIFAR-10-C style corruptions (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019), generated from uint8 images with a seeded generator.

Settings (the per-severity constants, the order of operations, clipping to [0, 1] and the final
truncation to uint8 — ``np.uint8(float)`` truncates) follow the authors' generator for 32x32 images,
``ImageNet-C/create_c/make_cifar_c.py`` in https://github.com/hendrycks/robustness (commit ca36008).
Every constant below was checked against that file; the code is our own (numpy/torch, no OpenCV,
scikit-image or ImageMagick):

================  ===========================================  ==========================================
corruption        operation on x = image / 255                 constant c for severity 1..5
================  ===========================================  ==========================================
gaussian_noise    clip(x + N(0, c^2))                          0.04, 0.06, 0.08, 0.09, 0.10
shot_noise        clip(Poisson(x * c) / c)                     500, 250, 100, 75, 50
impulse_noise     salt-and-pepper: each value replaced with    0.01, 0.02, 0.03, 0.05, 0.07
                  prob. c, by 1 or 0 with prob. 1/2 each
                  (``skimage.util.random_noise(mode="s&p")``)
defocus_blur      correlate each channel with an anti-aliased  (radius, alias sigma): (0.3, 0.4),
                  disk kernel (reflect-101 border)             (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)
contrast          clip((x - m) * c + m), m = per-image,        0.75, 0.5, 0.4, 0.3, 0.15
                  per-channel mean
brightness        HSV value V -> clip(V + c, 0, 1)             0.05, 0.1, 0.15, 0.2, 0.3
================  ===========================================  ==========================================

The defocus kernel is the authors' ``disk()``: on the grid ``-8..8``, the indicator of ``X^2 + Y^2 <=
radius^2`` normalised to sum 1, then blurred by OpenCV's 3x3 Gaussian with ``sigma = alias sigma``
(separable 1-D kernel ``exp(-i^2 / (2 sigma^2))``, i = -1, 0, 1, normalised). Brightness uses the fact
that HSV -> RGB is linear in V at fixed hue and saturation: RGB is scaled by ``V' / V``, and a black pixel
(V = 0, saturation 0) becomes grey ``(V', V', V')``; this equals the rgb2hsv/hsv2rgb round trip up to
floating-point rounding.

What is *not* identical to the published CIFAR-10-C files: the random draws (a numpy ``PCG64`` generator
seeded from ``(seed, corruption, severity)`` instead of the global numpy state), so images differ pixel by
pixel while following the same distribution.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch

from ..errors import InputError

#: severity 1..5 constants (see the module docstring for the source)
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_NOISE = (500, 250, 100, 75, 50)
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)

SEVERITIES = (1, 2, 3, 4, 5)
_CHUNK = 1000  # images per generator call; fixed, so the output depends only on the seed


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + rng.normal(scale=c, size=x.shape), 0, 1)


def _shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.poisson(x * c) / c, 0, 1)


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The anti-aliased disk kernel of the authors' ``disk()`` (float64 ``[k, k]``, sums to 1), cropped to
    its non-zero support (which is exact: the crop only drops zero weights)."""
    if not 0 < radius <= 8:
        raise ValueError(f"defocus radius must be in (0, 8]; got {radius}")
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2.0 * alias_blur**2))
    g /= g.sum()
    padded = np.pad(disk, 1)  # zeros around: the disk never reaches the grid's border
    kernel = sum(g[i] * g[j] * padded[i : i + 17, j : j + 17] for i in range(3) for j in range(3))
    rows, cols = np.nonzero(kernel.any(axis=1))[0], np.nonzero(kernel.any(axis=0))[0]
    return kernel[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _defocus_blur(x: np.ndarray, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    kernel = defocus_kernel(*c)
    k, r = kernel.shape[0], kernel.shape[0] // 2
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")  # = OpenCV BORDER_REFLECT_101
    out = np.zeros_like(x)
    for i in range(k):  # a correlation, as cv2.filter2D computes (the kernel is symmetric anyway)
        for j in range(k):
            out += kernel[i, j] * padded[:, i : i + h, j : j + w]
    return np.clip(out, 0, 1)


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def _brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    v = x.max(axis=3, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    ratio = np.divide(x, v, out=np.ones_like(x), where=v > 0)  # x / V: exactly 1 on the max channel
    return np.clip(ratio * v_new, 0, 1)


_Op = Callable[[np.ndarray, object, np.random.Generator], np.ndarray]
CORRUPTIONS: dict[str, tuple[_Op, tuple]] = {
    "gaussian_noise": (_gaussian_noise, GAUSSIAN_NOISE),
    "shot_noise": (_shot_noise, SHOT_NOISE),
    "impulse_noise": (_impulse_noise, IMPULSE_NOISE),
    "defocus_blur": (_defocus_blur, DEFOCUS_BLUR),
    "contrast": (_contrast, CONTRAST),
    "brightness": (_brightness, BRIGHTNESS),
}


def available_corruptions() -> tuple[str, ...]:
    return tuple(CORRUPTIONS)


def check_corruption(corruption: str, severity: int) -> None:
    """Raise :class:`~focalcal.errors.InputError` (a ``ValueError``, listing the valid values) for an unknown
    corruption or a severity not in 1..5."""
    if corruption not in CORRUPTIONS:
        raise InputError(f"unknown corruption {corruption!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise InputError(f"severity {severity!r} is out of range; choose one of: 1, 2, 3, 4, 5")


def corrupt(images: torch.Tensor, corruption: str, severity: int, *, seed: int = 0) -> torch.Tensor:
    """Apply one CIFAR-10-C corruption at one severity.

    Args:
        images: uint8 ``[N, 3, H, W]`` (the constants were set for 32x32).
        corruption: one of :func:`available_corruptions`.
        severity: 1..5.
        seed: the same seed, images, corruption and severity always give the same output.

    Returns:
        uint8 ``[N, 3, H, W]``: ``floor(255 * corrupted)`` like the authors' ``np.uint8`` cast.

    Raises:
        ValueError: unknown corruption (lists the valid ones), severity outside 1..5, or images that are not
            uint8 ``[N, 3, H, W]``.
    """
    check_corruption(corruption, severity)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"corrupt expects uint8 [N, 3, H, W] images; got {images.dtype} {tuple(images.shape)}")
    op, constants = CORRUPTIONS[corruption]
    rng = np.random.default_rng([int(seed), zlib.crc32(corruption.encode()), int(severity)])
    hwc = images.permute(0, 2, 3, 1).numpy()
    out = np.empty(hwc.shape, dtype=np.uint8)
    for start in range(0, hwc.shape[0], _CHUNK):
        x = hwc[start : start + _CHUNK] / 255.0
        y = op(x, constants[severity - 1], rng) * 255
        out[start : start + _CHUNK] = np.clip(y, 0, 255).astype(np.uint8)  # truncates, as np.uint8 does
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
