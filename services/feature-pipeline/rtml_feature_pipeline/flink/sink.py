"""The Flink job's Redis sink: a keyed Python function around :class:`RedisOnlineStore`.

Flink ships no Redis connector, so the per-entity rows of the compiled SQL
are written from Python with the very store the Python engine uses (same
keys, ``repr(float)`` values, ``_as_of_ms`` / ``_tx`` and TTL).

Why keyed, with state: the online-store contract is "an entity's values as
of its newest event, last write wins". Rows of one entity arrive in event
time order (the OVER operator emits them as the watermark passes), but
simultaneous events, and rows replayed after a restore, may come in any
order. The function keeps, in Flink keyed state (checkpointed with the
job), the ``(event ms, transaction id)`` it last wrote for the entity and
skips anything not newer — the same order the Python engine uses — so
Redis never goes back in time and a replay rewrites identical values.

Writes are one pipelined HSET + EXPIRE round trip per row: buffering across
rows would need a flush on checkpoint, which PyFlink's Python functions
cannot hook, and would lose buffered writes on failure.

:class:`VectorEncoder` turns the job's whole vectors into the ``features``
records the Python engine publishes (see :func:`.compile.features_sink_statements`
for the Kafka side).

Imported only inside the Flink virtualenv (it needs PyFlink).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pyflink.common import Row, Time, Types
from pyflink.datastream import (
    KeyedProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import (
    StateTtlConfig,
    ValueStateDescriptor,
)

from rtml_features.definitions import FeatureSet
from rtml_features.online_store.base import EntityValues
from rtml_features.online_store.redis.store import RedisOnlineStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RedisEntityWriter(KeyedProcessFunction):
    """Writes entity feature rows to Redis, newest event only.

    Input: the compiled job's output rows (``kind`` = entity name, ``entity_id``,
    ``event_ms``, ``transaction_id``, ``features``), keyed by ``(kind, entity_id)``.
    ``entities`` maps each entity name to its feature names (what its hash holds).
    """

    def __init__(self, feature_set: FeatureSet, entities: dict[str, tuple[str, ...]],
                 redis_url: str, ttl_s: int) -> None:
        self.feature_set = feature_set
        self.entities = entities
        self.redis_url = redis_url
        self.ttl_s = ttl_s
        self.store: RedisOnlineStore | None = None
        self.newest: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.store = RedisOnlineStore(self.redis_url, self.ttl_s, socket_timeout_s=10.0)
        descriptor = ValueStateDescriptor("newest", Types.TUPLE([Types.LONG(), Types.STRING()]))
        # After the Redis TTL the hash is gone anyway: forget the entity too. Expired
        # entries go on read and in full snapshots; PyFlink's default background
        # cleanup needs the client's Py4J gateway, which a cluster's embedded
        # (thread mode) interpreter does not have.
        descriptor.enable_time_to_live(
            StateTtlConfig.new_builder(Time.seconds(self.ttl_s))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .disable_cleanup_in_background()
            .cleanup_full_snapshot()
            .build())
        self.newest = runtime_context.get_state(descriptor)

    def process_element(self, row: Any, ctx: KeyedProcessFunction.Context) -> Iterator[int]:
        names = self.entities.get(row["kind"])
        if names is None:
            return  # row features: not stored per entity
        as_of = (int(row["event_ms"]), str(row["transaction_id"]))
        seen = self.newest.value()
        if seen is not None and (int(seen[0]), str(seen[1])) >= as_of:
            return
        features = row["features"]
        values = {name: float(features[name]) for name in names}
        assert self.store is not None
        self.store.write(self.feature_set, [
            EntityValues(row["kind"], str(row["entity_id"]), values, as_of[0], as_of[1])])
        self.newest.update(as_of)
        yield 1

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class VectorEncoder:
    """A ``vector`` output row as the Python engine's ``features`` record (key, JSON value).

    The same fields and encoding as the worker's (``rtml_feature_pipeline.worker``:
    orjson of the :class:`~rtml_common.events.FeatureVector` fields, ``event_time``
    as a UTC datetime, ``revision`` 0, ``computed_at`` now), keyed by the customer id.
    Features are written in the set's order. Flink emits a vector once, final, when
    the watermark passes its transaction: there are no revisions.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self.name = feature_set.name
        self.version = feature_set.version
        self.names = tuple(feature_set.names)

    def __call__(self, row: Any) -> Row:
        features = row["features"]
        value = orjson.dumps({
            "transaction_id": row["transaction_id"],
            "customer_id": row["entity_id"],
            "terminal_id": row["terminal_id"],
            "event_time": EPOCH + timedelta(milliseconds=int(row["event_ms"])),
            "amount": float(row["amount"]),
            "feature_set": self.name,
            "feature_set_version": self.version,
            "features": {name: float(features[name]) for name in self.names},
            "revision": 0,
            "computed_at": datetime.now(UTC),
        })
        return Row(record_key=str(row["entity_id"]), record_value=value.decode())


#: The encoded vectors' type (the columns the features sink's INSERT reads).
VECTOR_RECORD_TYPE = Types.ROW_NAMED(["record_key", "record_value"],
                                     [Types.STRING(), Types.STRING()])


def result_json(row: Any) -> str:
    """One output row as the JSON record of ``--results-topic``."""
    return json.dumps({
        "transaction_id": row["transaction_id"], "kind": row["kind"],
        "entity_id": row["entity_id"], "event_ms": int(row["event_ms"]),
        "features": {k: float(v) for k, v in row["features"].items()},
    })
