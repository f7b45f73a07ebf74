"""rtml drift-monitor: feature and score drift against the champion's training data (issue #7).

Run it with ``python -m rtml_drift_monitor``. Settings:
:mod:`rtml_drift_monitor.config`; the pure detector (windows, divergences,
alerts) is :mod:`rtml_drift_monitor.detector`, the Kafka wiring
:mod:`rtml_drift_monitor.service`. Design: ``docs/drift-monitor.md``.
"""

SERVICE_NAME = "rtml-drift-monitor"
ISSUE = 7
