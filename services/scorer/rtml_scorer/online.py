"""Online (River) challengers: test-then-train on the live stream, never ahead of time.

An online shadow scores a transaction when its feature vector arrives, and
learns from it only when its label arrives — but "arrives" in *event time*:
a label is applied only once the features stream has reached the label's
``labeled_at``. Otherwise a replay (or a lagging partition) would let the
model learn a label before scoring transactions that, in reality, happened
before anyone knew it: a leak that makes an online model look better in
shadow than it could ever be live.

Mechanics, all on the scoring thread (River models are not thread-safe):

* **Feature cache** — the vector of every scored transaction (its row in
  the online model's feature order; a view into the batch matrix, so ~100
  bytes per entry), by transaction id, bounded by ``cache_size`` entries
  (oldest dropped) and by ``max_age_ms`` of event time behind the stream.
  A later *revision* of a vector replaces the cached row (the label is
  learned with the corrected features). A label whose vector is not cached
  (too old, or never seen by this process) is counted as
  ``unmatched`` and skipped.
* **Stream time** — per assigned ``features`` partition, the newest event
  time seen; the stream's time is the *minimum* over those partitions, so a
  lagging partition holds learning back instead of being overtaken.
* **Label buffer** — labels wait in a min-heap by ``labeled_at`` until the
  stream time reaches it (bounded by ``buffer_size``; overflow is dropped
  and counted). Within a batch, every vector is scored before any label is
  learned (score-then-learn), so a transaction is never scored by a model
  that already saw its own label.
* A cached vector is removed when its label is learned, so a redelivered
  label is not learned twice.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from rtml_common.events import Label
from rtml_models.base import F64, OnlineModel
from rtml_models.serving import ServedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CachedVector:
    """A scored transaction's features, kept until its label arrives."""

    revision: int
    event_ms: int
    names: tuple[str, ...]
    row: F64


@dataclass
class LearnResult:
    """What one :meth:`OnlineLearner.learn_due` call did."""

    learned: int = 0
    unmatched: int = 0
    errors: int = 0


class OnlineLearner:
    """Feature cache + event-time-gated label buffer; see the module docstring."""

    def __init__(self, cache_size: int, max_age_ms: int, buffer_size: int) -> None:
        self.cache_size = cache_size
        self.max_age_ms = max_age_ms
        self.buffer_size = buffer_size
        self._cache: OrderedDict[str, CachedVector] = OrderedDict()
        self._partition_ms: dict[int, int] = {}
        self._labels: list[tuple[int, int, Label]] = []
        self._seq = itertools.count()
        self.dropped_labels = 0

    # -- stream time -------------------------------------------------------

    def observe(self, partition: int, event_ms: int) -> None:
        """A features record of ``partition`` with event time ``event_ms`` was scored."""
        if event_ms > self._partition_ms.get(partition, -1):
            self._partition_ms[partition] = event_ms

    def keep_partitions(self, assigned: Iterable[int]) -> None:
        """Forget partitions this process no longer owns (they no longer hold time back)."""
        owned = set(assigned)
        for partition in [p for p in self._partition_ms if p not in owned]:
            del self._partition_ms[partition]

    def stream_time_ms(self) -> int | None:
        """The features stream's event time: the slowest owned partition's newest event."""
        return min(self._partition_ms.values()) if self._partition_ms else None

    # -- vectors and labels ------------------------------------------------

    def remember(self, transaction_id: str, revision: int, event_ms: int,
                 names: tuple[str, ...], row: F64) -> None:
        """Cache a vector (a newer revision replaces an older one; an older never does)."""
        if self.cache_size <= 0:
            return
        cached = self._cache.get(transaction_id)
        if cached is not None and cached.revision > revision:
            return
        self._cache[transaction_id] = CachedVector(revision, event_ms, names, row)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _evict_old(self, now_ms: int) -> None:
        horizon = now_ms - self.max_age_ms
        while self._cache:
            oldest = next(iter(self._cache.values()))
            if oldest.event_ms >= horizon:
                break
            self._cache.popitem(last=False)

    def add_label(self, label: Label, labeled_ms: int) -> bool:
        """Hold ``label`` until the stream reaches ``labeled_ms``; False if the buffer is full."""
        if len(self._labels) >= self.buffer_size:
            self.dropped_labels += 1
            return False
        heapq.heappush(self._labels, (labeled_ms, next(self._seq), label))
        return True

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    @property
    def cached_vectors(self) -> int:
        return len(self._cache)

    def learn_due(self, models: list[ServedModel]) -> LearnResult:
        """Learn every held label whose ``labeled_at`` the stream has reached."""
        result = LearnResult()
        now = self.stream_time_ms()
        if now is None:
            return result
        while self._labels and self._labels[0][0] <= now:
            _, _, label = heapq.heappop(self._labels)
            cached = self._cache.pop(label.transaction_id, None)
            if cached is None:
                result.unmatched += 1
                continue
            for served in models:
                model = served.model
                assert isinstance(model, OnlineModel)
                try:
                    model.learn_one(_row_for(model, cached), label.is_fraud)
                except Exception as exc:  # an online model must not stop the scorer
                    result.errors += 1
                    logger.warning("%s v%s failed to learn from %s: %r", served.alias,
                                   served.version, label.transaction_id, exc)
                else:
                    result.learned += 1
        self._evict_old(now)
        return result


def _row_for(model: OnlineModel, cached: CachedVector) -> list[float]:
    """The cached row in ``model``'s feature order."""
    values: list[float] = cached.row.tolist()
    if model.feature_names == cached.names:
        return values
    by_name = dict(zip(cached.names, values, strict=True))
    return [by_name[name] for name in model.feature_names]
