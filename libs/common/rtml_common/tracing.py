"""W3C trace context across Kafka hops, so one trace spans request → features → prediction.

HTTP requests bring their context in the ``traceparent`` / ``tracestate``
headers (FastAPI's own server span extracts it, see docs/observability.md);
every record a traced step produces carries the *same two headers*, written
by OpenTelemetry's :class:`TraceContextTextMapPropagator` as UTF-8 bytes, so
any W3C-aware consumer (Java, Go, kcat) can continue the trace.

Which span a consumer starts (decided here, once, for every service):

* **a step that handles records one at a time** (the feature worker: one
  vector per transaction) uses :func:`record_span`: a ``CONSUMER`` span whose
  *parent* is the producing span, current while the step runs, so what it
  produces and logs belongs to that trace;
* **a step that handles a batch as one unit** (one ``predict`` over many
  rows) uses :func:`record_spans` for per-record outputs — one span per traced
  record, parent = that record's context, timed by the batch's work — and may
  wrap the batch in :func:`batch_span`, a span with a *link* to each record's
  context (a span has one parent; links are how OpenTelemetry's messaging
  conventions relate a batch to many producers).

Cost, and why the helpers are shaped this way: a recorded SDK span costs
~10 µs, the scorer handles ~30k records/s. So nothing is started for a
record without a ``traceparent`` (a replay, a benchmark: the check is one
scan of 3-5 headers), and when this process does not record (tracing not
initialised: no SDK tracer provider) or the upstream did not sample the
trace (``traceparent`` flags ``-00``), the record's two headers are copied to
the outputs unparsed: the hop stays transparent and the trace unbroken, for
well under a microsecond. Sampling is decided once, where the trace starts
(``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` on the decision service);
every later hop follows the parent's decision.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The Kafka headers carrying a trace context: (name, UTF-8 value) pairs.
TraceHeaders = list[tuple[str, bytes]]
Headers = Sequence[tuple[str, bytes | None]]
Attributes = Mapping[str, AttributeValue]

_TRACE_KEYS = frozenset((TRACEPARENT, TRACESTATE))
_PROPAGATOR = TraceContextTextMapPropagator()
#: The SDK keeps at most 128 links per span by default; more would be dropped anyway.
MAX_LINKS = 128


class TracedRecord(Protocol):
    """What the helpers need of a consumed record (:class:`rtml_common.kafka.consumer.Record`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def headers(self) -> Headers: ...


def recording() -> bool:
    """True when a real tracer provider is installed (``init_telemetry`` or a test's SDK).

    The API's default provider makes every span a no-op; then the helpers
    only pass trace headers through.
    """
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


# -- headers ------------------------------------------------------------------


def trace_headers(headers: Headers | None) -> TraceHeaders:
    """The ``traceparent`` (and ``tracestate``) pairs of a record's headers; [] if untraced.

    For passing a context through unparsed (see the module docstring).
    """
    for key, _ in headers or ():  # the common case, no trace header: no list built
        if key in _TRACE_KEYS:
            break
    else:
        return []
    found: TraceHeaders = [(k, v) for k, v in headers or () if k in _TRACE_KEYS and v]
    if found and not any(key == TRACEPARENT for key, _ in found):
        return []  # a tracestate alone means nothing
    return found


def current_trace_headers(context: Context | None = None) -> TraceHeaders:
    """Headers carrying the active span's context (or ``context``'s); [] without a valid span.

    The no-span check is one context-variable read, so producers call this
    unconditionally.
    """
    if not trace.get_current_span(context).get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return [(key, value.encode()) for key, value in carrier.items()]


def inject(headers: Sequence[tuple[str, bytes]], context: Context | None = None
           ) -> list[tuple[str, bytes]]:
    """``headers`` plus the active (or given) context's trace headers (a new list)."""
    return [*headers, *current_trace_headers(context)]


def extract(headers: Headers | None) -> Context | None:
    """The producer's context from a record's headers; None if absent or malformed."""
    carrier = {key: value.decode("latin-1") for key, value in trace_headers(headers)}
    if not carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def _sampled(traceparent: bytes) -> bool:
    """The W3C ``sampled`` flag, read from the raw header (``00-<trace>-<span>-<flags>``)."""
    try:
        return bool(int(traceparent[-2:], 16) & 1)
    except ValueError:
        return False


def _record_attributes(record: TracedRecord, attributes: Attributes | None
                       ) -> dict[str, AttributeValue]:
    values: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if attributes:
        values.update(attributes)
    return values


# -- consumer-side spans ---------------------------------------------------------


@dataclass
class RecordTrace:
    """A record's consumer-side trace: the span (if one was started) and headers for outputs."""

    #: Put these on every record produced for this input (may be empty).
    headers: TraceHeaders = field(default_factory=list)
    span: Span = trace.INVALID_SPAN


#: Shared by every untraced record: no generator, no allocation on the common path.
_UNTRACED = nullcontext(RecordTrace())


def _should_record(headers: TraceHeaders) -> bool:
    """A span is worth starting: this process records and the upstream sampled the trace."""
    traceparent = next(value for key, value in headers if key == TRACEPARENT)
    return _sampled(traceparent) and recording()


def record_span(tracer: Tracer, name: str, record: TracedRecord,
                attributes: Attributes | None = None) -> AbstractContextManager[RecordTrace]:
    """Run a block as the consumer-side span of ``record``: parent = the producing span.

    The span is current inside the block (logs carry its trace id; typed
    :meth:`EventProducer.send` calls inject it) and its context is in the
    entered value's ``headers``. Untraced record: no span, no headers. Not
    recording or not sampled: no span, the record's own trace headers passed
    through.
    """
    incoming = trace_headers(record.headers)
    if not incoming:
        return _UNTRACED
    context = extract(incoming) if _should_record(incoming) else None
    if context is None:
        return nullcontext(RecordTrace(incoming))
    return _consumer_span(tracer, name, context, record, attributes)


@contextmanager
def _consumer_span(tracer: Tracer, name: str, context: Context, record: TracedRecord,
                   attributes: Attributes | None) -> Iterator[RecordTrace]:
    with tracer.start_as_current_span(name, context=context, kind=SpanKind.CONSUMER,
                                      attributes=_record_attributes(record, attributes)
                                      ) as span:
        yield RecordTrace(current_trace_headers(), span)


def record_spans(tracer: Tracer, name: str, records: Sequence[TracedRecord],
                 start_time_ns: int, attributes: Attributes | None = None
                 ) -> dict[int, TraceHeaders]:
    """One span per traced record of a batch handled as a unit; index -> output headers.

    Each span's parent is its record's producing span; it starts at
    ``start_time_ns`` (``time.time_ns()`` when the batch's work began) and ends
    now, so it shows the work the record shared. Records without a
    ``traceparent`` are absent from the result (the common, cheap case);
    unrecorded / unsampled ones map to their own headers (pass-through).
    """
    out: dict[int, TraceHeaders] = {}
    record_now: bool | None = None
    end_ns = 0
    for index, record in enumerate(records):
        incoming = trace_headers(record.headers)
        if not incoming:
            continue
        if record_now is None:
            record_now, end_ns = recording(), time.time_ns()
        traceparent = next(value for key, value in incoming if key == TRACEPARENT)
        context = extract(incoming) if record_now and _sampled(traceparent) else None
        if context is None:
            out[index] = incoming
            continue
        span = tracer.start_span(name, context=context, kind=SpanKind.CONSUMER,
                                 attributes=_record_attributes(record, attributes),
                                 start_time=start_time_ns)
        out[index] = current_trace_headers(trace.set_span_in_context(span))
        span.end(end_time=end_ns)
    return out


@contextmanager
def batch_span(tracer: Tracer, name: str, records: Sequence[TracedRecord],
               attributes: Attributes | None = None) -> Iterator[Span]:
    """A span around a whole batch, *linked* to each traced, sampled record's context.

    Its parent is whatever is current (usually nothing: a new trace per
    batch). Started only when recording and at least one record is traced
    and sampled — an untraced stream does not make a trace per batch; then
    the block runs under :data:`opentelemetry.trace.INVALID_SPAN`. At most
    :data:`MAX_LINKS` links.
    """
    links: list[Link] = []
    if recording():
        for record in records:
            incoming = trace_headers(record.headers)
            if not incoming or not _should_record(incoming):
                continue
            context = extract(incoming)
            if context is not None:
                links.append(Link(trace.get_current_span(context).get_span_context()))
                if len(links) >= MAX_LINKS:
                    break
    if not links:
        yield trace.INVALID_SPAN
        return
    values: dict[str, AttributeValue] = {"messaging.system": "kafka",
                                         "messaging.operation.type": "process",
                                         "messaging.batch.message_count": len(records)}
    values.update(attributes or {})
    with tracer.start_as_current_span(name, kind=SpanKind.CONSUMER, links=links,
                                      attributes=values) as span:
        yield span
