"""W3C trace context through Kafka headers (rtml_common.tracing, EventProducer, ConsumerLoop).

Spans are collected by OpenTelemetry's in-memory exporter on the process's
SDK tracer provider (installed once: providers are process-global). The
"tracing not initialised" case runs in a fresh interpreter for that reason.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rtml_common.asgi import TraceContext
from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.consumer import ConsumerLoop, Record
from rtml_common.kafka.producer import EventProducer
from rtml_common.serde import header_value
from rtml_common.telemetry import JsonLogFormatter
from rtml_common.tracing import (
    TRACEPARENT,
    TRACESTATE,
    batch_span,
    current_trace_headers,
    extract,
    inject,
    record_span,
    record_spans,
    trace_headers,
)
from rtml_localstack.testing import TEST_SESSION_TIMEOUT_MS, in_memory_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return in_memory_spans()


@pytest.fixture
def tracer(spans: InMemorySpanExporter) -> trace.Tracer:
    spans.clear()
    return trace.get_tracer("test")


@dataclass
class FakeRecord:
    """The fields the helpers read of a consumed Record (pure logic: no broker needed)."""

    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    topic: str = "features"
    partition: int = 0
    offset: int = 7


def traceparent(span_id: str = PARENT_ID, flags: str = "01") -> bytes:
    return f"00-{TRACE_ID}-{span_id}-{flags}".encode()


def by_name(exported: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [s for s in exported if s.name == name]
    return span


# -- unit: headers ------------------------------------------------------------


def test_inject_then_extract_round_trips_the_span_and_tracestate(
        tracer: trace.Tracer) -> None:
    incoming = [("rtml-event-type", b"Transaction"), (TRACEPARENT, traceparent()),
                (TRACESTATE, b"vendor=abc")]
    parent = extract(incoming)
    assert parent is not None
    with tracer.start_as_current_span("produce", context=parent) as span:
        headers = inject([("rtml-event-type", b"Transaction")])
    context = span.get_span_context()
    assert headers[0] == ("rtml-event-type", b"Transaction")
    assert header_value(headers, TRACEPARENT) == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-01".encode())
    assert header_value(headers, TRACESTATE) == b"vendor=abc"
    restored = extract(headers)
    assert restored is not None
    restored_context = trace.get_current_span(restored).get_span_context()
    assert (restored_context.trace_id, restored_context.span_id) == (
        context.trace_id, context.span_id)
    assert restored_context.is_remote
    assert f"{context.trace_id:032x}" == TRACE_ID  # the incoming trace continued


def test_no_span_means_no_headers_and_nothing_to_extract(tracer: trace.Tracer) -> None:
    assert current_trace_headers() == []
    assert inject([("a", b"1")]) == [("a", b"1")]
    assert extract([("a", b"1")]) is None
    assert extract([(TRACEPARENT, b"garbage")]) is None
    assert extract([(TRACESTATE, b"vendor=abc")]) is None  # tracestate alone is nothing
    assert trace_headers([(TRACESTATE, b"vendor=abc")]) == []


def test_untraced_record_starts_no_span(tracer: trace.Tracer,
                                        spans: InMemorySpanExporter) -> None:
    with record_span(tracer, "work", FakeRecord([("rtml-event-type", b"X")])) as traced:
        assert traced.headers == []
        assert not traced.span.get_span_context().is_valid
    assert spans.get_finished_spans() == ()


def test_unsampled_record_passes_its_context_through_unparsed(
        tracer: trace.Tracer, spans: InMemorySpanExporter) -> None:
    incoming = [(TRACEPARENT, traceparent(flags="00")), (TRACESTATE, b"v=1")]
    with record_span(tracer, "work", FakeRecord(list(incoming))) as traced:
        assert traced.headers == incoming
    assert spans.get_finished_spans() == ()


# -- unit: consumer-side spans ---------------------------------------------------


def test_record_span_is_a_consumer_child_of_the_producing_span(
        tracer: trace.Tracer, spans: InMemorySpanExporter) -> None:
    record = FakeRecord([(TRACEPARENT, traceparent())], offset=42)
    with record_span(tracer, "work", record, {"rtml.id": "x"}) as traced:
        assert trace.get_current_span() is traced.span  # current inside the block
    span = by_name(spans.get_finished_spans(), "work")
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_ID
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.attributes is not None
    assert span.attributes["messaging.kafka.offset"] == 42
    assert span.attributes["rtml.id"] == "x"
    assert header_value(traced.headers, TRACEPARENT) == traceparent(f"{span.context.span_id:016x}")


def test_record_spans_for_a_batch_cover_traced_records_only(
        tracer: trace.Tracer, spans: InMemorySpanExporter) -> None:
    other = "1111111111111111"
    records = [FakeRecord([(TRACEPARENT, traceparent())]), FakeRecord([("x", b"1")]),
               FakeRecord([(TRACEPARENT, traceparent(other))]),
               FakeRecord([(TRACEPARENT, traceparent(flags="00"))])]
    start = 1_700_000_000_000_000_000
    out = record_spans(tracer, "score", records, start)
    assert sorted(out) == [0, 2, 3]
    assert out[3] == records[3].headers  # unsampled: passed through
    exported = spans.get_finished_spans()
    assert len(exported) == 2
    parents = {f"{s.parent.span_id:016x}": s for s in exported if s.parent}
    assert set(parents) == {PARENT_ID, other}
    for index, parent in ((0, PARENT_ID), (2, other)):
        span = parents[parent]
        assert span.start_time == start
        assert header_value(out[index], TRACEPARENT) == traceparent(
            f"{span.context.span_id:016x}")


def test_batch_span_links_each_traced_record(tracer: trace.Tracer,
                                             spans: InMemorySpanExporter) -> None:
    other = "2222222222222222"
    records = [FakeRecord([(TRACEPARENT, traceparent())]), FakeRecord(),
               FakeRecord([(TRACEPARENT, traceparent(other))])]
    with batch_span(tracer, "batch", records) as span:
        assert span.get_span_context().is_valid
    with batch_span(tracer, "empty", [FakeRecord()]) as span:
        assert not span.get_span_context().is_valid  # untraced batch: no new trace
    batch = by_name(spans.get_finished_spans(), "batch")
    assert batch.parent is None
    assert sorted(f"{link.context.span_id:016x}" for link in batch.links) == sorted(
        [PARENT_ID, other])
    assert all(f"{link.context.trace_id:032x}" == TRACE_ID for link in batch.links)
    assert [s.name for s in spans.get_finished_spans()] == ["batch"]


def test_without_a_tracer_provider_records_pass_their_context_through() -> None:
    code = textwrap.dedent(f"""
        from opentelemetry import trace
        from rtml_common.tracing import record_span, record_spans, recording
        class R:
            topic, partition, offset = "t", 0, 1
            headers = [("traceparent", b"00-{TRACE_ID}-{PARENT_ID}-01")]
        assert not recording()
        with record_span(trace.get_tracer("x"), "work", R()) as traced:
            assert traced.headers == R.headers, traced.headers
            assert not traced.span.get_span_context().is_valid
        assert record_spans(trace.get_tracer("x"), "s", [R()], 0) == {{0: R.headers}}
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- integration: across a real broker --------------------------------------------


@pytest.mark.integration
def test_a_consumer_span_is_the_child_of_the_producer_span_across_kafka(
        kafka_broker: Any, tracer: trace.Tracer, spans: InMemorySpanExporter) -> None:
    topic = f"trace-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers,
                             session_timeout_ms=TEST_SESSION_TIMEOUT_MS, poll_timeout_s=0.2,
                             idempotent_producer=False)
    transaction = Transaction(transaction_id=uuid.uuid4().hex, customer_id="c1",
                              event_time=datetime(2024, 1, 1, tzinfo=UTC), amount=5.0)
    with (tracer.start_as_current_span("produce", kind=SpanKind.PRODUCER) as producing,
          EventProducer(settings) as producer):
        producer.send(transaction, topic=topic)  # the trace context is added by send
    with EventProducer(settings) as producer:
        # No span: no headers. The traced record's key (its customer): one partition, so the
        # two are consumed in the order they were produced.
        producer.send(transaction, topic=topic, key=b"c1")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter("test"))
    log = logging.getLogger("rtml.test.tracing")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    seen: list[Record[Any]] = []
    consumer_span_ids: list[int] = []

    def handle(records: list[Record[Any]]) -> None:
        for record in records:
            seen.append(record)
            with record_span(tracer, "consume", record) as traced:
                if traced.span.get_span_context().is_valid:
                    consumer_span_ids.append(traced.span.get_span_context().span_id)
                log.info("handled %s", record.key)
        if len(seen) >= 2:
            loop.stop()

    loop = ConsumerLoop({topic: Transaction}, f"g-{topic}", handle, settings)
    try:
        loop.run(max_idle_s=20)
    finally:
        log.removeHandler(handler)
    assert len(seen) == 2
    assert header_value(seen[1].headers, TRACEPARENT) is None  # untraced record stays so

    consume = by_name(spans.get_finished_spans(), "consume")
    produced = producing.get_span_context()
    assert consume.context.trace_id == produced.trace_id
    assert consume.parent is not None and consume.parent.span_id == produced.span_id
    assert consume.parent.is_remote
    assert consume.attributes is not None
    assert consume.attributes["messaging.destination.name"] == topic
    assert consumer_span_ids == [consume.context.span_id]

    traced_line, untraced_line = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert traced_line["trace_id"] == f"{produced.trace_id:032x}"
    assert traced_line["span_id"] == f"{consume.context.span_id:016x}"
    assert "trace_id" not in untraced_line


# -- HTTP: the caller's context ------------------------------------------------------


def test_trace_context_middleware_makes_the_callers_span_the_parent(
        tracer: trace.Tracer, spans: InMemorySpanExporter) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("handler"):
            pass

    async def call(headers: list[tuple[bytes, bytes]]) -> None:
        await TraceContext(app)({"type": "http", "headers": headers}, None, None)

    asyncio.run(call([(b"traceparent", traceparent()), (b"content-type", b"x")]))
    asyncio.run(call([(b"content-type", b"x")]))
    traced, untraced = spans.get_finished_spans()
    assert traced.parent is not None and f"{traced.parent.span_id:016x}" == PARENT_ID
    assert f"{traced.context.trace_id:032x}" == TRACE_ID
    assert untraced.parent is None and f"{untraced.context.trace_id:032x}" != TRACE_ID
    assert not trace.get_current_span().get_span_context().is_valid  # detached afterwards
