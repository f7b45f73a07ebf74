"""rtml retrain-worker: closes the retraining loop.

It keeps an offline store of its own (``transactions`` and ``labels``
archived to Parquet segments), and on a ``retrain-requests`` event trains a
challenger on recent, point-in-time data with :mod:`rtml_training`, registers
it with lineage tags and asks the model-registry service to put it in shadow
(the ``challenger`` alias). Run it with ``python -m rtml_retrain_worker``;
settings: :mod:`rtml_retrain_worker.config`; design: docs/retrain-worker.md.
"""

SERVICE_NAME = "rtml-retrain-worker"
#: Who the registry's audit log names as having set the challenger alias.
ACTOR = "rtml-retrain-worker"
#: The issue this service was built for (the retraining loop, with the drift monitor).
ISSUE = 7
