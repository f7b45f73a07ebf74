"""``python -m rtml_retrain_worker``: archive the streams and retrain on request.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
then runs until SIGTERM/SIGINT, which finishes the in-flight batch, writes the
buffered events as a segment, commits, leaves the group and waits briefly for
a running training (a request it could not finish stays pending), exit 0.
With ``RTML_RETRAIN_WORKER_EXIT_WHEN_IDLE_S`` it also stops once the input is
idle and every request that can train has trained.
"""

from __future__ import annotations

import logging
import sys

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_retrain_worker import SERVICE_NAME
from rtml_retrain_worker.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)


def main() -> int:
    """Run the worker; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    from rtml_retrain_worker import service  # heavy imports (xgboost, mlflow) after validation

    logger.info("starting: model %s, group %s, archive %s", settings.model_name,
                settings.consumer_group, settings.archive_dir)
    run = service.run(settings, KafkaSettings(), MlflowSettings(),
                      max_idle_s=settings.exit_when_idle_s or None)
    logger.info("stopped: %d segments written, %d trainings (%s), %d request(s) pending",
                run.segments, len(run.trainings),
                ", ".join(f"{t.status.value} {t.version or '-'}" for t in run.trainings) or "-",
                run.pending)
    return 0


if __name__ == "__main__":
    sys.exit(main())
