"""Batch augmentation on the training device: random crop with zero padding and horizontal flip.

Equivalent in distribution to torchvision's per-sample ``RandomCrop(32, padding=4)`` (zero fill) and
``RandomHorizontalFlip()``, but done on a whole uint8 batch at once with no per-sample Python work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    images: torch.Tensor, padding: int = 4, *, generator: torch.Generator | None = None, flip: bool = True
) -> torch.Tensor:
    """Randomly crop (after zero padding) and flip a batch.

    Args:
        images: ``[B, C, H, W]`` tensor of any dtype (uint8 in the engine), on any device.
        padding: pixels of zero padding on each side; every crop offset in ``0..2*padding`` is equally likely.
        generator: a CPU generator for the random offsets and flips (reproducible on every device).
        flip: also flip each image horizontally with probability 1/2.

    Returns:
        a new ``[B, C, H, W]`` tensor of the same dtype and device.
    """
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(images.device)
    flips = torch.rand(b, generator=generator).to(images.device) < 0.5
    padded = F.pad(images, (padding,) * 4) if padding else images
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # [B, H]
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # [B, W]
    if flip:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    chan = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
