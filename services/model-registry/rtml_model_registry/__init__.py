"""rtml model-registry: the model registry API over MLflow (issue #4).

Lists models, versions and their lineage, and moves aliases (champion,
challenger, shadows) only after a validation gate, recording every change
in an append-only, hash-chained audit log and announcing it on
``model-events``. Run it with ``python -m rtml_model_registry``; settings in
:mod:`rtml_model_registry.config`, endpoints in :mod:`rtml_model_registry.api`.
"""

SERVICE_NAME = "rtml-model-registry"
ISSUE = 4
