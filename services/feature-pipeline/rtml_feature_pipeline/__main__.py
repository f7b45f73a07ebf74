"""``python -m rtml_feature_pipeline``: run the streaming feature worker.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then runs the configured engine until SIGTERM/SIGINT, which finishes the
in-flight batch, checkpoints and exits 0.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, RedisSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_feature_pipeline import SERVICE_NAME
from rtml_feature_pipeline.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings
from rtml_feature_pipeline.generic_path import UnservableFeatureSet

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the worker; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    if settings.engine == "faust":
        from rtml_feature_pipeline import faust_engine as engine
    else:
        from rtml_feature_pipeline import kafka_engine as engine  # type: ignore[no-redef]
    logger.info("starting %s engine for feature set %s", settings.engine, settings.feature_set)
    try:
        run = engine.run(settings, KafkaSettings(), RedisSettings(),
                         max_idle_s=settings.exit_when_idle_s or None)
    except UnservableFeatureSet as error:  # raised at start, before anything is consumed
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logger.info("stopped: %d events applied, %d vectors, %d late, resumed=%s",
                run.events_applied, run.vectors_published, run.late_events,
                run.resumed_from_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
