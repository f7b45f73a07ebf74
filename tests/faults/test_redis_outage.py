"""Redis stopped under load, then back (empty): the feature pipeline loses and skips nothing.

The local Redis runs without persistence (``--save "" --appendonly no``: the
online store is rebuilt from Kafka), so a stopped Redis comes back *empty*:
every feature hash and the worker's own checkpoint are gone. What "nothing
lost" means then: the worker (``python -m rtml_feature_pipeline``) must not
dead-letter, skip or drop a record while Redis is away, and once Redis is
back the online store must converge to exactly what an uninterrupted run
over the same input holds — every entity's hash, not only the entities
touched after the return — and every transaction must have its vector on
``features``, none twice.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import redis

from rtml_common.config import KafkaSettings, RedisSettings
from rtml_common.kafka.producer import EventProducer
from rtml_feature_pipeline import kafka_engine
from rtml_feature_pipeline.config import Settings
from rtml_feature_pipeline.parity import redis_entity_state, request_time_vectors
from rtml_simulator import SimulationConfig, simulate, write_dataset
from rtml_simulator.pacing import Pace
from rtml_simulator.replay import ReplayOptions, replay

pytestmark = pytest.mark.integration

#: Finding F1 (fixed): a Redis outage longer than the loop's ~1.4 s of bounded retries
#: dead-lettered valid records; outages are now waited out (rtml_common.dependency).

GROUP = "faults-redis"


def event_time_ms(key: str, member: bytes, score: float) -> int:
    """A prefix-log member's event time: its score, but the labelled-at index's (``@lk``)
    score is when the label became known; its event time leads the member's text."""
    return int(member.split(b"|", 1)[0]) if ":@lk:" in key else int(score)


def trimmed_only(reference: Any, after: Any, key: str) -> bool:
    """Whether two versions of a prefix log differ only in members a reader never reads.

    The streaming computer trims an entity's log when a sweep evicts its state, at the
    cut-off of the watermark *at that sweep*, and sweeps happen every so much watermark
    progress: when depends on how the partitions interleaved into batches, which an
    outage changes (the worker catches up in bigger batches). Two runs over the same
    input then hold the same log from the later of their two trims on, and one of them
    also some older members (the anchor of an earlier trim and what precedes it). A
    request reads at or after the current watermark minus the longest horizon, never
    before either trim, so it sees the same; the request-time vectors check that too.
    """
    if not isinstance(reference, dict) or not isinstance(after, dict) or not reference \
            or not after:
        return False
    floor = max(min(event_time_ms(key, m, s) for m, s in reference.items()),
                min(event_time_ms(key, m, s) for m, s in after.items()))

    def tail(members: dict[bytes, float]) -> dict[bytes, float]:
        return {m: s for m, s in members.items() if event_time_ms(key, m, s) >= floor}

    return tail(reference) == tail(after)


def requests_of_every_entity(state: dict[str, Any]) -> pd.DataFrame:
    """Requests that read every customer's and terminal's logs: at the newest event time
    of the input and a week later (windows reaching back over every horizon)."""
    ids: dict[str, list[str]] = {"customer": [], "terminal": []}
    newest = 0
    for key, members in state.items():
        if ":@ev:" in key:
            entity, entity_id = key.split(":@ev:", 1)[1].split(":", 1)
            ids[entity].append(entity_id)
            newest = max(newest, int(max(members.values(), default=0)))
    customers, terminals = sorted(ids["customer"]), sorted(ids["terminal"])
    n = max(len(customers), len(terminals))
    rows = []
    for delay_ms in (0, 7 * 86_400_000):
        for i in range(n):
            rows.append({"transaction_id": f"probe-{delay_ms}-{i}",
                         "event_time": pd.Timestamp(newest + delay_ms, unit="ms", tz="UTC"),
                         "customer_id": customers[i % len(customers)],
                         "terminal_id": terminals[i % len(terminals)], "amount": 10.0})
    return pd.DataFrame(rows)


def test_redis_outage_under_load_converges_to_the_uninterrupted_state(
        faults: Any, service_process: Any, fault_report: Any, kafka_broker_factory: Any,
        fresh_redis_server: Any, tmp_path: Path) -> None:
    scale = faults.profile()
    n = scale.records
    # Few customers: the input spans weeks, so labels (7 days later) are replayed too.
    # (~170 transactions a day: n_days covers the replay and its labels' 7-day delay)
    write_dataset(simulate(SimulationConfig(n_customers=100, n_terminals=200,
                                            n_days=n // 150 + 30,
                                            seed=5)), tmp_path / "data")
    broker = kafka_broker_factory(create_topics=True)
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    store_url = fresh_redis_server.url
    client = redis.Redis.from_url(store_url)
    worker = service_process("rtml_feature_pipeline",
                             faults.feature_pipeline_env(broker.bootstrap_servers, store_url,
                                                         GROUP))

    def applied() -> int:
        return int(faults.checkpointed_events(client, GROUP))

    worker.start()
    faults.wait_until(lambda: worker.logged("assigned"), 60, "the worker joined",
                      watch=[worker])

    sink = faults.CountingSink(EventProducer(kafka))
    options = ReplayOptions(limit=n, replication_factor=1, pace=Pace.rate(scale.rate))
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
        # Stop Redis once the worker has checkpointed part of this round's share.
        target = n * round_ // (scale.kill_rounds + 1)
        faults.wait_until(lambda t=target: applied() >= t, 120,
                          f"{target} events checkpointed", watch=[worker])
        fresh_redis_server.stop()
        during = sink.total
        if round_ < scale.kill_rounds:  # the outage lasts while a tenth of the input arrives
            faults.wait_until(lambda d=during: sink.total >= d + n // 10, 120,
                              "load during the outage", watch=[worker])
            assert producing.is_alive(), f"the replay ended during the outage: {report}"
        else:
            # The last one lasts until the replay ended: whatever the store lost must be
            # rewritten by the worker itself, no later input will touch those entities.
            producing.join(timeout=300)
            assert sink.total > during, "no input during the outage: not under load"
        fresh_redis_server.start()
        back_at = time.monotonic()
        produced_then = sink.total
        caught_up = faults.wait_until(lambda p=produced_then: applied() >= p, 120,
                                      "the worker caught up after Redis returned",
                                      watch=[worker])
        recoveries.append(caught_up - back_at)
    producing.join(timeout=300)
    assert not producing.is_alive() and report, "the replay did not finish"
    total = sink.total
    faults.wait_until(lambda: applied() >= total, 120, f"all {total} events applied",
                      watch=[worker])
    assert worker.stop() == 0, worker.tail()
    log = worker.tail(10**6)
    sink.producer.close()

    # Nothing dead-lettered for want of Redis: the input topics' DLQs must stay empty.
    dead_lettered = sum(len(faults.read_all(broker.bootstrap_servers, dlq))
                        for dlq in ("transactions.dlq", "labels.dlq"))

    transactions = sink.sent["transactions"]
    ids = [orjson.loads(r.value())["transaction_id"]
           for r in faults.read_all(broker.bootstrap_servers, "transactions")]
    assert len(ids) == transactions
    # Read before the reference run, which publishes vectors of its own.
    vectors = faults.vector_tally(broker.bootstrap_servers, ids)

    reference_url = store_url.rsplit("/", 1)[0] + "/2"
    reference = kafka_engine.run(Settings(consumer_group="reference"), kafka,
                                 RedisSettings(url=reference_url),
                                 max_idle_s=scale.reference_idle_s,
                                 install_signal_handlers=False)
    assert reference.events_applied == total
    uninterrupted = redis_entity_state(redis.Redis.from_url(reference_url))
    after_outage = redis_entity_state(client)
    missing = uninterrupted.keys() - after_outage.keys()
    # Hashes must be equal; a prefix log only where a reader can see it (see trimmed_only).
    differing = [k for k in uninterrupted.keys() & after_outage.keys()
                 if uninterrupted[k] != after_outage[k]
                 and not trimmed_only(uninterrupted[k], after_outage[k], k)]
    trimmed = sum(1 for k in uninterrupted.keys() & after_outage.keys()
                  if uninterrupted[k] != after_outage[k]) - len(differing)
    # What the decision API computes from the logs: every entity's request-time vector
    # now and later, read from either Redis, must be the same.
    requests = requests_of_every_entity(uninterrupted)
    served = request_time_vectors(client, requests)
    expected = request_time_vectors(redis.Redis.from_url(reference_url), requests)
    served, expected = served.sort_index(), expected.sort_index()
    same = (served == expected) | (served.isna() & expected.isna())
    served_differing = int((~same).any(axis=1).sum())
    fault_report(faults.FaultResult(
        "feature pipeline + Redis", "Redis stopped under load, back empty", transactions,
        scale.kill_rounds, vectors.lost + len(missing) + len(differing) + dead_lettered,
        vectors.duplicated, recoveries,
        f"{dead_lettered} valid records dead-lettered; {len(missing)} of {len(uninterrupted)} "
        f"keys missing, {len(differing)} differ after the return ({trimmed} prefix logs "
        f"differ before their trim only); {served_differing} of {len(requests)} request-time "
        "vectors differ"))
    assert dead_lettered == 0, log[-3000:]
    assert (len(missing), len(differing)) == (0, 0), (sorted(missing)[:5], differing[:5])
    assert served_differing == 0, served.compare(expected).head()
    assert (vectors.lost, vectors.duplicated, vectors.unexpected) == (0, 0, 0), vectors
