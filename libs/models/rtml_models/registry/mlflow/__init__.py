"""The registry backend on an MLflow tracking server's model registry."""

from rtml_models.registry.mlflow.store import MlflowRegistry

__all__ = ["MlflowRegistry"]
