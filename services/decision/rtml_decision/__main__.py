"""``python -m rtml_decision``: serve the decision API.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry, loads the rule sets (exit 1 if a configured file is invalid:
serving with rules nobody validated is worse than not serving), builds the
engine (a missing model or Redis only degrades answers) and serves with
uvicorn until SIGTERM/SIGINT, which finishes in-flight requests, stops the
background threads and flushes the producer before exiting 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import uvicorn

from rtml_common.config import (
    CassandraSettings,
    KafkaSettings,
    MlflowSettings,
    RedisSettings,
    TelemetrySettings,
)
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_decision import SERVICE_NAME
from rtml_decision.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)

#: MLflow's client retries a dead server for minutes by default; start-up and
#: reloads should fail within seconds instead (the watcher retries later).
MLFLOW_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                          "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def main() -> int:
    """Serve the API; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if settings.workers > 1:
        return serve_workers(settings)
    init_telemetry(SERVICE_NAME, TelemetrySettings())

    from rtml_decision.rules import RuleSetError
    from rtml_decision.wiring import build_service

    try:
        service = build_service(settings, KafkaSettings(), RedisSettings(), MlflowSettings(),
                                CassandraSettings())
    except (RuleSetError, OSError) as error:
        logger.error("cannot load the rule sets: %s", error)
        return 1
    logger.info("serving on %s:%d (model %s: %s, rules %s %s, admin %s)", settings.http_host,
                settings.http_port, settings.model_name,
                service.engine.serving.current.describe() or "none yet",
                service.rules.current.primary.name, service.rules.current.primary.version,
                "disabled" if settings.admin_api_key is None else "needs X-API-Key")
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the
    # signal to the handler it found; a no-op one lets the lifespan flush and exit 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.run(service.app(), host=settings.http_host, port=settings.http_port,
                log_config=None, access_log=False)
    logger.info("stopped")
    return 0


def serve_workers(settings: Settings) -> int:
    """Several uvicorn worker processes on one port, each building the whole service.

    Each worker runs :func:`rtml_decision.wiring.app_from_environment`; the
    rule sets are validated here first so a bad file exits 1 instead of
    crash-looping workers.
    """
    from rtml_decision.active_rules import ActiveRules
    from rtml_decision.rules import RuleSetError

    init_telemetry(SERVICE_NAME, TelemetrySettings(metrics_port=0))  # logging only
    try:
        ActiveRules.from_paths(settings.rules_path, settings.fallback_rules_path)
    except (RuleSetError, OSError) as error:
        logger.error("cannot load the rule sets: %s", error)
        return 1
    logger.info("serving on %s:%d with %d workers", settings.http_host, settings.http_port,
                settings.workers)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.run("rtml_decision.wiring:app_from_environment", factory=True,
                workers=settings.workers, host=settings.http_host, port=settings.http_port,
                log_config=None, access_log=False)
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
