"""The closed retraining loop, run end to end: ``rtml loop`` and its test.

A replay in which a new fraud pattern (card testing) starts mid-stream goes
through every service as separate processes — feature pipeline, scorer,
drift monitor, retrain worker, shadow auditor, model registry — and the run
records, in order and with timestamps, the drift alert, the retrain request,
the challenger entering shadow and the champion changing.

* :mod:`~rtml_cli.loop.scenario` — the simulated data and the dates that matter.
* :mod:`~rtml_cli.loop.timeline` — what happened, read from the topics.
* :mod:`~rtml_cli.loop.run` — start everything, replay, wait, stop.
"""
