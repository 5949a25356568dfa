"""Save a figure to one or more files (PNG, PDF, ...), creating folders."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def save_figure(
    fig: Figure, path: str | Path, *, formats: tuple[str, ...] = (), dpi: int = 120
) -> list[Path]:
    """Save ``fig`` to ``path`` and, for each extra format (e.g. ``("pdf",)``), beside it. Returns the paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path] + [path.with_suffix("." + ext) for ext in formats if "." + ext != path.suffix]
    for p in out:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    return out
