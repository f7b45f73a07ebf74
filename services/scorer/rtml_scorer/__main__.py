"""``python -m rtml_scorer``: run the champion / shadow scorer.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then scores until SIGTERM/SIGINT, which finishes the in-flight batch,
commits, leaves the consumer group, checkpoints online models and exits 0.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_scorer import SERVICE_NAME
from rtml_scorer.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the scorer; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    from rtml_scorer import service  # heavy imports (xgboost, river, mlflow) after validation

    logger.info("starting: model %s, group %s", settings.model_name, settings.consumer_group)
    run = service.run(settings, KafkaSettings(), MlflowSettings(),
                      max_idle_s=settings.exit_when_idle_s or None)
    logger.info("stopped: %d predictions, %d shadow scores, %d dead-lettered, %d labels "
                "learned, checkpoints %s, reloads %d, detached %s", run.predictions,
                run.shadow_scores, run.dead_lettered, run.labels_learned, run.checkpoints,
                run.reloads, run.detached)
    return 0


if __name__ == "__main__":
    sys.exit(main())
