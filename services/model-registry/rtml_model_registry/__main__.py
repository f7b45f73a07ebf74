"""``python -m rtml_model_registry``: run the registry API.

Validates the configuration first (exit 2 naming a bad variable), starts
telemetry (Prometheus endpoint when ``RTML_TELEMETRY_METRICS_PORT`` is set),
opens the audit log, then serves the API with uvicorn until SIGTERM/SIGINT,
which finishes in-flight requests, stops the re-publisher and flushes the
producer before exiting 0. Exit 1: the audit log can't be opened.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys

import uvicorn

from rtml_common.config import KafkaSettings, MlflowSettings, TelemetrySettings
from rtml_common.service_config import EXIT_BAD_CONFIG, ConfigError, load_settings
from rtml_common.telemetry import init_telemetry
from rtml_model_registry import SERVICE_NAME
from rtml_model_registry.config import ENV_PREFIX, SHARED_SETTINGS_USED, Settings

logger = logging.getLogger(SERVICE_NAME)

#: MLflow's client retries a dead server for minutes by default; an API call
#: should fail within seconds instead (502). Set only when not configured.
MLFLOW_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                          "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def main() -> int:
    """Serve the API; return the process exit code."""
    try:
        settings, _shared = load_settings(Settings, SHARED_SETTINGS_USED, ENV_PREFIX)
    except ConfigError as error:
        print(f"{SERVICE_NAME}: invalid configuration: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    kafka, mlflow_settings = KafkaSettings(), MlflowSettings()
    init_telemetry(SERVICE_NAME, TelemetrySettings())
    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)

    from rtml_model_registry.api import create_app
    from rtml_model_registry.audit.sqlite import SqliteAuditLog
    from rtml_model_registry.events import KafkaEventPublisher
    from rtml_model_registry.gate import SubprocessGate
    from rtml_models.registry.mlflow import MlflowRegistry

    try:
        audit = SqliteAuditLog(settings.audit_db)
    except (OSError, sqlite3.Error) as error:
        logger.error("cannot open the audit log %s: %s", settings.audit_db, error)
        return 1
    registry = MlflowRegistry(mlflow_settings.tracking_uri)
    gate = SubprocessGate.from_settings(settings, registry, mlflow_settings.tracking_uri)
    publisher = KafkaEventPublisher(kafka, settings.event_timeout_s)
    app = create_app(settings, registry, audit, publisher, gate)
    logger.info("serving on %s:%d (MLflow %s, audit log %s, %s)", settings.http_host,
                settings.http_port, mlflow_settings.tracking_uri, settings.audit_db,
                "read-only" if settings.api_key is None else "writes need X-API-Key")
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the
    # signal to the handler it found; a no-op one lets us flush and exit 0 instead.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    try:
        uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None)
    finally:
        publisher.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
