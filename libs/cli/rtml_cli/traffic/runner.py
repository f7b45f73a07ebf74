"""One traffic run: check the API and the broker, send open loop, publish labels, summarise.

Pieces: :mod:`.source` (payments and which one a slot sends), :mod:`.pacing`
(slot times, event-time mapping, the open loop), :mod:`.sender` (HTTP),
:mod:`.labels` (delayed labels to Kafka), :mod:`.stats` (counters). This
module wires them and owns the stop: on ``stop`` (a signal), ``--duration`` or
the end of the data the loop sends nothing more, requests in flight get up to
their timeout to answer, labels due by then are produced, the rest counted as
pending (or flushed, ``--flush-pending-labels``), and the producer is flushed
within ``RTML_KAFKA_FLUSH_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from rtml_cli.traffic.labels import LabelPublisher, LabelSchedule, label_delay
from rtml_cli.traffic.pacing import (
    EXHAUSTED,
    Exhausted,
    LoopCounts,
    TimeMapping,
    data_time,
    map_time,
    run_open_loop,
    stoppable_sleep,
)
from rtml_cli.traffic.sender import Answer, ApiUnavailable, DecisionClient
from rtml_cli.traffic.settings import TrafficSettings
from rtml_cli.traffic.source import SlotPicker, TrafficSource, load_source, served_extra_fields
from rtml_cli.traffic.stats import TrafficStats
from rtml_common.config import KafkaSettings
from rtml_common.events import Transaction
from rtml_common.kafka.admin import ensure_topics
from rtml_common.kafka.producer import DeliveryError, EventProducer

#: How often due labels are looked for (their lateness is at most this).
LABEL_TICK_S = 0.1


class TrafficError(RuntimeError):
    """The run cannot start; the message says why and what to do."""


def default_run_id(now: datetime) -> str:
    """``traffic-<UTC time>-<random>``: a new id prefix for every run."""
    return f"traffic-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def run_traffic(settings: TrafficSettings, kafka: KafkaSettings, stop: asyncio.Event,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """Run until ``stop``, the duration or the end of the data; return the summary.

    Raises :class:`TrafficError` (or :class:`~rtml_cli.traffic.source.SourceError`)
    before sending anything when the data set, the API or the broker is not usable.
    """
    source = load_source(settings.data, settings.start_day, served_extra_fields())
    now = datetime.now(UTC)
    if settings.event_times == "data":
        mapping = data_time(source.start_time, settings.speed, source.span_us,
                            settings.duration_s)
        if settings.max_event_age_s is not None and (
                now - source.start_time).total_seconds() > settings.max_event_age_s:
            raise TrafficError(
                f"--event-times data sends the data set's own times (from "
                f"{_iso(source.start_time)}), older than the API's max event age "
                f"({settings.max_event_age_s:g} s): use --event-times now")
    else:
        mapping = map_time(now, settings.speed, source.span_us, settings.duration_s)
    if (settings.event_times == "now" and settings.max_event_age_s is not None
            and mapping.oldest_age_s > settings.max_event_age_s):
        longest = settings.max_event_age_s / max(settings.speed - 1.0, 1e-9)
        raise TrafficError(
            f"at speed {settings.speed:g} a run of {mapping.horizon_s:g} s starts its event "
            f"clock {mapping.oldest_age_s:,.0f} s in the past, beyond the API's max event age "
            f"({settings.max_event_age_s:g} s): pass --duration of at most {longest:.0f} s, "
            "or a lower --speed")
    client = DecisionClient(settings.api_url, settings.request_timeout_s,
                            settings.max_in_flight)
    try:
        try:
            await client.wait_ready(settings.connect_wait_s)
        except ApiUnavailable as exc:
            raise TrafficError(str(exc)) from None
        await _ensure_labels_topic(kafka, settings)
        run_id = settings.run_id or default_run_id(now)
        producer = EventProducer(kafka)
        return await _Run(settings, kafka, source, mapping, client, producer,
                          log).run(stop, run_id)
    finally:
        await client.aclose()


async def _ensure_labels_topic(kafka: KafkaSettings, settings: TrafficSettings) -> None:
    try:
        await asyncio.to_thread(ensure_topics, kafka.bootstrap_servers, [settings.labels_topic],
                                timeout_s=max(settings.connect_wait_s, 1.0))
    except KafkaException as exc:
        raise TrafficError(
            f"Kafka at {kafka.bootstrap_servers} is not usable for topic "
            f"{settings.labels_topic!r}: {exc.args[0] if exc.args else exc} "
            "(--bootstrap-servers / RTML_KAFKA_BOOTSTRAP_SERVERS)") from None


class _Run:
    """State of a run while it sends (one instance per run)."""

    def __init__(self, settings: TrafficSettings, kafka: KafkaSettings, source: TrafficSource,
                 mapping: TimeMapping, client: DecisionClient, producer: EventProducer,
                 log: Callable[[str], None]) -> None:
        self.settings = settings
        self.kafka = kafka
        self.source = source
        self.mapping = mapping
        self.client = client
        self.producer = producer
        self.log = log
        self.delay = label_delay(settings.speed, settings.label_delay_s)
        self.picker = SlotPicker(source.offsets_us)
        self.stats = TrafficStats()
        self.counts = LoopCounts()
        self.schedule = LabelSchedule()
        self.publisher = LabelPublisher(producer, settings.labels_topic)
        self.exhausted = False
        self.first_event: datetime | None = None
        self.last_event: datetime | None = None
        self.in_flight = 0

    def _plan(self, run_id: str) -> Callable[[int], tuple[int, Transaction] | Exhausted | None]:
        rate, source, mapping, picker = (self.settings.rate, self.source, self.mapping,
                                         self.picker)

        def plan(i: int) -> tuple[int, Transaction] | Exhausted | None:
            position = mapping.position_us(i / rate)
            if picker.exhausted or position >= source.span_us:
                self.exhausted = True
                return EXHAUSTED
            row = picker.pick(position)
            if row is None:
                return None
            event_time = mapping.event_time(int(source.offsets_us[row]))
            if self.first_event is None:
                self.first_event = event_time
            self.last_event = event_time
            return row, source.transaction(row, run_id, event_time)

        return plan

    async def _send(self, run_id: str, item: tuple[int, Transaction]) -> None:
        row, transaction = item
        self.in_flight += 1
        try:
            answer: Answer = await self.client.decide(transaction, self.source.extra(row))
        finally:
            self.in_flight -= 1
        self.stats.record(answer)
        if answer.accepted:
            due = self.mapping.wall_s(int(self.source.offsets_us[row])) + self.delay.wall_s
            self.schedule.add(self.source.label(row, run_id, transaction.event_time,
                                                self.delay.event), due)

    async def run(self, stop: asyncio.Event, run_id: str) -> dict[str, Any]:
        settings = self.settings
        self.log(f"traffic {run_id}: {settings.rate:g} req/s to {settings.api_url}, event time "
                 f"x{settings.speed:g} from {_iso(self.mapping.anchor)}, labels to "
                 f"{settings.labels_topic!r} after {self.delay.wall_s:g} s")
        offered = len(self.source) / (self.source.span_us / 1e6) * settings.speed
        self.log(f"data set: {len(self.source)} payments from day {settings.start_day}, "
                 f"~{offered:,.1f}/s at this speed: "
                 + ("payments between slots are skipped" if offered > settings.rate
                    else "slots with no payment due stay idle (the rate is capped)"))
        start = time.monotonic()
        done = asyncio.Event()
        tickers = [asyncio.create_task(self._labels_loop(start, done)),
                   asyncio.create_task(self._progress_loop(start, done))]
        plan = self._plan(run_id)

        async def send(item: tuple[int, Transaction]) -> None:
            await self._send(run_id, item)

        pending = await run_open_loop(
            rate=settings.rate, max_in_flight=settings.max_in_flight, plan=plan,
            send=send, stop=stop, start=start, end_s=self.mapping.horizon_s,
            counts=self.counts, sleep=stoppable_sleep(stop))
        cancelled = 0
        if pending:
            _, late = await asyncio.wait(pending, timeout=settings.request_timeout_s + 1.0)
            for task in late:
                task.cancel()
            cancelled = len(late)
        done.set()
        await asyncio.gather(*tickers)
        elapsed = time.monotonic() - start
        self.publisher.publish(self.schedule.pop_due(elapsed))
        flushed = 0
        if settings.flush_pending_labels:
            remaining = self.schedule.drain()
            self.publisher.publish(remaining)
            flushed = len(remaining)
        failed = await self._flush()
        stopped_by = ("signal" if stop.is_set() else "data_end" if self.exhausted
                      or settings.duration_s is None
                      or settings.duration_s > self.mapping.horizon_s else "duration")
        return {
            "run_id": run_id,
            "api_url": settings.api_url,
            "rate": settings.rate,
            "speed": settings.speed,
            "start_day": settings.start_day,
            "stopped_by": stopped_by,
            "seconds": round(elapsed, 3),
            "slots": self.counts.slots,
            "sent": self.counts.sent,
            "achieved_rate": round(self.counts.sent / elapsed, 3) if elapsed > 0 else 0.0,
            "behind_schedule": self.counts.behind,
            "unsent_at_stop": self.counts.unsent,
            "max_lag_ms": round(self.counts.max_lag_s * 1000.0, 3),
            "idle_slots": self.picker.idle,
            "skipped_transactions": self.picker.skipped,
            "cancelled_at_stop": cancelled,
            **self.stats.as_dict(),
            "labels": {
                "topic": settings.labels_topic,
                "produced": self.publisher.produced - failed,
                "flushed_pending": flushed,
                "pending": len(self.schedule),
                "failed": failed,
                "delay_s": self.delay.wall_s,
                "delay_event_s": self.delay.event.total_seconds(),
            },
            "event_time": {"mode": settings.event_times,
                           "first": _iso(self.first_event), "last": _iso(self.last_event),
                           "anchor": _iso(self.mapping.anchor),
                           # The data set's own times are as old as the data set is.
                           "oldest_age_s": round(
                               self.mapping.oldest_age_s if settings.event_times == "now"
                               else (datetime.now(UTC) - self.mapping.anchor).total_seconds(),
                               3)},
        }

    async def _flush(self) -> int:
        """Wait for the labels' delivery; returns how many the broker did not take."""
        try:
            await asyncio.to_thread(self.producer.flush, self.kafka.flush_timeout_s)
        except DeliveryError as exc:
            self.log(f"labels not delivered: {exc}")
            return len(exc.failures) + exc.undelivered
        return 0

    async def _labels_loop(self, start: float, done: asyncio.Event) -> None:
        sleep = stoppable_sleep(done)
        while not done.is_set():
            self.publisher.publish(self.schedule.pop_due(time.monotonic() - start))
            await sleep(LABEL_TICK_S)

    async def _progress_loop(self, start: float, done: asyncio.Event) -> None:
        sleep = stoppable_sleep(done)
        while True:
            await sleep(self.settings.progress_s)
            if done.is_set():
                return
            elapsed = time.monotonic() - start
            clock = self.mapping.event_time(
                self.mapping.position_us(min(elapsed, self.mapping.horizon_s)))
            self.log(self.stats.progress_line(
                elapsed_s=elapsed, sent=self.counts.sent, behind=self.counts.behind,
                idle=self.picker.idle, in_flight=self.in_flight,
                labels_produced=self.publisher.produced,
                labels_waiting=len(self.schedule), event_clock=f"{clock:%Y-%m-%d %H:%M}"))
