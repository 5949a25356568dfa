"""Model registry: ``build_model(name, num_classes)``, ``available_models()``, ``last_linear(model)``."""

from .registry import (
    MODELS,
    available_models,
    build_model,
    describe_models,
    last_linear,
    model_label,
    register_model,
)

__all__ = [
    "MODELS",
    "available_models",
    "build_model",
    "describe_models",
    "last_linear",
    "model_label",
    "register_model",
]
