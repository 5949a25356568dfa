"""The standard CIFAR training pipeline, written the usual way, as a baseline for the engine.

torchvision-style per-sample PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
Normalize) through a DataLoader, float32, and FLSD-53 with gamma picked per sample in a Python loop with one
``.item()`` device sync per sample, as the paper's original code does. It is the speed baseline of
``benchmarks/train_throughput.py`` and ``benchmarks/gpu_check.py`` and the independent reference of the
correctness guard ``tests/engine/test_engine_vs_baseline.py``; the engine never uses it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class UInt8ImageDataset(Dataset):
    """Per-sample dataset over uint8 ``[N, 3, H, W]`` images, converted to PIL like torchvision's CIFAR10."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as CIFAR10.data
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(np.asarray(self.images[i]))), self.labels[i]


def standard_transform(mean, std, augment: bool = True):
    steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


def standard_loader(images, labels, mean, std, *, batch_size=128, augment=True, num_workers=2, sampler=None):
    ds = UInt8ImageDataset(images, labels, standard_transform(mean, std, augment))
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def flsd53_loop_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FLSD-53, mean over the batch, with the gamma of each sample chosen in a Python loop (one sync each)."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    p = logp.exp()
    gammas = []
    for i in range(p.shape[0]):
        pi = p[i].item()
        gammas.append(5.0 if pi < 0.2 else 3.0)
    gamma = torch.tensor(gammas, device=logits.device)
    return (-((1 - p) ** gamma) * logp).mean()


def train_steps(model, loader, *, lr=0.1, max_steps=None, grad_clip=2.0, optimizer=None):
    """Train with SGD(0.9, wd 5e-4) over ``loader``; returns the per-batch loss values."""
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    losses = []
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        loss = flsd53_loop_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        losses.append(loss.item())
    return losses
