"""rtml consistency-monitor: served decision features against the batch engine (issue #16).

Run it with ``python -m rtml_consistency_monitor``. Settings:
:mod:`rtml_consistency_monitor.config`; the pure parts are
:mod:`~rtml_consistency_monitor.sampling` (which entities),
:mod:`~rtml_consistency_monitor.watermark` (when a decision's data is in),
:mod:`~rtml_consistency_monitor.history` (the sampled entities' events),
:mod:`~rtml_consistency_monitor.check` (batch re-computation, lag classes,
comparison); :mod:`~rtml_consistency_monitor.monitor` is the consumer
handler and :mod:`~rtml_consistency_monitor.service` the Kafka wiring.
"""

SERVICE_NAME = "rtml-consistency-monitor"
ISSUE = 16
