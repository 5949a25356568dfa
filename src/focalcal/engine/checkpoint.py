"""Atomic checkpoint files: a crash never leaves a half-written checkpoint behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)  # no pickled code is run


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (indented, UTF-8)."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data))
