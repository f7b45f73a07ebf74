"""The decision-log writer: ``decisions`` topic -> Cassandra, never losing a decision.

Why Kafka in between: the API must answer within milliseconds even when
Cassandra is slow or down, and must not lose the decision either. So the
API only publishes to ``decisions`` (durable, replicated) and this writer,
a consumer group of its own (:data:`GROUP_ID`), copies the topic into the
decision log. :class:`~rtml_common.kafka.consumer.ConsumerLoop` commits
offsets only after the handler returned, and the handler returns only once
Cassandra accepted the whole batch: while Cassandra is down or timing out the
handler raises :class:`~rtml_common.dependency.DependencyUnavailable`, which
the loop waits out like any dependency's outage (retried without a bound,
capped exponential backoff, never dead-lettered), so decisions wait on Kafka
and are written when it is back. A row the server *refuses* (an invalid
request: retrying can't help) is raised as is to the loop, which retries it
alone and dead-letters it to ``decisions.dlq`` instead of blocking every later
decision. Rows are keyed by transaction id, so the replays this implies never
duplicate a row.

Stopping while Cassandra is still down interrupts the loop's wait: the batch
is neither dead-lettered nor committed, and the next writer starts with it.

Runs as a thread inside the service (``RTML_DECISION_LOG_WRITER=true``,
the default) or alone: ``python -m rtml_decision.log_writer``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from cassandra import RequestValidationException

from rtml_common.config import CassandraSettings, KafkaSettings, TelemetrySettings
from rtml_common.dependency import DependencyUnavailable
from rtml_common.events import Decision, Event
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.topics import spec_for_event
from rtml_decision.decision_log.base import DecisionLog, LoggedDecision
from rtml_decision.metrics import DecisionMetrics

logger = logging.getLogger(__name__)

GROUP_ID = "rtml-decision-log-writer"
#: Errors about the row itself (the server refused it), not about availability.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (RequestValidationException,)
DECISIONS_TOPIC = spec_for_event(Decision).name


class DecisionLogWriter:
    """Consumes ``decisions`` into ``log``; :meth:`run` blocks, :meth:`start` uses a thread."""

    def __init__(self, log: DecisionLog, kafka: KafkaSettings | None = None,
                 group_id: str = GROUP_ID, metrics: DecisionMetrics | None = None) -> None:
        self.log = log
        self.metrics = metrics or DecisionMetrics()
        topics: dict[str, type[Event]] = {DECISIONS_TOPIC: Decision}
        self.loop = ConsumerLoop(topics, group_id, self.handle, kafka)
        self.written = 0
        self.failed_attempts = 0
        self._thread: threading.Thread | None = None

    def handle(self, records: list[Record[Any]]) -> None:
        """Write the batch; the loop retries it until the log accepts it (or it stops)."""
        rows = [LoggedDecision(r.value, dict(r.value.inputs)) for r in records]
        self.metrics.log_pending(len(rows))
        try:
            self.log.write_many(rows)
        except PERMANENT_ERRORS:
            raise  # retrying can't fix it: the loop isolates and dead-letters the record
        except Exception as error:  # Cassandra down or timing out: the loop waits, keeps it
            self.failed_attempts += 1
            self.metrics.log_failed()
            raise DependencyUnavailable(f"decision log: {error!r}") from error
        self.written += len(rows)
        self.metrics.log_written(len(rows))

    def run(self) -> None:
        self.loop.run()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="decision-log-writer",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.loop.stop()  # also interrupts a wait for Cassandra
        if self._thread is not None:
            self._thread.join(timeout_s)


def main() -> int:
    """``python -m rtml_decision.log_writer``: run the writer until SIGTERM/SIGINT."""
    from rtml_common.telemetry import init_telemetry
    from rtml_decision import SERVICE_NAME
    from rtml_decision.decision_log.cassandra import CassandraDecisionLog

    init_telemetry(f"{SERVICE_NAME}-log-writer", TelemetrySettings())
    try:
        log = CassandraDecisionLog.from_settings(CassandraSettings())
    except Exception as error:
        logger.error("cannot open the decision log: %s", error)
        return 1
    writer = DecisionLogWriter(log, KafkaSettings())

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        # Interrupts the loop's wait too: during a Cassandra outage the loop sits in it.
        logger.info("signal %s received: stopping", signum)
        writer.loop.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        writer.run()
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
