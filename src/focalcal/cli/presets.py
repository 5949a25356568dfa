"""Experiment presets: YAML files of :class:`~focalcal.engine.TrainConfig` keys."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("focalcal.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Read a preset by name (see :func:`available_presets`) or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    elif name_or_path in available_presets():
        text = resources.files("focalcal.presets").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"unknown preset {name_or_path!r}: not a YAML file; presets: {', '.join(available_presets())}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"preset {name_or_path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"preset {name_or_path!r} must be a YAML mapping of config keys")
    return data
