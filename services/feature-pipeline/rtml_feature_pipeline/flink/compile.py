"""Compile a :class:`~rtml_features.definitions.FeatureSet` into Flink SQL.

Pure Python (no PyFlink import), so the compile-time checks and the
generated SQL are unit-tested in the main virtualenv; :mod:`.job` runs the
statements inside the Flink virtualenv.

How a window becomes SQL
------------------------

Flink's streaming OVER windows only run from some point *before* the current
row up to the current row, and every OVER aggregate of one SELECT must share
one window. A label-delayed window ``(t - (n + d), t - d]`` does not fit that
shape, and a label's fraud flag counts only from when the label is known. So
every count, sum and mean is turned into *interval contributions*, the same
way the batch engine (:mod:`rtml_features.batch`) does it (min and max: see
below):

* transaction ``j`` of an entity (time ``s_j``) contributes to every
  transaction of that entity at a time ``t`` in ``[s_j + d, s_j + d + n)``
  (``d = 0`` without a label delay), which is exactly ``s_j`` in
  ``(t - (n + d), t - d]``;
* its fraud label, known at ``L_j``, contributes its ``is_fraud`` to ``t`` in
  ``[max(s_j + d, L_j), s_j + d + n)`` (nothing if that interval is empty).

Each interval is two rows in one event-time stream per entity: ``+w`` at its
start and ``-w`` at its end. A running ``SUM(...) OVER (PARTITION BY entity
ORDER BY rt RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)`` then gives,
at a transaction's own row (``is_query``), the sum of the intervals that
contain ``t``: ``RANGE`` includes every row stamped ``<= t``, so simultaneous
events count (the definitions' convention) and an interval ending exactly at
``t`` no longer does. All of an entity's counts, sums and means share that
one window, so they are one OVER query whatever their windows and delays.

Flink SQL cannot give a row a new event time inside a query, so each distinct
time shift (``+d``, ``+d+n``, the label start ``max(s + d, L)``) is its own
source table over the same topic, with a computed rowtime column and its own
watermark. The union's watermark is the minimum of its inputs, so shifted
rows (which run ahead) wait in the OVER operator's state until event time
reaches them. The baseline needs 7 readers of ``transactions`` (shifts 0, 1,
7, 8, 14, 30, 37 days) and 4 of ``labels``.

The running sums never reset, so amounts are summed as ``DECIMAL(38, 10)``:
exact for cent amounts, where doubles would drift with everything ever summed.

Min and max windows
-------------------

An extreme does not subtract out when an event leaves the window, so it
cannot be a running sum. Undelayed ``min``/``max`` windows ``(t - n, t]``
are Flink's own bounded OVER windows instead, over the unshifted
transactions reader::

    MAX(amount) OVER (PARTITION BY customer_id ORDER BY rt
                      RANGE BETWEEN INTERVAL '6 23:59:59.999' DAY TO SECOND(3) PRECEDING
                      AND CURRENT ROW)

Flink keeps the rows stamped ``>= t - x`` (it retracts only older ones), so
``x = n - 1 ms`` is exactly ``(t - n, t]`` on whole milliseconds, and every
row stamped ``t`` (simultaneous events) is in it. The current transaction
always is, so the window is never empty (the batch engine's empty value, 0,
is kept by a ``COALESCE`` all the same). All OVER aggregates of one SELECT
share one window, so each distinct (entity, window length) is its own view
(the 30-day max and min share one). The entity's features view joins them to
its running sums on the Kafka record (partition and offset, metadata columns
of the unshifted reader, so a transaction id written twice never pairs across
copies) and ``x.rt BETWEEN q.rt AND q.rt``: an *interval* join with a
zero-width bound, whose state Flink drops once the watermark has passed that
rowtime (a plain join on the id would keep every row forever). An entity
with extremes only has no running sums; its first OVER view is the base.

A late transaction (behind the unshifted reader's watermark) is dropped by
the extremes' OVER operator, and with it that entity's row for it (the join
is inner), even where the running sums, whose union watermark may lag, would
have kept it: late events are dropped either way, never given a wrong value.

Supported, refused
------------------

Supported: row features (amount, weekend, night); count, sum and mean
windows over ``amount`` or the label field, with or without a label delay;
undelayed min and max windows over ``amount`` (any entity, any window
length); ratios of them: every feature of the registered ``baseline`` and
``extended`` sets. Refused at compile time (:class:`UnsupportedFeature`,
naming the feature and the window it would need): ``min``/``max`` behind a
label delay, whose window ``(t - (n + d), t - d]`` ends before the current
row, which no Flink OVER window can (and they are no running sums either).
No registered set has one; :func:`supported_subset` (the job's ``--subset``)
drops them and runs the rest under the subset's own version.

Event time is read from the JSON string ``event_time`` (e.g.
``2018-04-01T00:00:31+00:00``; fractional seconds and any UTC offset or
``Z`` allowed) as whole epoch milliseconds, floor, like the other engines.
Flink's JSON format would only read ``TIMESTAMP_LTZ`` written with a literal
``Z``, and ``TO_TIMESTAMP_LTZ(string, format)`` ignores the offset, so the
milliseconds are computed from ``UNIX_TIMESTAMP(string, format)`` (which
honours the offset) plus the first three fractional digits. Records whose
JSON or timestamp does not parse, or that lack an id or amount, are skipped.

>>> from rtml_features.baseline import BASELINE
>>> job = compile_feature_set(BASELINE, SourceOptions(bootstrap_servers="kafka:9092"))
>>> [q.entity.name for q in job.entity_queries]
['customer', 'terminal']
>>> [s.shift for s in job.sources if s.topic == "transactions"]
['+0ms', '+1d', '+7d', '+30d', '+8d', '+14d', '+37d']
>>> from rtml_features.extended import EXTENDED
>>> customer = compile_feature_set(EXTENDED, SourceOptions("kafka:9092")).entity_queries[0]
>>> [clause.split("RANGE BETWEEN ")[1] for clause in customer.extreme_windows]
["INTERVAL '6 23:59:59.999' DAY TO SECOND(3) PRECEDING AND CURRENT ROW", \
"INTERVAL '29 23:59:59.999' DAY TO SECOND(3) PRECEDING AND CURRENT ROW"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from rtml_common.events import FeatureVector
from rtml_common.serde import headers_for
from rtml_common.topics import spec_for_event
from rtml_features.definitions import (
    CLASSIC_ROW_KINDS,
    Agg,
    DefinitionError,
    Entity,
    Feature,
    FeatureSet,
    Ratio,
    RowFeature,
    RowKind,
    WindowAggregate,
)
from rtml_features.online_store.base import entity_features

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
#: Aggregations the compiler turns into running sums of interval contributions.
RUNNING_SUM_AGGS = frozenset({Agg.COUNT, Agg.SUM, Agg.MEAN})
#: Aggregations computed by bounded OVER windows (``RANGE`` n - 1 ms preceding), undelayed only.
EXTREME_AGGS = frozenset({Agg.MIN, Agg.MAX})
SUPPORTED_AGGS = RUNNING_SUM_AGGS | EXTREME_AGGS

#: Epoch milliseconds (floor) of an ISO-8601 string column with a UTC offset or ``Z``.
#: UNIX_TIMESTAMP(string, format) honours the offset; the fraction is added separately
#: (SimpleDateFormat would read ".123456" as 123456 ms). 0 when it does not parse.
_EPOCH_MS = (
    "COALESCE(UNIX_TIMESTAMP(REGEXP_REPLACE({col}, '\\.[0-9]+', ''), "
    "'yyyy-MM-dd''T''HH:mm:ssXXX') * 1000 + CAST(SUBSTRING(RPAD(COALESCE("
    "REGEXP_EXTRACT({col}, '\\.([0-9]+)', 1), ''), 3, '0') FROM 1 FOR 3) AS BIGINT), 0)"
)


class UnsupportedFeature(DefinitionError):
    """A feature the Flink engine cannot compute; the message names it and says why."""


def window_ms(aggregate: WindowAggregate) -> int:
    """The window in ms, rounded as the batch and streaming engines round it."""
    return int(aggregate.window.total_seconds() * 1000)


def delay_ms(aggregate: WindowAggregate) -> int:
    """The label delay in ms (0 without one), rounded like the other engines."""
    return int(aggregate.delay.total_seconds() * 1000)


def unsupported_reasons(feature_set: FeatureSet) -> dict[str, str]:
    """Feature name -> why the Flink engine refuses it (empty: all supported).

    Only label-delayed ``min``/``max`` windows are refused: their window
    ``(t - (n + d), t - d]`` ends before the current row, which no Flink OVER
    window can, and an extreme cannot be a running sum of interval
    contributions (it does not subtract out when an event leaves).
    """
    reasons: dict[str, str] = {}
    for feature in feature_set.features:
        if isinstance(feature, RowFeature) and feature.kind not in CLASSIC_ROW_KINDS:
            reasons[feature.name] = (f"feature {feature.name!r}: the Flink engine has no "
                                     f"translation for row kind {feature.kind.value!r} yet")
        parts: list[WindowAggregate] = []
        if isinstance(feature, WindowAggregate):
            parts = [feature]
        elif isinstance(feature, Ratio):
            parts = [feature.numerator, feature.denominator]
        for part in parts:
            via = "" if part is feature else f" (via its part {part.name!r})"
            if part.agg not in SUPPORTED_AGGS:
                reasons[feature.name] = (f"feature {feature.name!r}{via}: the Flink engine "
                                         f"has no translation for {part.agg.value!r} yet")
                break
            if len(part.entity.keys) > 1:
                reasons[feature.name] = (f"feature {feature.name!r}{via}: the Flink engine "
                                         f"does not key by a compound entity "
                                         f"({part.entity.name!r}) yet")
                break
            if part.agg in EXTREME_AGGS and delay_ms(part) > 0:
                reasons[feature.name] = (
                    f"feature {feature.name!r}{via}: {part.agg.value!r} behind a label delay "
                    f"(window (t - {_duration(window_ms(part) + delay_ms(part))}, "
                    f"t - {_duration(delay_ms(part))}]): Flink OVER windows end at the current "
                    f"row, and an extreme cannot be computed from running sums of interval "
                    f"contributions (it does not subtract out when an event leaves the "
                    f"window); undelayed {part.agg.value!r} windows are supported"
                )
                break
    return reasons


def check_supported(feature_set: FeatureSet) -> None:
    """Raise :class:`UnsupportedFeature` naming every feature Flink cannot compute."""
    reasons = unsupported_reasons(feature_set)
    if reasons:
        raise UnsupportedFeature(
            f"feature set {feature_set.name!r} has {len(reasons)} feature(s) the Flink engine "
            "does not support: " + "; ".join(reasons.values())
            + ". Compile supported_subset(feature_set) to run the rest."
        )


def supported_subset(feature_set: FeatureSet) -> FeatureSet:
    """The features Flink computes, as a feature set of the same name.

    Its version differs whenever a feature was dropped, so its Redis keys and
    vectors never pass for the full set's.
    """
    reasons = unsupported_reasons(feature_set)
    if not reasons:
        return feature_set
    kept = [f for f in feature_set.features if f.name not in reasons]
    if not kept:
        raise UnsupportedFeature(f"no feature of {feature_set.name!r} is supported by Flink: "
                                 + "; ".join(reasons.values()))
    return FeatureSet(feature_set.name, kept, feature_set.source_topic, feature_set.label_topic,
                      feature_set.description, schema=feature_set.schema)


# -- options and compiled plan ---------------------------------------------------------------


@dataclass(frozen=True)
class SourceOptions:
    """Where and how the job reads Kafka.

    ``bounded_offsets`` (topic -> ``partition:0,offset:42;partition:1,offset:7``)
    makes the job stop there, for tests and backfills. Never bound with
    "latest offset": Tansu reports wrong end offsets.
    """

    bootstrap_servers: str
    group_id: str = "rtml-feature-pipeline-flink"
    startup_mode: str = "earliest-offset"
    bounded_offsets: Mapping[str, str] = field(default_factory=dict)
    allowed_lateness: timedelta = timedelta(seconds=300)
    #: Extra Kafka client properties (without the ``properties.`` prefix).
    kafka_properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.allowed_lateness < timedelta(0):
            raise ValueError("allowed_lateness must be >= 0")
        if self.startup_mode not in ("earliest-offset", "group-offsets", "latest-offset"):
            raise ValueError(f"unsupported startup mode {self.startup_mode!r}")


@dataclass(frozen=True)
class SourceTable:
    """One Kafka reader: a topic with its rowtime shifted by ``shift``."""

    name: str
    topic: str
    shift: str  #: human-readable, e.g. "+8d" or "label start +7d"
    ddl: str


@dataclass(frozen=True)
class Contribution:
    """Interval edges of one aggregate group that start or end at a source's rowtime."""

    source: str
    group: int
    column: str  #: "c" (count), "a" (amount) or "f" (fraud flag)
    sign: int  #: +1 at the interval start, -1 at its end


@dataclass(frozen=True)
class EntityQuery:
    """The per-transaction values of one entity's features, as a view."""

    entity: Entity
    view: str
    features: tuple[str, ...]
    #: The OVER window every count/sum/mean of this entity shares (None: it has none).
    window_clause: str | None
    contributions: tuple[Contribution, ...]
    #: One bounded OVER window per window length of the entity's min/max features.
    extreme_windows: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledJob:
    """Everything :mod:`.job` executes, in order, plus what the tests inspect."""

    feature_set: FeatureSet
    sources: tuple[SourceTable, ...]
    views: tuple[str, ...]  #: CREATE TEMPORARY VIEW statements, in dependency order
    #: view name: transaction_id, customer_id, terminal_id, event_ms, rtml_amount, the
    #: rowtime and Kafka record, row features
    row_view: str
    row_features: tuple[str, ...]
    entity_queries: tuple[EntityQuery, ...]
    #: One view with every output row: transaction_id, kind ("row", an entity name or
    #: "vector"), entity_id, event_ms, features MAP<STRING, DOUBLE>, terminal_id and amount
    #: (vectors only). The job reads only this view, so Flink plans everything at once and
    #: each source table is read once.
    output_view: str = "rtml_feature_rows"
    #: The view of whole feature vectors (one row per transaction record, every feature of
    #: the set), None when compiled without ``vectors``.
    vector_view: str | None = None

    @property
    def statements(self) -> list[str]:
        """All DDL, sources first."""
        return [s.ddl for s in self.sources] + list(self.views)

    def script(self) -> str:
        """The statements as one SQL script (for docs and ``--print-sql``)."""
        return ";\n\n".join(self.statements) + ";\n"


# -- SQL helpers -------------------------------------------------------------------------------


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _double(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"


#: Amounts are summed as exact decimals: running sums never reset, so in a
#: long-lived job float rounding would drift; cent amounts add up exactly.
AMOUNT_TYPE = "DECIMAL(38, 10)"


def _zero(column: str) -> str:
    """The neutral weight of a running-sum column (amount sums are decimal)."""
    return f"CAST(0 AS {AMOUNT_TYPE})" if column.startswith("a") else _double(0)


def _duration(ms: int) -> str:
    """Compact name of a shift: 0ms, 90s, 2h, 1d, 1d12h, 1500ms."""
    if ms == 0:
        return "0ms"
    parts = []
    rest = ms
    for unit, size in (("d", MS_PER_DAY), ("h", MS_PER_HOUR), ("m", 60_000), ("s", 1000)):
        if rest >= size and (rest % size == 0 or unit != "s"):
            count, rest = divmod(rest, size)
            if count:
                parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest}ms")
    return "".join(parts)


def _interval(ms: int) -> str:
    """A DAY TO SECOND interval literal of ``ms`` milliseconds (for watermarks)."""
    days, rest = divmod(ms, MS_PER_DAY)
    hours, rest = divmod(rest, MS_PER_HOUR)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return (f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' "
            f"DAY TO SECOND(3)")


def _with(options: Mapping[str, str]) -> str:
    body = ",\n  ".join(f"{_literal(k)} = {_literal(v)}" for k, v in options.items())
    return f"WITH (\n  {body}\n)"


def _kafka_options(opts: SourceOptions, topic: str, table: str) -> dict[str, str]:
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": opts.bootstrap_servers,
        # One group per reader: readers of one topic sit at different offsets.
        "properties.group.id": f"{opts.group_id}.{table}",
        "scan.startup.mode": opts.startup_mode,
        "format": "json",
        "json.ignore-parse-errors": "true",
        "json.fail-on-missing-field": "false",
    }
    bounded = opts.bounded_offsets.get(topic)
    if bounded:
        options["scan.bounded.mode"] = "specific-offsets"
        options["scan.bounded.specific-offsets"] = bounded
    for key, value in opts.kafka_properties.items():
        options[f"properties.{key}"] = value
    return options


_TX_COLUMNS = (
    "  transaction_id STRING,\n  event_time STRING,\n  customer_id STRING,\n"
    "  terminal_id STRING,\n  amount DECIMAL(38, 10)"
)
#: Which record (the unshifted reader only): the key the min/max views join the running
#: sums on. Unique per record, where a transaction id written twice would pair each copy
#: with both.
_RECORD_COLUMNS = (
    ",\n  kafka_partition INT METADATA FROM 'partition' VIRTUAL,\n"
    "  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL"
)
_LABEL_COLUMNS = (
    "  transaction_id STRING,\n  customer_id STRING,\n  terminal_id STRING,\n"
    "  transaction_time STRING,\n  labeled_at STRING,\n  is_fraud BOOLEAN"
)
#: Filters every reader applies: records the other engines would dead-letter are skipped.
_TX_VALID = ("transaction_id IS NOT NULL AND customer_id IS NOT NULL AND amount IS NOT NULL "
             "AND event_ms > 0")
_LABEL_VALID = ("transaction_id IS NOT NULL AND is_fraud IS NOT NULL AND tx_ms > 0 "
                "AND labeled_ms > 0")


def _source_ddl(name: str, columns: str, computed: Sequence[str], rowtime: str,
                lateness_ms: int, options: Mapping[str, str]) -> str:
    lines = [columns] + [f"  {c}" for c in computed]
    lines.append(f"  rt AS {rowtime}")
    lines.append(f"  WATERMARK FOR rt AS rt - {_interval(lateness_ms)}")
    body = ",\n".join(lines)
    return f"CREATE TEMPORARY TABLE {name} (\n{body}\n) {_with(options)}"


@dataclass
class _Group:
    """Aggregates of one entity sharing (window, delay): one set of running sums."""

    index: int
    window_ms: int
    delay_ms: int
    uses_labels: bool = False
    uses_amount: bool = False

    @property
    def start(self) -> int:
        return self.delay_ms

    @property
    def end(self) -> int:
        return self.delay_ms + self.window_ms

    def columns(self) -> list[str]:
        cols = [f"c{self.index}"]
        if self.uses_amount:
            cols.append(f"a{self.index}")
        if self.uses_labels:
            cols.append(f"f{self.index}")
        return cols


class _Compiler:
    def __init__(self, feature_set: FeatureSet, opts: SourceOptions) -> None:
        self.fs = feature_set
        self.opts = opts
        self.lateness_ms = int(opts.allowed_lateness.total_seconds() * 1000)
        self.sources: dict[str, SourceTable] = {}

    # Sources ---------------------------------------------------------------------------------

    def tx_source(self, shift_ms: int) -> str:
        name = f"rtml_tx_plus_{_duration(shift_ms)}"
        if name not in self.sources:
            epoch = _EPOCH_MS.format(col="event_time")
            columns = _TX_COLUMNS + (_RECORD_COLUMNS if shift_ms == 0 else "")
            ddl = _source_ddl(
                name, columns, [f"event_ms AS {epoch}"],
                f"TO_TIMESTAMP_LTZ({epoch} + {shift_ms}, 3)", self.lateness_ms,
                _kafka_options(self.opts, self.fs.source_topic, name))
            self.sources[name] = SourceTable(name, self.fs.source_topic,
                                             f"+{_duration(shift_ms)}", ddl)
        return name

    def label_source(self, shift_ms: int, start: bool) -> str:
        """Labels at ``max(tx + shift, labeled_at)`` (start) or ``tx + shift`` (end)."""
        kind = "start" if start else "end"
        name = f"rtml_label_{kind}_plus_{_duration(shift_ms)}"
        if name not in self.sources:
            tx_ms = _EPOCH_MS.format(col="transaction_time")
            labeled = _EPOCH_MS.format(col="labeled_at")
            at = f"GREATEST({tx_ms} + {shift_ms}, {labeled})" if start else f"{tx_ms} + {shift_ms}"
            ddl = _source_ddl(
                name, _LABEL_COLUMNS, [f"tx_ms AS {tx_ms}", f"labeled_ms AS {labeled}"],
                f"TO_TIMESTAMP_LTZ({at}, 3)", self.lateness_ms,
                _kafka_options(self.opts, self.fs.label_topic, name))
            label = (f"label start max(tx +{_duration(shift_ms)}, labeled_at)" if start
                     else f"label end tx +{_duration(shift_ms)}")
            self.sources[name] = SourceTable(name, self.fs.label_topic, label, ddl)
        return name

    # Entities --------------------------------------------------------------------------------

    def entity_query(self, entity: Entity) -> tuple[EntityQuery, list[str]]:
        aggregates = [a for a in self.fs.window_aggregates if a.entity == entity]
        summed = [a for a in aggregates if a.agg in RUNNING_SUM_AGGS]
        extremes = [a for a in aggregates if a.agg in EXTREME_AGGS]
        prefix = f"rtml_{entity.name}"
        views: list[str] = []
        exprs: dict[str, str] = {}
        # The views the features view reads: (alias, view, is the running-sum view).
        inputs: list[tuple[str, str, bool]] = []
        window: str | None = None
        contributions: tuple[Contribution, ...] = ()
        if summed:
            window, contributions, sum_views, sum_exprs = self._running_sums(
                entity, summed, prefix)
            views += sum_views
            exprs.update(sum_exprs)
            inputs.append(("q", f"{prefix}_running", True))
        extreme_windows: list[str] = []
        for index, (view, clause, sql, extreme_exprs) in enumerate(
                self._extremes(entity, extremes, prefix)):
            views.append(sql)
            exprs.update(extreme_exprs)
            extreme_windows.append(clause)
            inputs.append((f"x{index}", view, False))

        names = entity_features(self.fs, entity)
        outputs = []
        for feature in self.fs.features:
            if feature.name not in names:
                continue
            expr = (self._ratio_expr(feature, exprs) if isinstance(feature, Ratio)
                    else exprs[feature.name])
            outputs.append(f"{expr} AS {_ident(feature.name)}")
        view_name = f"{prefix}_features"
        base, base_view, base_running = inputs[0]
        source = f"{base_view} AS {base}"
        if base_running:
            source = f"(SELECT * FROM {base_view} WHERE is_query) AS {base}"
        # Every other input is the same Kafka record (partition, offset) at the same rowtime:
        # an interval join with a zero-width bound, so Flink drops each pair from its state
        # once the watermark has passed that rowtime (a plain join would keep every row).
        for alias, other, _ in inputs[1:]:
            source += (f"\nJOIN {other} AS {alias} ON {alias}.kafka_partition = "
                       f"{base}.kafka_partition AND {alias}.kafka_offset = {base}.kafka_offset "
                       f"AND {alias}.rt BETWEEN {base}.rt AND {base}.rt")
        final = (f"CREATE TEMPORARY VIEW {view_name} AS\n"
                 f"SELECT {base}.transaction_id, {base}.entity_id, {base}.event_ms, "
                 f"{base}.rt, {base}.kafka_partition, {base}.kafka_offset, "
                 f"{', '.join(outputs)}\nFROM {source}")
        query = EntityQuery(entity, view_name, tuple(names), window, contributions,
                            tuple(extreme_windows))
        return query, [*views, final]

    def _running_sums(self, entity: Entity, aggregates: Sequence[WindowAggregate],
                      prefix: str) -> tuple[str, tuple[Contribution, ...], list[str],
                                            dict[str, str]]:
        """The events and running views of the count/sum/mean windows of ``entity``.

        The query rows carry their Kafka partition, offset and rowtime, which the features
        view joins the extremes' views on, and the vector view the entities' features.
        """
        groups: dict[tuple[int, int], _Group] = {}
        group_of: dict[str, _Group] = {}
        for aggregate in aggregates:
            key = (window_ms(aggregate), delay_ms(aggregate))
            group = groups.setdefault(key, _Group(len(groups), *key))
            group.uses_labels |= aggregate.uses_labels
            group.uses_amount |= aggregate.field == "amount"
            group_of[aggregate.name] = group
        ordered = list(groups.values())
        all_columns = [c for g in ordered for c in g.columns()]
        entity_key = entity.keys[0]
        contributions: list[Contribution] = []

        def select(source: str, is_query: bool, weights: dict[str, str], valid: str,
                   entity_col: str, tx_col: str, time_col: str) -> str:
            cols = [f"{entity_col} AS entity_id", "rt",
                    f"{tx_col} AS transaction_id" if is_query else
                    "CAST(NULL AS STRING) AS transaction_id",
                    f"{time_col} AS event_ms", f"{'TRUE' if is_query else 'FALSE'} AS is_query"]
            cols += (["kafka_partition", "kafka_offset"] if is_query else
                     ["CAST(NULL AS INT) AS kafka_partition",
                      "CAST(NULL AS BIGINT) AS kafka_offset"])
            cols += [f"{weights.get(c, _zero(c))} AS {c}" for c in all_columns]
            return (f"SELECT {', '.join(cols)}\nFROM {source}\n"
                    f"WHERE {valid} AND {entity_col} IS NOT NULL")

        parts: list[str] = []
        # Transaction rows: the query row at +0 carries the starts of undelayed groups.
        shifts = sorted({0} | {g.start for g in ordered} | {g.end for g in ordered})
        for shift in shifts:
            source = self.tx_source(shift)
            weights: dict[str, str] = {}
            for group in ordered:
                sign = (group.start == shift) - (group.end == shift)
                if not sign:
                    continue
                weights[f"c{group.index}"] = _double(sign)
                contributions.append(Contribution(source, group.index, "c", sign))
                if group.uses_amount:
                    weights[f"a{group.index}"] = "amount" if sign > 0 else "-amount"
                    contributions.append(Contribution(source, group.index, "a", sign))
            parts.append(select(source, shift == 0, weights, _TX_VALID, entity_key,
                                "transaction_id", "event_ms"))
        # Label rows: +is_fraud from max(s + d, L), -is_fraud at s + d + n, only if L < s + d + n.
        label_groups = [g for g in ordered if g.uses_labels]
        for delay in sorted({g.delay_ms for g in label_groups}):
            source = self.label_source(delay, start=True)
            weights = {}
            for group in label_groups:
                if group.delay_ms == delay:
                    weights[f"f{group.index}"] = self._fraud_weight(group, +1)
                    contributions.append(Contribution(source, group.index, "f", +1))
            parts.append(select(source, False, weights, _LABEL_VALID + " AND is_fraud",
                                entity_key, "transaction_id", "tx_ms"))
        for end in sorted({g.end for g in label_groups}):
            source = self.label_source(end, start=False)
            weights = {}
            for group in label_groups:
                if group.end == end:
                    weights[f"f{group.index}"] = self._fraud_weight(group, -1)
                    contributions.append(Contribution(source, group.index, "f", -1))
            parts.append(select(source, False, weights, _LABEL_VALID + " AND is_fraud",
                                entity_key, "transaction_id", "tx_ms"))

        window = ("PARTITION BY entity_id ORDER BY rt "
                  "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")
        events = f"CREATE TEMPORARY VIEW {prefix}_events AS\n" + "\nUNION ALL\n".join(parts)
        sums = ", ".join(f"SUM({c}) OVER w AS {c}" for c in all_columns)
        running = (f"CREATE TEMPORARY VIEW {prefix}_running AS\n"
                   f"SELECT transaction_id, entity_id, event_ms, is_query, rt, kafka_partition, "
                   f"kafka_offset, {sums}\n"
                   f"FROM {prefix}_events\nWINDOW w AS ({window})")
        exprs = {a.name: self._aggregate_expr(a, group_of[a.name]) for a in aggregates}
        return window, tuple(contributions), [events, running], exprs

    def _extremes(self, entity: Entity, aggregates: Sequence[WindowAggregate],
                  prefix: str) -> list[tuple[str, str, str, dict[str, str]]]:
        """One bounded OVER view per window length of the undelayed min/max windows.

        Returns (view, window clause, CREATE VIEW statement, feature -> expression).
        ``RANGE BETWEEN x PRECEDING`` includes rows stamped ``>= t - x`` (Flink retracts
        only rows older than that), so ``x = n - 1 ms`` is the window ``(t - n, t]`` on whole
        milliseconds; rows stamped ``t`` (simultaneous events) are all in it. The current
        transaction always is, so the window is never empty (the batch engine's empty
        value, 0, is kept by a COALESCE all the same).
        """
        by_window: dict[int, list[WindowAggregate]] = {}
        for aggregate in aggregates:
            by_window.setdefault(window_ms(aggregate), []).append(aggregate)
        source = self.tx_source(0)
        result = []
        column = 0
        for span in sorted(by_window):
            view = f"{prefix}_extremes_{_duration(span)}"
            clause = (f"PARTITION BY {entity.key} ORDER BY rt "
                      f"RANGE BETWEEN {_interval(span - 1)} PRECEDING AND CURRENT ROW")
            columns: dict[tuple[Agg, str], str] = {}
            exprs: dict[str, str] = {}
            for aggregate in by_window[span]:
                key = (aggregate.agg, aggregate.field or "")
                if key not in columns:
                    columns[key] = f"m{column}"
                    column += 1
                exprs[aggregate.name] = (f"COALESCE(CAST({columns[key]} AS DOUBLE), "
                                         f"{_double(0)})")
            overs = ", ".join(f"{agg.value.upper()}({field}) OVER w AS {name}"
                              for (agg, field), name in columns.items())
            sql = (f"CREATE TEMPORARY VIEW {view} AS\n"
                   f"SELECT transaction_id, {entity.key} AS entity_id, event_ms, rt, "
                   f"kafka_partition, kafka_offset, {overs}\nFROM {source}\n"
                   f"WHERE {_TX_VALID} AND {entity.key} IS NOT NULL\nWINDOW w AS ({clause})")
            result.append((view, clause, sql, exprs))
        return result

    @staticmethod
    def _fraud_weight(group: _Group, sign: int) -> str:
        # The label counts only if known before the interval ends (else [start, end) is empty).
        return (f"CASE WHEN labeled_ms < tx_ms + {group.end} THEN {_double(sign)} "
                f"ELSE {_double(0)} END")

    @staticmethod
    def _aggregate_expr(aggregate: WindowAggregate, group: _Group) -> str:
        count = f"c{group.index}"
        total = (f"f{group.index}" if aggregate.uses_labels
                 else f"CAST(a{group.index} AS DOUBLE)")
        if aggregate.agg is Agg.COUNT:
            return count
        if aggregate.agg is Agg.SUM:
            return total
        # Mean of an empty window is 0 (definitions); counts are exact integers in a double.
        return f"CASE WHEN {count} <> 0 THEN {total} / {count} ELSE {_double(0)} END"

    @staticmethod
    def _ratio_expr(ratio: Ratio, exprs: Mapping[str, str]) -> str:
        numerator = exprs[ratio.numerator.name]
        denominator = exprs[ratio.denominator.name]
        return (f"CASE WHEN ({denominator}) <> 0 THEN ({numerator}) / ({denominator}) "
                f"ELSE {_double(ratio.default)} END")

    # Row features ----------------------------------------------------------------------------

    def row_view(self) -> tuple[str, str, tuple[str, ...]]:
        source = self.tx_source(0)
        outputs = [f"{self._row_expr(f)} AS {_ident(f.name)}" for f in self.fs.row_features]
        cols = ", ".join(["transaction_id", "customer_id", "terminal_id", "event_ms",
                          "CAST(amount AS DOUBLE) AS rtml_amount", "rt", "kafka_partition",
                          "kafka_offset", *outputs])
        view = "rtml_row_features"
        sql = (f"CREATE TEMPORARY VIEW {view} AS\nSELECT {cols}\nFROM {source}\n"
               f"WHERE {_TX_VALID}")
        return view, sql, tuple(f.name for f in self.fs.row_features)

    @staticmethod
    def _row_expr(feature: RowFeature) -> str:
        # Integer arithmetic on epoch ms, like the batch engine: no session time zone involved.
        if feature.kind is RowKind.FIELD:
            return f"CAST({feature.field} AS DOUBLE)"
        if feature.kind is RowKind.WEEKEND:
            # (days + 3) % 7 >= 5, 1970-01-01 being a Thursday.
            condition = f"MOD(event_ms + {3 * MS_PER_DAY}, {7 * MS_PER_DAY}) >= {5 * MS_PER_DAY}"
        else:
            end_ms = (feature.night_end_hour + 1) * MS_PER_HOUR  # hour <= night_end_hour
            condition = f"MOD(event_ms, {MS_PER_DAY}) < {end_ms}"
        return f"CASE WHEN {condition} THEN {_double(1)} ELSE {_double(0)} END"


def compile_feature_set(feature_set: FeatureSet, options: SourceOptions,
                        vectors: bool = False) -> CompiledJob:
    """The Flink SQL of ``feature_set``; raises :class:`UnsupportedFeature` first if needed.

    ``vectors``: also assemble each transaction's whole feature vector (the
    ``features`` topic's :class:`~rtml_common.events.FeatureVector`), as rows of kind
    ``vector`` in the output view (see :func:`vector_view_sql`).
    """
    check_supported(feature_set)
    compiler = _Compiler(feature_set, options)
    views: list[str] = []
    row_view, row_sql, row_names = compiler.row_view()
    views.append(row_sql)
    queries = []
    for entity in feature_set.entities:
        query, sqls = compiler.entity_query(entity)
        queries.append(query)
        views += sqls
    job = CompiledJob(feature_set, tuple(compiler.sources.values()), (), row_view, row_names,
                      tuple(queries))
    extra = "CAST(NULL AS STRING) AS terminal_id, CAST(NULL AS DOUBLE) AS amount"
    outputs = []
    if row_names:
        outputs.append(f"SELECT transaction_id, 'row' AS kind, customer_id AS entity_id, "
                       f"event_ms, {_map(row_names)} AS features, {extra}\nFROM {row_view}")
    for query in queries:
        outputs.append(f"SELECT transaction_id, {_literal(query.entity.name)} AS kind, "
                       f"entity_id, event_ms, {_map(query.features)} AS features, {extra}\n"
                       f"FROM {query.view}")
    if vectors:
        views.append(vector_view_sql(job))
        outputs.append(f"SELECT transaction_id, {_literal(VECTOR_KIND)} AS kind, customer_id "
                       f"AS entity_id, event_ms, features, terminal_id, amount\n"
                       f"FROM {VECTOR_VIEW}")
        job = replace(job, vector_view=VECTOR_VIEW)
    views.append(f"CREATE TEMPORARY VIEW {job.output_view} AS\n" + "\nUNION ALL\n".join(outputs))
    return replace(job, views=tuple(views))


#: The output rows of whole vectors (``kind``), and their view.
VECTOR_KIND = "vector"
VECTOR_VIEW = "rtml_feature_vectors"


def vector_view_sql(job: CompiledJob) -> str:
    """One row per transaction record with every feature of the set, in its order.

    The row features' view and each entity's features view carry the same Kafka
    record (partition, offset) and rowtime: they are joined on the record with
    ``e.rt BETWEEN r.rt AND r.rt``, an interval join with a zero-width bound like the
    min/max views', so Flink drops each pair from its state once the watermark has
    passed it. Each row is emitted once, when the watermark passes it (the entities'
    rows only then exist), so a vector is final: there are no revisions (revision 0).
    The joins are inner: a transaction without an entity's key (no terminal id) has no
    row for that entity, hence no vector (the Python engine emits the entity's
    empty-window values).
    """
    source = f"{job.row_view} AS r"
    column: dict[str, str] = {name: f"r.{_ident(name)}" for name in job.row_features}
    for index, query in enumerate(job.entity_queries):
        alias = f"e{index}"
        source += (f"\nJOIN {query.view} AS {alias} ON {alias}.kafka_partition = "
                   f"r.kafka_partition AND {alias}.kafka_offset = r.kafka_offset "
                   f"AND {alias}.rt BETWEEN r.rt AND r.rt")
        column.update({name: f"{alias}.{_ident(name)}" for name in query.features})
    names = job.feature_set.names
    entries = ", ".join(f"{_literal(n)}, {column[n]}" for n in names)
    return (f"CREATE TEMPORARY VIEW {VECTOR_VIEW} AS\n"
            f"SELECT r.transaction_id, r.customer_id, r.terminal_id, r.event_ms, "
            f"r.rtml_amount AS amount, MAP[{entries}] AS features\nFROM {source}")


#: The headers the Python engine's worker writes on ``features``.
FEATURE_VECTOR_HEADERS: tuple[tuple[str, bytes], ...] = tuple(headers_for(FeatureVector))
FEATURES_TOPIC = spec_for_event(FeatureVector).name
FEATURES_SINK = "rtml_features_sink"
#: The view the job registers over its DataStream of encoded vectors (record_key, record_value).
VECTOR_RECORDS_VIEW = "rtml_vector_records"


def features_sink_statements(options: SourceOptions, topic: str = FEATURES_TOPIC
                             ) -> tuple[str, str]:
    """The Kafka sink table of ``features`` records and the INSERT that fills it.

    The job encodes each vector in Python (the worker's JSON) as ``record_key``
    (the customer id, as the worker keys it) and ``record_value``; this SQL sink
    writes them with the worker's headers, which the Python DataStream Kafka sink
    cannot set. Raw formats: the bytes are the job's, unchanged.
    """
    sink_options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": options.bootstrap_servers,
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once",
    }
    for key, value in options.kafka_properties.items():
        sink_options[f"properties.{key}"] = value
    ddl = (f"CREATE TEMPORARY TABLE {FEATURES_SINK} (\n  record_key STRING,\n"
           f"  record_value STRING,\n  headers MAP<STRING, BYTES> METADATA\n) "
           f"{_with(sink_options)}")
    headers = ", ".join(f"{_literal(k)}, CAST({_literal(v.decode())} AS BYTES)"
                        for k, v in FEATURE_VECTOR_HEADERS)
    insert = (f"INSERT INTO {FEATURES_SINK}\nSELECT record_key, record_value, MAP[{headers}]\n"
              f"FROM {VECTOR_RECORDS_VIEW}")
    return ddl, insert


def _map(names: Sequence[str]) -> str:
    return "MAP[" + ", ".join(f"{_literal(n)}, {_ident(n)}" for n in names) + "]"


def describe_features(feature_set: FeatureSet) -> list[tuple[str, str]]:
    """(feature, how Flink computes it) for docs; unsupported ones say why."""
    reasons = unsupported_reasons(feature_set)
    rows = []
    for feature in feature_set.features:
        rows.append((feature.name, reasons.get(feature.name) or _how(feature)))
    return rows


def _how(feature: Feature) -> str:
    if isinstance(feature, RowFeature):
        return f"row feature ({feature.kind.value})"
    if isinstance(feature, Ratio):
        return f"ratio of {feature.numerator.name} / {feature.denominator.name}"
    span = f"window {_duration(window_ms(feature))}"
    if feature.label_delay is not None:
        span += f" shifted back by {_duration(delay_ms(feature))}"
    what = feature.field or "transactions"
    how = f"{feature.agg.value} of {what} per {feature.entity.name}, {span}"
    if feature.agg in EXTREME_AGGS:
        how += (f" (bounded OVER window: RANGE {_duration(window_ms(feature))} - 1ms "
                f"PRECEDING, joined to the entity's other windows by Kafka record)")
    return how
