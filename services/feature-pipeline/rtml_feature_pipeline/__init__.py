"""rtml feature-pipeline: streaming feature computation (issue #3; not implemented yet).

Run it with ``python -m rtml_feature_pipeline``.
Settings: :mod:`rtml_feature_pipeline.config`.
"""

SERVICE_NAME = "rtml-feature-pipeline"
ISSUE = 3
