"""The Redis prefix logs answer a request exactly as the reference logs and the batch engine.

Hypothesis draws the streams of ``test_request_vector_parity`` (simultaneous
events, out-of-order arrival, labels known before and after the request,
events stored beyond the request's time, the request itself already applied or
not, trimmed logs, transactions without a terminal); each is applied through
:class:`EntityLogState` and :class:`PrefixLogWriter` into a real Redis (in
several writes, so diffs span batches) and through the reference
:class:`EventLog` / :class:`LabelLog`. The request's vector over the Redis
views must equal the vector over the reference logs and the batch engine's
point-in-time vector within 1e-9, and raise OutOfRange exactly when the
reference does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_features.baseline import BASELINE
from rtml_features.definitions import FeatureSet
from rtml_features.extended import EXTENDED
from rtml_features.online_store.redis.prefix_layout import event_member, log_keys
from rtml_features.online_store.redis.prefix_reader import (
    READ_ENTITY_LUA,
    READ_SCRIPT,
    PrefixLogReader,
)
from rtml_features.online_store.redis.prefix_writer import EntityLogState, PrefixLogWriter
from rtml_features.prefix_log import EventLog, LabelLog, OutOfRange
from rtml_features.request_vector import RequestVectors, log_spec
from rtml_features.testing import (
    CUSTOMER,
    DAY_SCALE,
    MIXED,
    ORIGIN,
    TERMINAL,
    batch_vector,
    scaled,
    stream_scenarios,
)

pytestmark = pytest.mark.integration

TTL_S = 600
#: Ids with the characters a member's separators use: the id is the member's last section.
TIDS = st.sampled_from(["", "|", "a|b", "/", ",", "x"])
scenarios = stream_scenarios({"flush_every": st.integers(1, 12), "tid_suffix": TIDS})


@pytest.fixture
def client(redis_server: Any) -> Iterator[redis.Redis]:
    connection = redis_server.client()
    yield connection
    connection.close()


def _compute(logs: Any, request: tuple[Any, ...], tid: str,
             feature_set: FeatureSet = MIXED) -> dict[str, float] | str:
    request_ms, _, _, amount = request
    try:
        return RequestVectors(feature_set).compute(tid, request_ms, {"amount": amount}, logs)
    except OutOfRange:
        return "out of range"


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenarios)
def test_redis_logs_equal_reference_and_batch(client: redis.Redis, case: dict[str, Any]) -> None:
    _check_logs(client, case, MIXED)


@pytest.mark.parametrize("feature_set", [BASELINE, EXTENDED], ids=lambda fs: fs.name)
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenarios)
def test_named_set_logs_equal_reference_and_batch(client: redis.Redis, feature_set: FeatureSet,
                                                  case: dict[str, Any]) -> None:
    """The registered sets, over the scenarios stretched to days (:data:`DAY_SCALE`): the
    baseline's logs take the writer's straight paths (a count-only terminal log, a one-sum
    customer log), the extended set's customer log keeps sparse tables for its 7/30-day
    max and 30-day min beside its sums. Held to the same reference and batch values."""
    _check_logs(client, scaled(case, DAY_SCALE), feature_set)


def _check_logs(client: redis.Redis, case: dict[str, Any], feature_set: FeatureSet) -> None:
    client.flushdb()
    suffix = case["tid_suffix"]
    request_ms, customer, terminal, amount = case["request"]
    request_tid = f"req{suffix}"
    request_row = (request_tid, ORIGIN + timedelta(milliseconds=request_ms), customer,
                   terminal, amount)
    rows = [(f"e{i}{suffix}", ORIGIN + timedelta(milliseconds=ms), c, t, a)
            for i, (ms, c, t, a, _) in enumerate(case["events"])]
    stored = [i for i in case["order"]
              if case["events"][i][0] <= request_ms or case["events"][i][4]]
    specs = {e.name: log_spec(feature_set, e) for e in feature_set.entities}
    reference: dict[str, dict[str, tuple[EventLog, LabelLog | None]]] = {
        e.name: {} for e in feature_set.entities}
    states: dict[tuple[str, str], EntityLogState] = {}
    writer = PrefixLogWriter(client, feature_set, TTL_S)

    def flush() -> None:
        writer.write([(entity, entity_id, state) for (entity, entity_id), state in
                      states.items()])

    def apply(tid: str, ms: int, ids: dict[str, str | None], value: float) -> None:
        for entity in feature_set.entities:
            entity_id = ids[entity.key]
            if entity_id is None:
                continue
            spec = specs[entity.name]
            pair = reference[entity.name].setdefault(entity_id, (spec.new_event_log(),
                                                                 spec.new_label_log()))
            added = pair[0].add(tid, ms, {"amount": value})
            state = states.setdefault((entity.name, entity_id), EntityLogState(spec))
            assert state.add_event(tid, ms, {"amount": value}) is added

    for n, i in enumerate(stored):
        ms, c, t, a, _ = case["events"][i]
        apply(f"e{i}{suffix}", ms, {"customer_id": c, "terminal_id": t}, a)
        if n % case["flush_every"] == 0:
            flush()
    if case["request_stored"]:
        apply(request_tid, request_ms, {"customer_id": customer, "terminal_id": terminal},
              amount)
    flush()
    label_rows = []
    known = sorted(((ms + delay, i, fraud) for i, ((ms, *_), lab) in
                    enumerate(zip(case["events"], case["labels"], strict=True))
                    if lab is not None for delay, fraud in [lab]))
    for labeled_ms, i, fraud in known:
        ms, c, t, a, ahead = case["events"][i]
        if i not in stored or (labeled_ms > request_ms and not ahead):
            continue
        tid = f"e{i}{suffix}"
        label_rows.append((tid, ORIGIN + timedelta(milliseconds=labeled_ms), fraud))
        for entity, entity_id in ((CUSTOMER, c), (TERMINAL, t)):
            if entity_id is None:
                continue
            label_log = reference[entity.name][entity_id][1]
            state = states[entity.name, entity_id]
            values = {"is_fraud": float(fraud)}
            if label_log is not None:
                kept = label_log.add(tid, ms, labeled_ms, values)
                assert state.add_label(tid, ms, labeled_ms, values) is kept
    flush()
    if case["trim"]:
        for entity in feature_set.entities:
            cutoff = request_ms - specs[entity.name].horizon_ms
            for entity_id, (event_log, label_log) in reference[entity.name].items():
                dropped = event_log.trim(cutoff)
                if label_log is not None:
                    label_log.trim(cutoff)
                assert states[entity.name, entity_id].trim(cutoff) == dropped
        flush()

    ids = {"customer_id": customer, "terminal_id": terminal}
    reference_logs = {}
    for entity in feature_set.entities:
        entity_id = ids[entity.key]
        if entity_id is not None:
            reference_logs[entity.name] = reference[entity.name].get(entity_id, (None, None))
    expected_online = _compute(reference_logs, case["request"], request_tid, feature_set)
    served = _compute(PrefixLogReader(client, feature_set).read(request_tid, request_ms, ids),
                      case["request"], request_tid, feature_set)
    if isinstance(expected_online, str):
        assert served == expected_online
        return
    assert not isinstance(served, str)
    history = [rows[i] for i in stored] + [request_row]
    expected = batch_vector(feature_set, history, label_rows, request_row)
    # Row features read the request's calendar time: the scenario's times are offsets
    # from ORIGIN for the batch engine but epoch ms for the request, so only windows.
    rows_only = {feature.name for feature in feature_set.row_features}
    for name in feature_set.names:
        if name in rows_only:
            continue
        assert served[name] == pytest.approx(expected_online[name], abs=1e-9, rel=0), name
        assert served[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name


def _load_small(client: redis.Redis) -> None:
    """Five events of c0 and t0 (one fraud label): enough for every aggregate to read."""
    writer = PrefixLogWriter(client, MIXED, TTL_S)
    customer = EntityLogState(log_spec(MIXED, CUSTOMER))
    terminal = EntityLogState(log_spec(MIXED, TERMINAL))
    for i in range(5):
        customer.add_event(f"e{i}", 1_000 * i, {"amount": float(i)})
        terminal.add_event(f"e{i}", 1_000 * i, {"amount": float(i)})
    terminal.add_label("e1", 1_000, 1_500, {"is_fraud": 1.0})
    writer.write([("customer", "c0", customer), ("terminal", "t0", terminal)])


def test_a_request_is_one_evalsha(client: redis.Redis, redis_server: Any) -> None:
    """MONITOR sees the reader's connection send exactly one command: the EVALSHA."""
    client.flushdb()
    _load_small(client)
    reader_client = redis_server.client()
    reader = PrefixLogReader(reader_client, MIXED)
    reader_client.script_load(READ_SCRIPT)
    reader_client.ping()  # connect before monitoring: only the read is seen
    own = reader_client.connection_pool.get_connection()
    reader_client.connection_pool.release(own)
    own_port = own._sock.getsockname()[1]  # type: ignore[union-attr]
    sentinel = "rtml-end-of-read"
    with client.monitor() as monitor:
        vector = RequestVectors(MIXED).compute(
            "req", 4_500, {"amount": 9.0},
            reader.read("req", 4_500, {"customer_id": "c0", "terminal_id": "t0"}))
        client.echo(sentinel)
        seen = []
        for command in monitor.listen():
            if command["command"].endswith(sentinel):
                break
            if command["client_type"] != "lua" and command["client_port"] == str(own_port):
                seen.append(command["command"].split()[0])
    reader_client.close()
    assert seen == ["EVALSHA"]
    assert vector["c_n_1s"] == 2.0      # e4 at 4000 and the request
    assert vector["t_n_3s"] == 3.0      # (-500, 2500]: e0, e1, e2
    assert vector["t_frauds_3s"] == 1.0


def test_the_read_composes_with_a_claim(client: redis.Redis) -> None:
    """The entity fragment runs after a claim in one script, as the decision API's would."""
    client.flushdb()
    _load_small(client)
    reader = PrefixLogReader(client, MIXED)
    script = client.register_script(READ_ENTITY_LUA + """
local stored = redis.call('GET', KEYS[1])
if stored then return {stored} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {false, rtml_read_entities(2, 3)}
""")
    keys, args, asked = reader.request("req", 4_500, {"customer_id": "c0", "terminal_id": None})
    reply = script(keys=["rtml:decision:req", *keys], args=[b"pending", 10_000, *args])
    assert reply[0] is None and client.get("rtml:decision:req") == b"pending"
    logs = reader.views(asked, reply[1], "req", 4_500)
    assert set(logs) == {"customer"}
    vector = RequestVectors(MIXED).compute("req", 4_500, {"amount": 9.0}, logs)
    assert vector["c_max_2s"] == 9.0 and vector["c_min_5s"] == 0.0
    assert vector["t_n_3s"] == 0.0
    again = script(keys=["rtml:decision:req", *keys], args=[b"pending", 10_000, *args])
    assert again == [b"pending"]


def test_writes_renew_the_ttl_and_keys_carry_the_version(client: redis.Redis) -> None:
    client.flushdb()
    _load_small(client)
    keys = log_keys(MIXED, "terminal", "t0")
    assert all(key.startswith(f"rtml:fs:{MIXED.name}:{MIXED.version}:@") for key in keys)
    assert [client.zcard(key) for key in keys] == [5, 1, 1]
    assert all(0 < client.ttl(key) <= TTL_S for key in keys)


def test_a_late_event_rewrites_the_later_members_only(client: redis.Redis) -> None:
    client.flushdb()
    spec = log_spec(MIXED, CUSTOMER)
    state = EntityLogState(spec)
    writer = PrefixLogWriter(client, MIXED, TTL_S)
    for i in range(6):
        state.add_event(f"e{i}", 1_000 * i, {"amount": 1.0})
    writer.write([("customer", "c0", state)])
    key = log_keys(MIXED, "customer", "c0")[0]
    before = client.zrange(key, 0, -1)
    assert state.add_event("late", 3_500, {"amount": 10.0})
    assert not state.add_event("late", 3_500, {"amount": 10.0})  # a duplicate changes nothing
    writer.write([("customer", "c0", state)])
    after = client.zrange(key, 0, -1)
    assert after[:4] == before[:4] and len(after) == 7
    assert [int(member[:12], 16) for member in after] == list(range(1, 8))
    assert after[4].endswith(b"|late")
    with pytest.raises(OutOfRange):  # trimmed: an event before the anchor has no running sums
        state.trim(2_500)
        state.add_event("too-late", 500, {"amount": 1.0})


def test_layout_examples() -> None:
    import doctest

    from rtml_features.online_store.redis import prefix_layout

    result = doctest.testmod(prefix_layout)
    assert result.attempted > 0 and result.failed == 0


def test_a_snapshot_restores_the_same_state() -> None:
    """Checkpoint round trip (JSON): same member texts, same diffs for what follows."""
    import random

    import orjson

    rng = random.Random(5)
    spec = log_spec(MIXED, TERMINAL)
    state = EntityLogState(spec)

    def stream(target: EntityLogState, seed: int, n: int, start_ms: int = 0) -> None:
        draw = random.Random(seed)
        for i in range(n):
            time_ms = draw.randrange(start_ms, 50_000)  # out of order, simultaneous
            target.add_event(f"s{seed}-{i}|x", time_ms, {"amount": draw.random() * 1e3})
            if draw.random() < 0.3:
                target.add_label(f"s{seed}-{i}|x", time_ms, time_ms + 10, {"is_fraud": 1.0})

    stream(state, rng.randrange(1000), 300)
    state.trim(10_000)
    for diff in state.diffs():
        diff.take()
    restored = EntityLogState.restore(spec, orjson.loads(orjson.dumps(state.snapshot())))
    assert state.labels is not None and restored.labels is not None
    assert restored.events.members == state.events.members
    assert restored.labels.members == state.labels.members
    assert restored.labels.known == state.labels.known
    for target in (state, restored):
        stream(target, 77, 50, start_ms=15_000)  # after the anchor: late, not too late
        target.trim(20_000)
    assert [diff.take() for diff in restored.diffs()] == [diff.take() for diff in state.diffs()]
    state.add_event("pending", 60_000, {"amount": 1.0})
    with pytest.raises(ValueError):
        state.snapshot()


def test_a_flushed_script_cache_is_reloaded(client: redis.Redis) -> None:
    """After a Redis restart (SCRIPT FLUSH) the writer and the reader load their scripts again."""
    client.flushdb()
    client.script_flush()
    _load_small(client)  # the writer's first EVALSHA answers NOSCRIPT: loaded, repeated
    assert client.zcard(log_keys(MIXED, "customer", "c0")[0]) == 5
    client.script_flush()
    logs = PrefixLogReader(client, MIXED).read("req", 4_500, {"customer_id": "c0",
                                                              "terminal_id": "t9"})
    assert logs["terminal"] == (None, None)  # never seen: None, as the reference store
    vector = RequestVectors(MIXED).compute("req", 4_500, {"amount": 9.0}, logs)
    assert vector["c_sum_1s"] == 4.0 + 9.0


def test_appended_member_texts_are_the_rendered_ones() -> None:
    """The append path reuses level texts; they must be what event_member renders
    (signed zeros and ties included: min / max keep their first argument)."""
    import random

    from rtml_features.request_vector import EntityLogSpec

    draw = random.Random(3)
    spec = EntityLogSpec(("amount",), (("amount", "min"), ("amount", "max")), (), 0)
    state = EntityLogState(spec)
    for i in range(400):
        value = draw.choice([0.0, -0.0, 1.0, -1.0, draw.random()])
        state.add_event(f"e{i:03d}", draw.randrange(0, 100) if i % 7 == 0 else 100 + i,
                        {"amount": value})
    for diff in state.diffs():
        diff.take()
    restored = EntityLogState.restore(spec, state.snapshot())
    assert restored.events.members == state.events.members
    assert restored.events.level_texts == state.events.level_texts


def test_the_writer_state_knows_its_events() -> None:
    state = EntityLogState(log_spec(MIXED, TERMINAL))
    for tid, time_ms in (("b", 5), ("a", 5), ("c", 7)):
        state.add_event(tid, time_ms, {"amount": 1.0})
    assert state.events.has("a", 5) and state.events.has("b", 5) and state.events.has("c", 7)
    assert not state.events.has("a", 7) and not state.events.has("z", 5)


def test_keys_lost_or_idle_are_written_whole_again_and_clear_deletes(
        client: redis.Redis) -> None:
    client.flushdb()
    spec = log_spec(MIXED, TERMINAL)
    state = EntityLogState(spec)
    writer = PrefixLogWriter(client, MIXED, TTL_S)
    for i in range(6):
        state.add_event(f"e{i}", 1_000 * i, {"amount": float(i)})
    state.add_label("e2", 2_000, 2_500, {"is_fraud": 1.0})
    writer.write([("terminal", "t0", state)])
    keys = log_keys(MIXED, "terminal", "t0")
    state.trim(3_500)  # the anchor (e3) stays
    writer.write([("terminal", "t0", state)])
    expected = [client.zrange(key, 0, -1, withscores=True) for key in keys]
    assert len(expected[0]) == 3 and len(expected[1]) == 1
    client.delete(*keys)  # the keys expired while the entity was idle
    state.events.written_s -= TTL_S  # ... for longer than half the TTL
    assert state.labels is not None
    state.labels.written_s -= TTL_S
    state.add_event("e6", 6_000, {"amount": 6.0})
    writer.write([("terminal", "t0", state)])
    restored = [client.zrange(key, 0, -1, withscores=True) for key in keys]
    assert restored[0][:-1] == expected[0] and restored[0][-1][0].endswith(b"|e6")
    assert restored[1:] == expected[1:]  # label keys: renewed with all their members
    assert all(0 < client.ttl(key) <= TTL_S for key in keys)
    state.clear()
    writer.write([("terminal", "t0", state)])
    assert client.exists(*keys) == 0


def test_resend_after_a_lost_write_sets_the_keys_exactly(client: redis.Redis) -> None:
    client.flushdb()
    state = EntityLogState(log_spec(MIXED, TERMINAL))
    writer = PrefixLogWriter(client, MIXED, TTL_S)
    for i in range(5):
        state.add_event(f"e{i}", 1_000 * i, {"amount": float(i)})
        state.add_label(f"e{i}", 1_000 * i, 1_000 * i + 1, {"is_fraud": 1.0})
    writer.write([("terminal", "t0", state)])
    state.add_event("late", 1_500, {"amount": 9.0})  # rewrites e2..e4: ZREMs and ZADDs
    state.add_label("late", 1_500, 1_600, {"is_fraud": 1.0})
    state.trim(2_500)
    writer.calls([("terminal", "t0", state)])  # taken, never sent: the write was lost
    keys = log_keys(MIXED, "terminal", "t0")
    assert client.zcard(keys[0]) == 5  # Redis still has the old members
    state.resend()
    writer.write([("terminal", "t0", state)])
    assert state.labels is not None
    assert client.zrange(keys[0], 0, -1) == state.events.members
    assert client.zrange(keys[1], 0, -1) == state.labels.members
    assert sorted(client.zrange(keys[2], 0, -1)) == sorted(state.labels.known)


def test_the_first_write_after_a_restore_replaces_the_keys(client: redis.Redis) -> None:
    """Members a crashed run wrote after its checkpoint do not survive the replay's write."""
    client.flushdb()
    spec = log_spec(MIXED, TERMINAL)
    state = EntityLogState(spec)
    writer = PrefixLogWriter(client, MIXED, TTL_S)
    for i in range(4):
        state.add_event(f"e{i}", 1_000 * i, {"amount": 1.0})
    writer.write([("terminal", "t0", state)])
    checkpoint = state.snapshot()
    key = log_keys(MIXED, "terminal", "t0")[0]
    client.zadd(key, {event_member(5, [9.0, 0.0], [[9.0, 1.0, 1.0]], "crashed-run"): 4_000})
    restored = EntityLogState.restore(spec, checkpoint)
    restored.add_event("e4", 5_000, {"amount": 1.0})
    writer.write([("terminal", "t0", restored)])
    assert client.zrange(key, 0, -1) == restored.events.members


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c|d", ""]),
                          st.floats(0, 1e6)), min_size=1, max_size=40),
       st.integers(0, 60), st.sampled_from(["customer", "terminal"]))
def test_straight_paths_spell_members_as_event_member(
        events: list[tuple[int, str, float]], cutoff: int, entity_name: str) -> None:
    """Appends and late inserts of the handbook set's logs (one-sum customer, count-only
    terminal: the writer's straight paths) give the bytes ``restore`` renders with
    :func:`~rtml_features.online_store.redis.prefix_layout.event_member`."""
    entity = next(e for e in BASELINE.entities if e.name == entity_name)
    state = EntityLogState(log_spec(BASELINE, entity))
    for i, (ms, suffix, amount) in enumerate(events):
        state.add_event(f"e{i}{suffix}", ms, {"amount": amount})
    state.trim(cutoff)
    for diff in state.diffs():
        diff.take()  # as if sent: a snapshot refuses pending changes
    restored = EntityLogState.restore(log_spec(BASELINE, entity), state.snapshot())
    assert restored.events.members == state.events.members
