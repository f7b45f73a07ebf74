"""A request's features at its event time, and the consistency markers beside them.

The features are :class:`~rtml_features.request_vector.RequestVectors` over
the log views one Redis round trip returned (:mod:`rtml_decision.request_store`):
every feature at the request's event time ``t`` with the definitions' exact
windows — ``(t - n, t]`` with the request itself included, label-delayed
``(t - (n + d), t - d]`` with the labels known by ``t`` — the values the batch
engine computes for a training row (``rtml train``), to 1e-9.

A served value can still differ from the batch value when the request
*raced the pipeline*: an earlier event or label of the entity was not in the
online state yet. To tell that apart from a wrong computation, the decision
records per entity of the request (``<e>`` its name, ``H`` its horizon:
longest window plus label delay, :meth:`FeatureSet.horizon`):

* ``rtml_seen_events_<e>``: the entity's events in ``(t - H, t]`` the logs
  held, the request itself excluded (the stream may have applied it already);
* ``rtml_seen_labels_<e>``: the sum of the entity's label field over
  ``(t - H, t]``, labels known by ``t`` (0 when it has no label field).

The consistency monitor counts the same from its complete history; equal
counts make a mismatch a real inconsistency, lower ones lag (see
services/consistency-monitor/README.md, "Lag classes").
"""

from __future__ import annotations

from collections.abc import Mapping

from rtml_features.definitions import FeatureSet
from rtml_features.request_vector import (
    SEEN_EVENTS_MARKER,
    SEEN_LABELS_MARKER,
    EntityLogs,
    RequestVectors,
    log_spec,
)


class RequestFeatures:
    """Features and consistency markers of one feature set's requests."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self.vectors = RequestVectors(feature_set)
        #: entity name -> (events marker, labels marker, horizon ms, label field or None).
        self._markers: dict[str, tuple[str, str, int, str | None]] = {}
        for entity in feature_set.entities:
            spec = log_spec(feature_set, entity)
            self._markers[entity.name] = (
                SEEN_EVENTS_MARKER + entity.name, SEEN_LABELS_MARKER + entity.name, spec.horizon_ms,
                spec.label_fields[0] if spec.label_fields else None)

    def compute(self, transaction_id: str, time_ms: int, fields: Mapping[str, float],
                logs: EntityLogs) -> dict[str, float]:
        """Every feature of the request, then the markers of each entity in ``logs``.

        Raises :class:`~rtml_features.prefix_log.OutOfRange` when a window
        reaches before what an entity's logs still hold.
        """
        values = self.vectors.compute(transaction_id, time_ms, fields, logs)
        for name, (events, labels) in logs.items():
            events_name, labels_name, horizon, label_field = self._markers[name]
            after = time_ms - horizon
            seen = 0
            if events is not None:
                seen = events.count(after, time_ms) - events.has(transaction_id, time_ms)
            values[events_name] = float(seen)
            values[labels_name] = (
                labels.known_total(label_field, after, time_ms, time_ms)
                if labels is not None and label_field is not None else 0.0)
        return values
