"""rtml drift-monitor: distribution drift monitoring (issue #7; not implemented yet).

Run it with ``python -m rtml_drift_monitor``.
Settings: :mod:`rtml_drift_monitor.config`.
"""

SERVICE_NAME = "rtml-drift-monitor"
ISSUE = 7
