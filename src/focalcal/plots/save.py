"""Save a figure to one or more files (PNG, PDF, ...), atomically, creating folders."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from ..atomic import atomic_write_bytes


def save_figure(fig: Figure, path: str | Path, *, formats: tuple[str, ...] = (), dpi: int = 120) -> list[Path]:
    """Save ``fig`` to ``path`` and, for each extra format (e.g. ``("pdf",)``), beside it. Returns the paths.

    Each file is written atomically (a crash never leaves a torn image).
    """
    path = Path(path)
    out = [path] + [path.with_suffix("." + ext) for ext in formats if "." + ext != path.suffix]
    for p in out:
        buf = io.BytesIO()
        fig.savefig(buf, format=p.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
        data = buf.getvalue()
        atomic_write_bytes(p, lambda f, data=data: f.write(data))
    return out
