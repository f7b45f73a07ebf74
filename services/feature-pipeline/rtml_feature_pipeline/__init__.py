"""rtml feature-pipeline: streaming features into Redis and the ``features`` topic (issue #3).

Run it with ``python -m rtml_feature_pipeline``.
Settings: :mod:`rtml_feature_pipeline.config`.
"""

SERVICE_NAME = "rtml-feature-pipeline"
ISSUE = 3
