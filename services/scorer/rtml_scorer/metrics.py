"""The scorer's Prometheus metrics (OpenTelemetry instruments, no-ops until telemetry starts).

Names as exported (counters get ``_total``, histograms ``_bucket``/``_sum``/``_count``):

* ``rtml_scorer_events_scored_total{role, alias, model_version}`` — rows scored.
* ``rtml_scorer_latency_seconds{role, alias}`` — per-row scoring time, one
  sample per batch (the batch's per-row share; see :mod:`.outputs`).
* ``rtml_scorer_batch_rows{role}`` — rows per scored batch (micro-batching at work).
* ``rtml_scorer_score{role, alias, model_version}`` — score distribution, from a
  sample of each batch (:func:`score_sample`; ``rtml_scorer_events_scored_total``
  counts every row, ``_sum / _count`` is the sample's mean score).
* ``rtml_scorer_shadow_failures_total{alias, model_version, reason}``.
* ``rtml_scorer_shadows_detached_total{alias, model_version}``.
* ``rtml_scorer_reloads_total`` — snapshot swaps after a model event / refresh.
* ``rtml_scorer_online_updates_total{alias, model_version}`` — labels learned.
* ``rtml_scorer_labels_total{outcome}`` — labels by fate (learned, unmatched, dropped).
* ``rtml_scorer_checkpoints_total{alias, outcome}`` — online-model checkpoints.
* ``rtml_scorer_dead_letters_total{reason}`` — vectors refused by the scorer.
"""

from __future__ import annotations

from opentelemetry import metrics

from rtml_common.metric_buckets import DURATION_SECONDS
from rtml_models.base import F64

SCORE_BUCKETS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
ROW_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
#: Per-row latencies are microseconds when batched: finer low buckets than the shared ones.
LATENCY_BUCKETS = sorted({1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, *DURATION_SECONDS})
#: Scores per batch and model that go into the score histogram. A histogram ``record``
#: costs ~7 us (attribute hashing, a lock); per row that is ~0.6 s of CPU per second at
#: 30,000 rows/s with two shadows. A strided sample keeps the distribution (batches are
#: arbitrary slices of the stream) at a bounded cost; small batches are recorded whole.
SCORE_SAMPLES_PER_BATCH = 16


def score_sample(scores: F64) -> F64:
    """At most :data:`SCORE_SAMPLES_PER_BATCH` scores, evenly strided over the batch."""
    stride = -(-len(scores) // SCORE_SAMPLES_PER_BATCH)  # ceil
    return scores[::stride] if stride > 1 else scores


class ScorerMetrics:
    """The instruments, created once per scorer."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.scorer")
        self.scored = meter.create_counter("rtml_scorer_events_scored",
                                           description="Rows scored, by role and model version")
        self.latency = meter.create_histogram(
            "rtml_scorer_latency", unit="s",
            description="Per-row scoring time (batch predict time / rows), one sample per batch",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS)
        self.batch_rows = meter.create_histogram(
            "rtml_scorer_batch_rows", description="Rows per scored batch",
            explicit_bucket_boundaries_advisory=ROW_BUCKETS)
        self.scores = meter.create_histogram(
            "rtml_scorer_score", description="Scores by model version (sampled per batch)",
            explicit_bucket_boundaries_advisory=SCORE_BUCKETS)
        self.shadow_failures = meter.create_counter(
            "rtml_scorer_shadow_failures", description="Shadow batches that failed, by reason")
        self.shadows_detached = meter.create_counter(
            "rtml_scorer_shadows_detached",
            description="Shadows detached after consecutive failures")
        self.reloads = meter.create_counter(
            "rtml_scorer_reloads", description="Model snapshot swaps (hot reloads)")
        self.reloads.add(0)  # rare: exported as 0 from the start, so rate() has a series
        self.online_updates = meter.create_counter(
            "rtml_scorer_online_updates", description="Labels an online model learned from")
        self.labels = meter.create_counter(
            "rtml_scorer_labels", description="Labels by outcome (learned, unmatched, dropped)")
        self.checkpoints = meter.create_counter(
            "rtml_scorer_checkpoints", description="Online-model checkpoints registered")
        self.dead_letters = meter.create_counter(
            "rtml_scorer_dead_letters", description="Feature vectors the scorer refused")
