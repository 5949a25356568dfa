"""Model registry: ``build_model(name, num_classes)``, ``available_models()``, ``last_linear(model)``."""

from .registry import available_models, build_model, describe_models, last_linear

__all__ = ["available_models", "build_model", "describe_models", "last_linear"]
