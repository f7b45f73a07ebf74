"""``rtml up``'s pure parts: the restart backoff, the services' environment, the spec file.

No servers and no sleeping: the backoff policy takes the time as an argument,
and the catalog is a function of the stack's client environment and the
chosen ports.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from rtml_cli.platform.backoff import BackoffPolicy, RestartTracker
from rtml_cli.platform.catalog import (
    SERVICE_NAMES,
    STOP_TIERS,
    SUPERVISOR_JOB,
    TRAFFIC,
    PlatformPorts,
    Secrets,
    TrafficOptions,
    build_catalog,
    metric_port_names,
    scrape_jobs,
)
from rtml_cli.platform.champion import choose_split
from rtml_cli.platform.files import PlatformError, PlatformPaths, PlatformSpec

#: The job names `rtml top` and the dashboards expect, exactly.
EXPECTED_JOBS = {"feature-pipeline", "scorer", "decision-api", "model-registry",
                 "shadow-auditor", "drift-monitor", "retrain-worker", "decision-log-writer",
                 "consistency-monitor"}

STACK_ENV = {
    "RTML_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "RTML_REDIS_URL": "redis://127.0.0.1:16379/0",
    "RTML_MLFLOW_TRACKING_URI": "http://127.0.0.1:15000",
    "RTML_CASSANDRA_CONTACT_POINTS": "127.0.0.1",
    "RTML_CASSANDRA_PORT": "19042",
    "RTML_CASSANDRA_PROTOCOL_VERSION": "1",
    "RTML_CASSANDRA_KEYSPACE": "rtml",
}
SECRETS = Secrets("registry-key-" + "r" * 20, "admin-key-" + "a" * 20)


def _ports() -> PlatformPorts:
    names = metric_port_names()
    return PlatformPorts(api=18080, registry=18000, auditor=18005, supervisor_metrics=19100,
                         metrics={name: 19101 + i for i, name in enumerate(names)})


# -- backoff ----------------------------------------------------------------------


def test_backoff_doubles_from_one_second_up_to_thirty() -> None:
    policy = BackoffPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.delay(10_000) == 30  # no float overflow on a long crash loop


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"factor": 0.5},
                                    {"initial_s": 5, "max_s": 1}, {"reset_after_s": 0}])
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        BackoffPolicy(**kwargs)


def test_delay_needs_a_failure() -> None:
    with pytest.raises(ValueError, match="failures must be >= 1"):
        BackoffPolicy().delay(0)


def test_consecutive_crashes_back_off_further() -> None:
    tracker = RestartTracker(BackoffPolicy())
    # Crashing at start (never healthy): 1, 2, 4 s after each exit.
    assert tracker.on_exit(100.0) == 101.0
    assert tracker.on_exit(101.5) == 103.5
    assert tracker.on_exit(104.0) == 108.0
    assert tracker.failures == 3


def test_a_minute_healthy_resets_the_backoff() -> None:
    tracker = RestartTracker(BackoffPolicy())
    for when in (0.0, 2.0, 5.0):
        tracker.on_exit(when)
    tracker.on_healthy(10.0)
    tracker.on_healthy(69.0)  # 59 s healthy: not yet forgiven
    assert tracker.failures == 3
    tracker.on_healthy(70.0)
    assert tracker.failures == 0
    assert tracker.on_exit(200.0) == 201.0  # back to the first delay


def test_a_crash_before_a_minute_healthy_keeps_doubling() -> None:
    tracker = RestartTracker(BackoffPolicy())
    tracker.on_exit(0.0)
    tracker.on_healthy(1.0)
    assert tracker.on_exit(30.0) == 32.0  # second consecutive failure: 2 s


def test_unhealthy_ends_the_healthy_spell() -> None:
    tracker = RestartTracker(BackoffPolicy())
    tracker.on_exit(0.0)
    tracker.on_healthy(1.0)
    tracker.on_unhealthy()
    tracker.on_healthy(50.0)  # healthy again, the spell starts over
    tracker.on_healthy(100.0)
    assert tracker.failures == 1
    tracker.on_healthy(110.0)
    assert tracker.failures == 0


def test_the_exit_itself_counts_the_healthy_spell() -> None:
    tracker = RestartTracker(BackoffPolicy())
    tracker.on_exit(0.0)
    tracker.on_exit(1.0)
    tracker.on_healthy(3.0)  # probed once, then crashed two minutes later
    assert tracker.on_exit(123.0) == 124.0


# -- catalog: the environment each service gets -------------------------------------


def test_every_service_is_declared_once_with_the_expected_job_names() -> None:
    services = build_catalog(_ports(), STACK_ENV, Path("/state"), SECRETS)
    names = [s.name for s in services]
    assert names == list(SERVICE_NAMES)
    assert set(scrape_jobs(services)) == EXPECTED_JOBS
    assert SUPERVISOR_JOB == "platform-supervisor"
    # Every service has its own Prometheus port, none shared with an API port.
    metrics = [s.metrics_port for s in services]
    assert len(set(metrics)) == len(metrics)
    assert not {18080, 18000, 18005, 19100} & set(metrics)
    # Every service appears in exactly one stop tier.
    tiered = [name for tier in STOP_TIERS for name in tier]
    assert sorted(tiered) == sorted([*SERVICE_NAMES, TRAFFIC])


def test_every_service_reaches_the_stack_and_exports_metrics() -> None:
    for service in build_catalog(_ports(), STACK_ENV, Path("/state"), SECRETS):
        for name, value in STACK_ENV.items():
            assert service.env[name] == value, (service.name, name)
        assert service.env["RTML_TELEMETRY_METRICS_PORT"] == str(service.metrics_port)
        assert service.env["RTML_KAFKA_CLIENT_ID"] == service.name
        assert service.command[:2] == [sys.executable, "-m"]


def test_neighbours_are_wired_to_each_other() -> None:
    state = Path("/state")
    services = {s.name: s for s in build_catalog(_ports(), STACK_ENV, state, SECRETS)}
    registry = services["model-registry"]
    assert registry.env["RTML_MODEL_REGISTRY_HTTP_PORT"] == "18000"
    assert registry.env["RTML_MODEL_REGISTRY_API_KEY"] == SECRETS.registry_api_key
    assert registry.env["RTML_MODEL_REGISTRY_AUDIT_DB"] == str(
        state / "model-registry" / "audit.sqlite")
    assert registry.health_url == "http://127.0.0.1:18000/healthz"
    for name, prefix in (("retrain-worker", "RTML_RETRAIN_WORKER_"),
                         ("shadow-auditor", "RTML_SHADOW_AUDITOR_")):
        env = services[name].env
        assert env[prefix + "REGISTRY_URL"] == "http://127.0.0.1:18000"
        assert env[prefix + "REGISTRY_API_KEY"] == SECRETS.registry_api_key
        assert env[prefix + "MODEL_NAME"] == "fraud-detector"
    api = services["decision-api"]
    assert api.module == "rtml_decision"
    assert api.env["RTML_DECISION_HTTP_PORT"] == "18080"
    # The log writer runs as its own supervised service, not inside the API as well.
    assert api.env["RTML_DECISION_LOG_WRITER"] == "false"
    assert api.health_url == "http://127.0.0.1:18080/healthz"
    assert services["decision-log-writer"].module == "rtml_decision.log_writer"
    assert services["shadow-auditor"].health_url == "http://127.0.0.1:18005/healthz"
    scorer = services["scorer"]
    assert scorer.health == "metrics"
    assert scorer.health_url == f"http://127.0.0.1:{scorer.metrics_port}/metrics"
    # State kept on disk lives in the state directory, not in the current directory.
    assert services["drift-monitor"].env["RTML_DRIFT_MONITOR_STATE_DIR"].startswith("/state/")
    assert services["retrain-worker"].env["RTML_RETRAIN_WORKER_ARCHIVE_DIR"].startswith(
        "/state/")


def test_traffic_source_is_added_only_when_asked_for() -> None:
    data = Path("/data/sim")
    services = build_catalog(_ports(), STACK_ENV, Path("/state"), SECRETS,
                             TrafficOptions(rate=50, speed=3600, data=data))
    traffic = services[-1]
    assert traffic.name == TRAFFIC and traffic.module == "rtml_cli.traffic"
    assert traffic.args == ["--api-url", "http://127.0.0.1:18080", "--bootstrap-servers",
                            "127.0.0.1:19092", "--rate", "50", "--speed", "3600",
                            "--event-times", "now", "--start-day", "0", "--data", str(data)]
    continuing = build_catalog(_ports(), STACK_ENV, Path("/state"), SECRETS, TrafficOptions(
        rate=50, speed=3600, data=data, event_times="data", start_day=16))[-1]
    assert continuing.args[-5:-2] == ["data", "--start-day", "16"]
    assert traffic.health == "alive" and traffic.health_url is None
    assert traffic.job is None and traffic.metrics_port is None  # it exports no metrics
    assert traffic.env["RTML_TELEMETRY_METRICS_PORT"] == "0"
    assert TRAFFIC not in [s.name for s in build_catalog(_ports(), STACK_ENV, Path("/s"),
                                                         SECRETS)]


@pytest.mark.parametrize(("rate", "speed", "message"), [(0, 1, "rate must be > 0"),
                                                        (5, -1, "speed must be > 0")])
def test_traffic_options_are_checked(rate: float, speed: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficOptions(rate=rate, speed=speed, data=Path("/d"))
    with pytest.raises(ValueError, match="event times must be now or data"):
        TrafficOptions(rate=5, speed=1, data=Path("/d"), event_times="tomorrow")
    with pytest.raises(ValueError, match="start day must be >= 0"):
        TrafficOptions(rate=5, speed=1, data=Path("/d"), start_day=-1)


# -- spec file --------------------------------------------------------------------


def test_spec_round_trips_and_keeps_its_keys_private(tmp_path: Path) -> None:
    paths = PlatformPaths(tmp_path)
    ports = _ports()
    spec = PlatformSpec(str(tmp_path), ports,
                        build_catalog(ports, STACK_ENV, tmp_path, SECRETS),
                        stack_started=["kafka", "redis"], prometheus=True,
                        supervisor={"pid": 42, "start_marker": "m", "program": "python"})
    spec.save(paths.spec)
    assert stat.S_IMODE(paths.spec.stat().st_mode) == 0o600
    loaded = PlatformSpec.load(paths.spec)
    assert loaded.ports == ports
    assert loaded.services == spec.services
    assert loaded.stack_started == ["kafka", "redis"]
    assert loaded.prometheus and loaded.supervisor["pid"] == 42


def test_a_spec_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(PlatformError, match="version 99"):
        PlatformSpec.load(path)


# -- the champion's split ------------------------------------------------------------


def test_the_demo_data_set_gets_the_protocol_split() -> None:
    from rtml_training.split import SplitConfig

    manifest = {"config": {"start_date": "2018-04-01", "n_days": 183}}
    assert choose_split(manifest) == SplitConfig()


def test_a_short_data_set_trains_on_its_last_21_days() -> None:
    from datetime import date

    split = choose_split({"config": {"start_date": "2018-04-01", "n_days": 30}})
    assert split.train_start == date(2018, 4, 10)
    assert split.test_end == date(2018, 5, 1)  # the day after the last simulated day
    with pytest.raises(PlatformError, match="at least 21"):
        choose_split({"config": {"start_date": "2018-04-01", "n_days": 20}})
