"""The broker (durable mode) stopped and restarted under a replay: no record lost, consumers resume.

The durable broker keeps records and committed offsets in a disk-backed
local S3 (s3rver, from npm; the case is skipped where npm is missing), so a
restart is an outage, not a wipe. While it is down the replay's producer
buffers and retries (librdkafka), and the feature pipeline
(``python -m rtml_feature_pipeline``) keeps reconnecting. The checks, from
the topics and Redis after the restart: every transaction replayed is on
``transactions`` (at least once: see the producer note below), nothing was
dead-lettered, every transaction has exactly one first vector on
``features``, and the online store equals an uninterrupted run's over the
same topics.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.kafka.producer import EventProducer
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import redis_entity_state
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = pytest.mark.integration

GROUP = "faults-broker"


#: /work/coord/fault-findings.md F2: after a restart under load the durable broker (Tansu 0.6
#: on s3rver) may fail every fetch of one partition with a storage decoding error, or come
#: back without records it had acknowledged.
BROKER_STORAGE_ERROR = "TryGetError"


def storage_error(broker: Any) -> bool:
    return BROKER_STORAGE_ERROR in broker.log_path.read_text(errors="replace")


def xfail_if_the_broker_lost_data(broker: Any, sink: Any, fault_report: Any, faults: Any,
                                  applied: int, round_: int) -> None:
    """The worker did not catch up: an expected failure only if the *broker* lost data.

    Either its own log says it cannot read a partition back, or the input topics hold
    fewer records than the replay had acknowledged (call once the replay has ended).
    Anything else returns, and the caller's failure stands.
    """
    if storage_error(broker):
        log = broker.log_path.read_text(errors="replace")
        where = sorted(set(re.findall(r'topic: "([a-z.-]+)", partition: (\d+) \}[^\n]*'
                                      + BROKER_STORAGE_ERROR, log)))
        what = f"cannot read {where} back ({BROKER_STORAGE_ERROR})"
    elif not sink.failures():  # every record sent was acknowledged
        stored = {t: len(faults.read_all(broker.bootstrap_servers, t)) for t in sink.sent}
        missing = {t: sink.sent[t] - stored[t] for t in sink.sent if stored[t] < sink.sent[t]}
        if not missing:
            return
        what = f"lost acknowledged records {missing} (held {stored}, sent {dict(sink.sent)})"
    else:
        return
    fault_report(faults.FaultResult(
        "feature pipeline + broker", "durable broker restarted under a replay", sink.total,
        round_, sink.total - applied, 0, [],
        f"BROKER LOST DATA after restart {round_}: it {what} (finding F2); not the platform's"))
    pytest.xfail(f"F2: after restart {round_} the durable broker {what}")


def test_durable_broker_restart_under_a_replay_loses_nothing(
        faults: Any, service_process: Any, fault_report: Any, kafka_broker_factory: Any,
        fresh_redis_server: Any, tmp_path: Path) -> None:
    scale = faults.profile()
    if scale.name != "chaos":
        # Not in `make test`: in about one run in two the local durable broker loses or
        # hides records across a restart (F2), and CI must not fail at random on a defect
        # of the local broker. `make chaos` runs it and reports what happened.
        pytest.skip("durable broker case: make chaos only (finding F2, docs/reliability.md)")
    # Its storage is s3rver: an object per produce request, and the broker got slower as
    # objects accumulated (with librdkafka's 5 ms linger the worker stalled after ~1,000
    # objects at 30 records/s). Long lingers keep the objects few and large, as a
    # deployment on this storage would configure; and a slower rate than the other cases.
    n, rate = scale.durable_records, scale.durable_rate
    # One request in flight per connection: without idempotence a batch retried across the
    # restart would otherwise land after later ones, out of order in its partition (finding
    # F3: the worker then sent transactions to .late and quarantined labels as "ahead").
    in_order = {"max.in.flight.requests.per.connection": "1"}
    replay_linger = {"linger.ms": "1000", **in_order}
    worker_linger = {"linger.ms": "200", **in_order}
    broker = kafka_broker_factory(durable=True, create_topics=True)
    write_dataset(simulate(SimulationConfig(n_customers=100, n_terminals=200,
                                            n_days=n // 150 + 30,
                                            seed=9)), tmp_path / "data")
    # The durable broker desynchronises idempotent producers' sequence numbers under a
    # replay's load, restart or not ("out of order sequence number", fatal): off, like
    # RTML_KAFKA_IDEMPOTENT_PRODUCER=false in a deployment on it. Retries may then write a
    # record twice; consumers dedupe by event id, and the check below counts it.
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, idempotent_producer=False)
    client = redis.Redis.from_url(fresh_redis_server.url)
    worker = service_process("rtml_feature_pipeline", {
        **faults.feature_pipeline_env(broker.bootstrap_servers, fresh_redis_server.url, GROUP),
        "RTML_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "RTML_KAFKA_EXTRA": orjson.dumps(worker_linger).decode(),
        # Each checkpoint reads the output positions back: fewer of them on the slow storage.
        "RTML_FEATURE_PIPELINE_CHECKPOINT_INTERVAL_S": "2"})

    def applied() -> int:
        return int(faults.checkpointed_events(client, GROUP))

    worker.start()
    faults.wait_until(lambda: worker.logged("assigned"), 60, "the worker joined",
                      watch=[worker])
    sink = faults.CountingSink(EventProducer(kafka, **replay_linger))
    options = ReplayOptions(limit=n, replication_factor=1, pace=Pace.rate(rate),
                            create_topics=False)
    report: list[Any] = []

    def produce() -> None:
        try:
            report.append(replay(tmp_path / "data", options, kafka, producer=sink))
        except BaseException as error:
            report.append(error)
            raise

    producing = threading.Thread(target=produce)
    producing.start()
    recoveries: list[float] = []
    for round_ in range(1, scale.kill_rounds + 1):
        # Early enough that the replay is still producing: the worker trails it here.
        target = n * round_ // (4 * scale.kill_rounds)
        faults.wait_until(lambda t=target: applied() >= t, 120,
                          f"{target} events checkpointed", watch=[worker])
        broker.restart()  # graceful stop, then start on the same port and storage
        back_at = time.monotonic()
        assert producing.is_alive(), f"the replay ended before the restart: {report}"
        produced_then = sink.total
        # Stops early if the broker logs that it cannot read a partition back (F2).
        try:
            caught_up = faults.wait_until(
                lambda p=produced_then: applied() >= p or storage_error(broker), 180,
                "the worker caught up after the broker returned", watch=[worker])
        except TimeoutError:
            producing.join(timeout=300)
            xfail_if_the_broker_lost_data(broker, sink, fault_report, faults, applied(), round_)
            raise
        if applied() < produced_then:
            xfail_if_the_broker_lost_data(broker, sink, fault_report, faults, applied(), round_)
        recoveries.append(caught_up - back_at)
    producing.join(timeout=300)
    assert report and not isinstance(report[0], BaseException), report
    total = sink.total
    faults.wait_until(lambda: applied() >= total, 180, f"all {total} events applied",
                      watch=[worker])
    assert worker.stop() == 0, worker.tail()
    sink.producer.close()

    bootstrap = broker.bootstrap_servers
    dead_lettered = sum(len(faults.read_all(bootstrap, dlq))
                        for dlq in ("transactions.dlq", "labels.dlq"))
    ids = [orjson.loads(r.value())["transaction_id"]
           for r in faults.read_all(bootstrap, "transactions")]
    on_topic = faults.tally(set(ids), ids)  # copies a producer retry wrote (not an effect)
    assert len(set(ids)) == sink.sent["transactions"]
    # Read before the reference run, which publishes vectors of its own.
    vectors = faults.vector_tally(bootstrap, ids)

    reference_url = fresh_redis_server.url.rsplit("/", 1)[0] + "/2"
    reference = kafka_engine.run(Settings(consumer_group="reference"), kafka,
                                 RedisSettings(url=reference_url),
                                 max_idle_s=scale.reference_idle_s,
                                 install_signal_handlers=False)
    assert reference.events_applied == total
    uninterrupted = redis_entity_state(redis.Redis.from_url(reference_url))
    after = redis_entity_state(client)
    differing = sum(1 for k in uninterrupted.keys() | after.keys()
                    if uninterrupted.get(k) != after.get(k))
    fault_report(faults.FaultResult(
        "feature pipeline + broker", "durable broker restarted under a replay", len(ids),
        scale.kill_rounds, vectors.lost + dead_lettered + differing,
        vectors.duplicated, recoveries,
        f"{differing} of {len(uninterrupted)} hashes differ; {dead_lettered} dead-lettered; "
        f"{on_topic.duplicated} input records written twice by producer retries (deduped)"))
    assert dead_lettered == 0
    assert (vectors.lost, vectors.duplicated, vectors.unexpected) == (0, 0, 0), vectors
    assert differing == 0
