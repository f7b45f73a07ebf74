"""rtml model-registry: model registry API over MLflow (issue #4; not implemented yet).

Run it with ``python -m rtml_model_registry``.
Settings: :mod:`rtml_model_registry.config`.
"""

SERVICE_NAME = "rtml-model-registry"
ISSUE = 4
