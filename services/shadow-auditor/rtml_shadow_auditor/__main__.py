"""``python -m rtml_shadow_auditor``: run the shadow auditor.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then consumes, evaluates and serves its API until SIGTERM/SIGINT (or
``exit_when_idle_s`` without input), which finishes the in-flight batch,
leaves the group, writes a last report and exits 0; 1 if the consumer failed.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_shadow_auditor import SERVICE_NAME
from rtml_shadow_auditor.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the auditor; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    from rtml_shadow_auditor import service  # heavy imports (sklearn, matplotlib) after validation

    logger.info("starting: model %s, group %s, state %s, API %s:%d, auto_promote %s",
                settings.model_name, settings.consumer_group, settings.state_db,
                settings.http_host, settings.http_port, settings.auto_promote)
    run = service.run(settings, KafkaSettings())
    logger.info("stopped: %d records applied, %d dead-lettered, %d evaluations, errors %s",
                run.applied, run.loop.dead_lettered, run.evaluations, run.errors)
    return 1 if any("consumer" in e for e in run.errors) else 0


if __name__ == "__main__":
    sys.exit(main())
