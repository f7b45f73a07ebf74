"""The retrain worker's Prometheus metrics (OpenTelemetry instruments; no-ops before telemetry).

Names as exported (counters get ``_total``, histograms ``_bucket``/``_sum``/``_count``):

* ``rtml_retrain_worker_archived_events_total{kind}`` — transactions / labels written to segments.
* ``rtml_retrain_worker_segments_total{kind}`` — segment files written.
* ``rtml_retrain_worker_requests_total{outcome}`` — delivered requests: new, duplicate, ignored.
* ``rtml_retrain_worker_pending_requests`` (gauge) — requests waiting to be trained.
* ``rtml_retrain_worker_trainings_total{outcome}`` — trainings by outcome: ``shadowed``
  (registered and set as challenger), ``refused`` (the registry refused the alias, its
  reason in ``reason``), ``failed`` (no split / error after the retries), ``error``
  (one failed attempt that will be retried).
* ``rtml_retrain_worker_training_seconds`` — histogram: build set + train + register.
* ``rtml_retrain_worker_last_trained_version`` (gauge) — the newest version this worker
  registered, as a number.
* ``rtml_retrain_worker_label_lag_seconds`` (gauge) — how far (label time) the archive's
  label clock is behind what the pending burst needs (its earliest-served request's);
  0 when nothing waits.
"""

from __future__ import annotations

from opentelemetry import metrics

#: A retrain takes seconds on a replay-sized archive, minutes on months of traffic.
TRAINING_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600]


class WorkerMetrics:
    """The instruments, created once per worker."""

    def __init__(self) -> None:
        meter = metrics.get_meter("rtml.retrain_worker")
        prefix = "rtml_retrain_worker_"
        self.archived = meter.create_counter(
            prefix + "archived_events", description="Events written to archive segments, by kind")
        self.segments = meter.create_counter(
            prefix + "segments", description="Archive segment files written, by kind")
        self.requests = meter.create_counter(
            prefix + "requests", description="Retrain requests delivered, by outcome")
        self.pending = meter.create_gauge(
            prefix + "pending_requests", description="Retrain requests waiting to be trained")
        self.trainings = meter.create_counter(
            prefix + "trainings", description="Trainings by outcome (and refusal reason)")
        self.training_seconds = meter.create_histogram(
            prefix + "training", unit="s",
            description="Time to build the training set, train, register and shadow",
            explicit_bucket_boundaries_advisory=TRAINING_BUCKETS)
        self.last_version = meter.create_gauge(
            prefix + "last_trained_version", description="Newest version this worker registered")
        self.label_lag = meter.create_gauge(
            prefix + "label_lag", unit="s",
            description="Label time still missing before the pending requests can train")
