"""Where model versions live: the contract (``base``) and one folder per backend."""

from rtml_models.registry.base import (
    ModelRegistry,
    ModelVersion,
    NotFoundError,
    RegisteredModel,
    RegistryError,
)

__all__ = ["ModelRegistry", "ModelVersion", "NotFoundError", "RegisteredModel", "RegistryError"]
