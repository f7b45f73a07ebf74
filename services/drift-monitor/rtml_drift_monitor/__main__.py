"""``python -m rtml_drift_monitor``: run the drift monitor.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then watches ``features`` and ``predictions`` until SIGTERM/SIGINT, which
finishes the in-flight batch, flushes, commits and exits 0.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_drift_monitor import SERVICE_NAME
from rtml_drift_monitor.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the drift monitor; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    from rtml_drift_monitor import service  # heavy imports (mlflow) after validation

    logger.info("starting: model %s, group %s, windows %d s (sliding %d s), policy %s",
                settings.model_name, settings.consumer_group, settings.window_s,
                settings.sliding_window_s, settings.retrain_policy.value)
    run = service.run(settings, KafkaSettings(), MlflowSettings(),
                      max_idle_s=settings.exit_when_idle_s or None)
    logger.info("stopped: %d windows closed, %d alerts, %d retrain requests, reference %s, "
                "events %s", run.windows_closed, run.alerts, run.retrain_requests,
                run.reference_version, run.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
