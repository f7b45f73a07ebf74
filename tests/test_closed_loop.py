"""The closed retraining loop, end to end, every service a separate process.

A replay in which card testing (a fraud pattern the champion never saw)
starts at day 60 must lead, in this order and each step caused by the one
before, to: a drift alert on the first day window after the change → a
retrain request naming that alert → a retrained challenger in shadow → the
shadow auditor graduating it once its labels matured → the champion alias
on the challenger. See :mod:`rtml_cli.loop`.
"""

from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from rtml_cli.loop.run import LoopEnvironment, run_loop
from rtml_cli.loop.scenario import LoopScenario
from rtml_common.events import DriftAlert, ModelEvent, RetrainRequest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


def test_new_fraud_pattern_is_detected_retrained_shadowed_and_graduated(
        fresh_kafka_broker: Any, fresh_redis_server: Any, mlflow_server: Any,
        tmp_path: Path) -> None:
    scenario = LoopScenario()
    env = LoopEnvironment(bootstrap_servers=fresh_kafka_broker.bootstrap_servers,
                          redis_url=fresh_redis_server.url, tracking_uri=mlflow_server.tracking_uri,
                          work_dir=tmp_path, model_name=f"loop-{uuid.uuid4().hex[:8]}")
    result = run_loop(env, scenario, Console(file=sys.stderr, width=120))

    names = [m.name for m in result.milestones]
    assert names == ["drift alert", "retrain request", "challenger in shadow",
                     "champion changed"], names
    happened = [m.entry.happened_at for m in result.milestones]
    assert happened == sorted(happened), [f"{m.name} {m.entry.happened_at}"
                                          for m in result.milestones]

    alert, request, shadow, graduated = (m.entry.event for m in result.milestones)
    assert isinstance(alert, DriftAlert) and isinstance(request, RetrainRequest)
    assert isinstance(shadow, ModelEvent) and isinstance(graduated, ModelEvent)
    # Within one window: the first alert is on the window holding the first card-testing day.
    drift_start = scenario.day_start(scenario.drift_day)
    assert alert.window_start <= drift_start < alert.window_end, alert
    assert alert.window_end - drift_start <= timedelta(days=1), alert
    assert alert.model_version == result.champion_before
    # Each step caused by the one before.
    assert alert.alert_id in request.alert_ids
    assert shadow.version not in (None, result.champion_before)
    assert graduated.version == shadow.version == result.challenger == result.champion_after
    assert graduated.actor != "rtml loop"  # moved by the auditor, not by the orchestrator
    reports = list((tmp_path / "reports").glob("*.html"))
    assert reports, "the auditor wrote no report"
