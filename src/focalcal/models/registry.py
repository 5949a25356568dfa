"""A registry of classifiers by name.

Every registered model exposes its final ``nn.Linear`` classifier under a known attribute, recorded in the
registry, so analyses (e.g. the paper's Fig. 5, last-layer weight norm) never guess module names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .cifar_resnet import BottleneckResNet, ThinResNet
from .wide_resnet import WideResNet


@dataclass(frozen=True)
class ModelSpec:
    factory: Callable[[int], nn.Module]
    description: str
    classifier_attr: str = "fc"


def _thin(depth: int, num_classes: int) -> nn.Module:
    return ThinResNet(depth, num_classes)


_REGISTRY: dict[str, ModelSpec] = {
    **{
        f"resnet{d}": ModelSpec(
            functools.partial(_thin, d),
            f"He et al.'s thin CIFAR ResNet-{d} (16-32-64 channels); CPU-friendly",
        )
        for d in (20, 32, 44, 56, 110)
    },
    "resnet50": ModelSpec(
        lambda k: BottleneckResNet((3, 4, 6, 3), k),
        "the paper's CIFAR ResNet-50 (bottleneck [3,4,6,3], 64-512 channels, 3x3 stem, no max-pool)",
    ),
    "resnet110_paper": ModelSpec(
        lambda k: BottleneckResNet((3, 4, 26, 3), k),
        "the paper's 'ResNet-110' (bottleneck [3,4,26,3], 64-512 channels), not He et al.'s thin one",
    ),
    "wrn26_10": ModelSpec(lambda k: WideResNet(26, 10, k), "Wide-ResNet-26-10 (Zagoruyko & Komodakis)"),
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def describe_models() -> dict[str, str]:
    """Name -> one-line description, for ``focalcal --help`` style listings."""
    return {name: spec.description for name, spec in sorted(_REGISTRY.items())}


def _spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(available_models())}") from None


def build_model(name: str, num_classes: int) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a registry name, see :func:`available_models`.
        num_classes: width K of the output logits (>= 2).

    Returns:
        ``nn.Module`` mapping float images ``[N, 3, H, W]`` to logits ``[N, K]``. The registry name is
        stored on the model as ``model.focalcal_name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or ``num_classes < 2``.
    """
    spec = _spec(name)
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    model = spec.factory(int(num_classes))
    model.focalcal_name = name
    return model


def last_linear(model: nn.Module) -> nn.Linear:
    """The final linear classifier of a model built by :func:`build_model` (also inside DDP/compile wrappers)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    name = getattr(inner, "focalcal_name", None)
    if name is None:
        raise ValueError("model was not built by focalcal.models.build_model; cannot locate its classifier")
    layer = getattr(inner, _spec(name).classifier_attr)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"model {name!r}: attribute {_spec(name).classifier_attr!r} is not nn.Linear")
    return layer
