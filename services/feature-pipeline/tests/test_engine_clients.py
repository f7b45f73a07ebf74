"""An engine run closes its Kafka clients: none reconnects after the broker stops.

The engines' output producer used to stay open after ``run`` returned, so a
benchmark or a test that stopped its broker next printed dozens of
``FAIL|rtml-producer#producer-N| ... Connection refused`` lines.
"""

from __future__ import annotations

from typing import Any

import pytest

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import EventProducer
from rtml_feature_pipeline import faust_engine, kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_localstack.client_logs import clients_failing_after_stop

pytestmark = pytest.mark.integration

EVENTS = 20


@pytest.mark.parametrize("engine", [kafka_engine, faust_engine], ids=["kafka", "faust"])
def test_an_engine_run_leaves_no_kafka_client_open(
        engine: Any, fresh_kafka_broker: Any, fresh_redis_server: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    bootstrap = fresh_kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, replication_factor=1)
    kafka = KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=6000,
                          client_id="engine")
    control = EventProducer(KafkaSettings(bootstrap_servers=bootstrap, client_id="control"))
    try:
        for i in range(EVENTS):
            control.send(Transaction(transaction_id=f"t{i}", customer_id=f"c{i % 3}",
                                     terminal_id="t1", amount=10.0 + i,
                                     event_time=f"2018-04-01T14:00:{i:02d}Z"))
        control.flush()

        run = engine.run(Settings(consumer_group=f"clients-{engine.__name__}"), kafka,
                         RedisSettings(url=fresh_redis_server.url), max_idle_s=1.0,
                         install_signal_handlers=False)
        assert run.events_applied == EVENTS
        assert run.vectors_published == EVENTS  # its producer did connect and deliver

        # ``control`` is still open: it must complain; the engine's clients must not.
        assert clients_failing_after_stop(fresh_kafka_broker, lambda: capfd.readouterr().err,
                                          "control-producer") == set()
    finally:
        control.close(flush=False)
