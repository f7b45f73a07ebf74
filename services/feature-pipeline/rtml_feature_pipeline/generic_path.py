"""The worker's path for feature sets the classic computer cannot compute.

:func:`uses_classic_path` decides per served set. The handbook's sets over the
handbook's ``Transaction`` keep :class:`~rtml_features.stream.StreamingFeatureComputer`
(generated arithmetic, prefix logs, ~4x the generic computer's events/s). Any
other set — another schema, an aggregation or row kind of the generic API, a
compound entity — runs on :class:`WorkerGenericComputer`, the
:class:`~rtml_features.stream_generic.GenericStreamingComputer` with what the
worker reads of a computer besides the features:

* ``source_leads_ms``: the event-time guard's per-partition state, kept and
  checkpointed with the computer's (as the classic computer keeps it);
* each emission's ``ids`` are what a ``features`` event names: the event's
  partition key value (``customer_id`` of the vector) and its ``terminal_id``
  field when the schema declares one (the entity ids stay on the computer's
  own state, which the online store's hashes are written from);
* no prefix logs (``logs`` None, nothing ever pending): the classic layout
  holds only the first definitions' aggregations.

Checkpoints: :func:`snapshot_state` / :func:`restore_state` wrap
:mod:`rtml_features.generic_snapshot` and add the guard's leads.

The online store's generic layout (request-time vectors of the new
aggregations) is written by an object with the :class:`GenericStoreWriter`
calls, plugged into the worker as ``generic_writer``
(:class:`~rtml_feature_pipeline.generic_store.GenericStore`, built by the Kafka engine
for the ``prefix`` layouts); its state is checkpointed with the computer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from rtml_common.handbook import TRANSACTION_SCHEMA
from rtml_features.definitions import FeatureSet, UnsupportedDefinition
from rtml_features.generic_aggregates import StoredEvent
from rtml_features.generic_snapshot import restore as generic_restore
from rtml_features.generic_snapshot import snapshot as generic_snapshot
from rtml_features.online_store.redis.connection import Client
from rtml_features.stream_generic import GenericStreamingComputer
from rtml_features.vector_plan import VectorPlan


class UnservableFeatureSet(ValueError):
    """The configured feature set cannot be served as configured (the message says which
    setting to change): the service exits with its bad-configuration code."""


def uses_classic_path(feature_set: FeatureSet) -> bool:
    """Whether the classic computer serves ``feature_set``: the handbook's schema (its
    decoders read handbook transactions) and definitions its vector plan compiles."""
    if feature_set.schema != TRANSACTION_SCHEMA or not feature_set.classic:
        return False
    try:
        VectorPlan(feature_set)  # what the classic computer generates (refuses what it cannot)
    except (UnsupportedDefinition, KeyError, ValueError):
        return False
    return True


class WorkerGenericComputer(GenericStreamingComputer):
    """The generic computer with the worker's extras (see the module docstring)."""

    #: No prefix logs on this path.
    logs: None = None

    def __init__(self, feature_set: FeatureSet, allowed_lateness: timedelta,
                 track_newest: bool = False) -> None:
        super().__init__(feature_set, allowed_lateness, track_newest=track_newest)
        schema = feature_set.schema
        #: Per source: its highest event time minus the wall-clock ms it was applied at
        #: (the worker's :class:`~rtml_feature_pipeline.event_time_guard.EventTimeGuard`).
        self.source_leads_ms: dict[str, int] = {}
        self._partition_key = schema.partition_key or schema.id_field
        self._terminal = "terminal_id" if schema.has("terminal_id") else None
        self._read_ids: tuple[str | None, str | None] = ("", None)

    def _read(self, event: Mapping[str, Any]) -> StoredEvent:
        stored = super()._read(event)
        key = event.get(self._partition_key)
        terminal = event.get(self._terminal) if self._terminal is not None else None
        # Read by _emission_ids right after, for the same event (on_event's only call).
        self._read_ids = ("" if key is None else str(key),
                          None if terminal is None else str(terminal))
        return stored

    def _emission_ids(self, event: StoredEvent) -> tuple[str | None, str | None]:
        return self._read_ids

    # The classic computer's prefix-log calls, for the worker: nothing on this path.

    def logs_pending(self) -> bool:
        return False

    def take_touched_logs(self) -> list[Any]:
        return []

    def resend_logs(self) -> None:
        return None


def snapshot_state(computer: WorkerGenericComputer) -> dict[str, Any]:
    """The computer's checkpoint data (the generic snapshot plus the guard's leads)."""
    state = generic_snapshot(computer)
    state["source_leads_ms"] = dict(computer.source_leads_ms)
    state["engine"] = "generic"
    return state


def restore_state(computer: WorkerGenericComputer, state: dict[str, Any]) -> None:
    """Load :func:`snapshot_state`'s data into a fresh computer of the same set version."""
    if state.get("engine") != "generic":
        raise ValueError("the checkpoint holds the classic computer's state, not the generic "
                         "computer's (was the served set's path changed under the same key?)")
    generic_restore(computer, state)
    computer.source_leads_ms.clear()
    computer.source_leads_ms.update(state.get("source_leads_ms") or {})


class GenericStoreWriter(Protocol):
    """What the worker calls on a generic online-store writer (the generic layout's):
    per applied event and label, then once per delivery with the Redis client.

    ``apply_event`` takes the event's fields with its event time in epoch ms.
    """

    def apply_event(self, event: Mapping[str, Any]) -> bool: ...

    def apply_label(self, transaction_id: str, labeled_at_ms: int,
                    values: Mapping[str, Any]) -> bool: ...

    def flush(self, client: Client) -> int:
        """Send the changes; a failure leaves what it was sending to be rewritten whole."""

    def pending(self) -> bool:
        """Whether the next flush has anything to send."""

    def resend(self) -> None:
        """Rewrite every held entity whole at the next flush (Redis lost them)."""

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-able data (for the worker's checkpoint; nothing pending)."""

    def restore(self, data: dict[str, Any]) -> None:
        """Load :meth:`snapshot`'s data into a fresh writer."""
