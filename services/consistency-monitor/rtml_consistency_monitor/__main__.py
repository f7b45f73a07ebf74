"""``python -m rtml_consistency_monitor``: run the consistency monitor.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then consumes ``transactions``, ``labels`` and ``decisions`` until
SIGTERM/SIGINT, which finishes the in-flight batch, commits and exits 0.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_consistency_monitor import SERVICE_NAME
from rtml_consistency_monitor.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the consistency monitor; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    from rtml_consistency_monitor import service  # pandas and the engine after validation

    logger.info("starting: feature set %s, sample rate %g, group %s, lateness %d s",
                settings.feature_set, settings.sample_rate, settings.consumer_group,
                settings.allowed_lateness_s)
    run = service.run(settings, KafkaSettings(), max_idle_s=settings.exit_when_idle_s or None)
    logger.info("stopped: %d feature values checked, %d mismatches, decisions %s",
                run.checked_values, run.mismatches, run.outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
