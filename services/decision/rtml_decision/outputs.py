"""Publishing a decision and its transaction without blocking the request.

``send_raw`` only queues the record in librdkafka's local buffer (the
network write happens on the client's thread), so the request never waits
for the broker. Durability of the decision log rests on the ``decisions``
topic: the log writer consumes it into Cassandra (see
:mod:`rtml_decision.log_writer`). The transaction goes to ``transactions``
so the streaming features (and, downstream, the scorer's shadow models)
see it: shadows are scored off the request path (a request of another
feature set's schema goes to that schema's topic, :func:`route_schema`). Both records carry the
request's W3C trace context (``traceparent``), so the feature pipeline and
the scorer continue its trace.

A background thread flushes periodically so delivery failures surface in
the logs and metrics instead of accumulating unseen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rtml_common.events import Decision, Event, Transaction
from rtml_common.kafka.producer import DeliveryError, EventProducer
from rtml_common.schema import EventSchema
from rtml_common.serde import Headers, encode, headers_for
from rtml_common.topics import spec_for_event
from rtml_common.tracing import current_trace_headers
from rtml_decision.decision_events import encode_decision
from rtml_decision.metrics import DecisionMetrics

logger = logging.getLogger(__name__)

DECISIONS = spec_for_event(Decision)
TRANSACTIONS = spec_for_event(Transaction)
_TX_HEADERS = headers_for(Transaction)


_ROUTES: dict[type[Event], tuple[str, Headers]] = {
    Transaction: (TRANSACTIONS.name, _TX_HEADERS)}


def route_schema(model: type[Event], schema: EventSchema) -> None:
    """Publish requests of ``model`` (generated from ``schema``) on the schema's topic with
    the model's headers (what the schema's consumers check); the engine calls it once."""
    if model is not Transaction:
        _ROUTES[model] = (schema.topic, headers_for(model))


def transaction_route(model: type[Event]) -> tuple[str, Headers]:
    """The topic and headers of a request of ``model`` (see :func:`route_schema`)."""
    try:
        return _ROUTES[model]
    except KeyError:
        raise TypeError(f"no topic is known for {model.__name__} requests "
                        "(route_schema was not called)") from None


class DecisionPublisher:
    """Queues decisions on ``decisions`` and transactions on ``transactions``."""

    def __init__(self, producer: EventProducer, metrics: DecisionMetrics,
                 flush_interval_s: float = 1.0,
                 new_producer: Callable[[], EventProducer] | None = None) -> None:
        self.producer = producer
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        #: Makes the producer again when the app starts after a shutdown released it (an
        #: ASGI lifespan runs once per server, but test harnesses may cycle it).
        self._new_producer = new_producer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, decision: Decision, transaction: Event) -> None:
        """Queue both records (keyed by customer id, like every per-customer topic).

        The transaction goes to its schema's topic with its model's headers
        (:func:`transaction_route`); the decision's ``customer_id`` is the request's
        partition key, so both share the key.
        """
        key = decision.customer_id.encode()
        value, headers = encode_decision(decision)
        traced = current_trace_headers()  # the request's trace continues downstream
        topic, tx_headers = transaction_route(type(transaction))
        if traced:
            headers, tx_headers = [*headers, *traced], [*tx_headers, *traced]
        self.producer.send_raw(DECISIONS.name, key, value, headers)
        self.producer.send_raw(topic, key, encode(transaction), tx_headers)

    def start(self) -> None:
        """Start the periodic flusher (idempotent); after :meth:`close`, with a new producer."""
        if self.producer.closed:
            if self._new_producer is None:
                raise RuntimeError("the decision publisher was closed and cannot make a new "
                                   "producer")
            self.producer = self._new_producer()
            self._stop = threading.Event()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decision-flusher",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush(timeout_s=self.flush_interval_s)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait for queued records; False (logged, counted) if some were not delivered."""
        try:
            self.producer.flush(timeout_s)
        except DeliveryError as error:
            if error.failures:
                self.metrics.undelivered(len(error.failures))
                logger.error("decisions/transactions not delivered: %s", error)
            return not error.failures
        return True

    def close(self) -> None:
        """Stop the flusher, deliver what is queued and release the producer (an open
        one keeps reconnecting to a broker that is gone)."""
        if self.producer.closed:  # closed already: a second shutdown has nothing to do
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        self.producer.close(flush=False)
