"""A feature set's vector function, generated once as straight-line Python.

The streaming computer asks for a feature vector at every transaction (and at
every revision). Interpreting the definitions each time — loops over window
groups, windows and outputs, a dispatch on each output's kind, internal
aggregates added and then deleted — cost about as much as the arithmetic
itself. :class:`VectorPlan` does that interpretation once: it groups the
feature set's windows (:func:`window_groups`) and writes the source of one
function for them, with every loop unrolled, every constant inlined and every
feature assigned once, then compiles it. The definitions stay data; this is
just another engine reading them, held to the batch engine by the same parity
tests (1e-9) as the rest of the streaming path.

Windows are scanned in groups: the windows of one entity that end at the same
point (``t - delay``) share that end, so one bisect finds it, and they nest,
so each longer window's count, sum and frauds are the shorter one's plus the
events just before it — every event of the longest window is read once.

>>> from rtml_features.baseline import BASELINE
>>> from rtml_features.online import EntityState
>>> plan = VectorPlan(BASELINE)
>>> state = EntityState()
>>> state.add_transaction("t0", 1_522_580_000_000, 30.0)
True
>>> vector = plan.vector({("customer", "c1"): state}, ("c1", "t1"), 1_522_584_060_000, 20.0)
>>> vector["customer_id_nb_tx_1day_window"], vector["customer_id_avg_amount_1day_window"]
(1.0, 30.0)
>>> list(vector) == BASELINE.names  # in the feature set's order
True
>>> "def vector(states, ids, time_ms, amount):" in plan.source
True
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rtml_features.definitions import Agg, FeatureSet, Ratio, RowFeature, RowKind, WindowAggregate
from rtml_features.online import EntityState
from rtml_features.rows import weekend_and_hour

#: (states, (customer_id, terminal_id), time_ms, amount) -> feature name -> value.
VectorFunction = Callable[
    [Mapping[tuple[str, str], EntityState], tuple[str | None, str | None], int, float],
    dict[str, float],
]

#: Index of each entity key in the ``ids`` tuple the engines pass around.
KEY_INDEX = {"customer_id": 0, "terminal_id": 1}

#: The state of an entity with no events (shared by generated code, never written to).
NO_EVENTS = EntityState()


@dataclass(frozen=True, slots=True)
class Window:
    """One window length of a :class:`WindowGroup` and the aggregates computed over it."""

    window_ms: int
    aggregates: tuple[WindowAggregate, ...]


@dataclass(frozen=True, slots=True)
class WindowGroup:
    """The windows of one entity that end at the same point, ``t - delay``."""

    entity: str
    key_index: int
    delay_ms: int
    #: Shortest first: each one extends the previous.
    windows: tuple[Window, ...]

    @property
    def uses_labels(self) -> bool:
        """Some aggregate counts known frauds (the label field)."""
        return any(a.uses_labels for window in self.windows for a in window.aggregates)

    @property
    def sums_amounts(self) -> bool:
        """Some aggregate needs the window's amount total (a sum or mean of amounts)."""
        return any(a.agg in (Agg.SUM, Agg.MEAN) and not a.uses_labels
                   for window in self.windows for a in window.aggregates)


def window_groups(feature_set: FeatureSet) -> list[WindowGroup]:
    """The feature set's window aggregates grouped by (entity, delay), windows ascending."""
    feature_set.require_classic("the streaming vector plan")
    grouped: dict[tuple[str, str, int], dict[int, list[WindowAggregate]]] = {}
    for aggregate in feature_set.window_aggregates:
        group_key = (aggregate.entity.name, aggregate.entity.keys[0], _ms(aggregate.delay))
        grouped.setdefault(group_key, {}).setdefault(_ms(aggregate.window), []).append(aggregate)
    return [
        WindowGroup(entity, KEY_INDEX[key], delay_ms,
                    tuple(Window(window_ms, tuple(aggregates))
                          for window_ms, aggregates in sorted(windows.items())))
        for (entity, key, delay_ms), windows in grouped.items()
    ]


class VectorPlan:
    """The generated vector function of one feature set (see the module docstring).

    ``source`` is the generated code, for reading and debugging; ``vector``
    the compiled function. Vectors list the features in ``feature_set.names``
    order.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.groups = window_groups(feature_set)
        self._features = {feature.name: feature for feature in feature_set.features}
        self._constants: dict[str, Any] = {}
        self.source = self._generate()
        namespace: dict[str, Any] = {"bisect_right": bisect_right, "NO_EVENTS": NO_EVENTS,
                                     "weekend_and_hour": weekend_and_hour, **self._constants}
        code = compile(self.source, f"<vector plan of {feature_set.name} "
                                    f"v{feature_set.version}>", "exec")
        exec(code, namespace)  # our own generated source: names only enter as repr() literals
        # Taken out of its own globals: the function and that dict must not form a
        # reference cycle (the worker's state is kept free of them, see gc_policy).
        self.vector: VectorFunction = namespace.pop("vector")

    # -- code generation -----------------------------------------------------

    def _generate(self) -> str:
        lines = ["def vector(states, ids, time_ms, amount):"]
        rows = self.feature_set.row_features
        if any(row.kind in (RowKind.WEEKEND, RowKind.NIGHT) for row in rows):
            lines.append("    weekend, hour = weekend_and_hour(time_ms)")
        outputs: dict[str, str] = {}  # aggregate name -> the local holding its value
        for g, group in enumerate(self.groups):
            lines += self._group_lines(g, group, outputs)
        values = [f"        {name!r}: {self._feature_value(name, outputs)},"
                  for name in self.feature_set.names]
        lines += ["    return {", *values, "    }"]
        return "\n".join(lines) + "\n"

    def _group_lines(self, g: int, group: WindowGroup, outputs: dict[str, str]) -> list[str]:
        """Scan one group's windows, shortest first; bind each aggregate to a local."""
        sums, frauds = group.sums_amounts, group.uses_labels
        lines = [
            f"    entity_id = ids[{group.key_index}]",
            f"    state = (states.get(({group.entity!r}, entity_id), NO_EVENTS)"
            " if entity_id is not None else NO_EVENTS)",
            "    times = state.times",
            f"    end = time_ms - {group.delay_ms}" if group.delay_ms else "    end = time_ms",
            # Events in (end - window, end] are times[lower:upper]; upper is the group's.
            "    if not times:",
            "        upper = 0",
            "    elif times[-1] <= end:",
            "        upper = len(times)",
            "    else:",
            "        upper = bisect_right(times, end)",
            "    previous = upper",  # the lower bound of the previous (shorter) window
        ]
        if sums:
            lines.append("    total = 0.0")
        if frauds:
            lines += ["    frauds = 0.0", "    count_frauds = state.n_frauds > 0"]
        for w, window in enumerate(group.windows):
            suffix = f"{g}_{w}"
            lines += [
                "    if upper:",
                f"        lower = bisect_right(times, end - {window.window_ms}, 0, previous)",
                "        if lower < previous:",
            ]
            if sums:
                lines.append("            total += sum(state.amounts[lower:previous])")
            if frauds:
                lines += [
                    "            if count_frauds:",
                    "                frauds += len([at for at in state.fraud_known_at"
                    "[lower:previous] if at <= time_ms])",
                ]
            if not sums and not frauds:
                lines.append("            pass")
            lines += ["        previous = lower", f"    count_{suffix} = upper - previous"]
            if sums:
                lines.append(f"    total_{suffix} = total")
            if frauds:
                lines.append(f"    frauds_{suffix} = frauds")
            if any(a.agg in (Agg.MIN, Agg.MAX) for a in window.aggregates):
                lines += [
                    f"    if count_{suffix}:",
                    "        in_window = state.amounts[previous:upper]",
                    f"        low_{suffix}, high_{suffix} = min(in_window), max(in_window)",
                    "    else:",
                    f"        low_{suffix} = high_{suffix} = 0.0",
                ]
            for aggregate in window.aggregates:
                local = f"a_{len(outputs)}"
                outputs[aggregate.name] = local
                lines.append(f"    {local} = {_aggregate_value(aggregate, suffix)}")
        return lines

    def _feature_value(self, name: str, outputs: dict[str, str]) -> str:
        """The expression of feature ``name`` in the returned dict."""
        feature = self._features[name]
        if isinstance(feature, RowFeature):
            return _row_value(feature)
        if isinstance(feature, Ratio):
            default = f"DEFAULT_{len(self._constants)}"
            self._constants[default] = feature.default  # finite (see Ratio)
            numerator = outputs[feature.numerator.name]
            denominator = outputs[feature.denominator.name]
            return f"{numerator} / {denominator} if {denominator} else {default}"
        return outputs[name]


def _aggregate_value(aggregate: WindowAggregate, suffix: str) -> str:
    """One aggregate over its window from the window's count / total / frauds / extrema."""
    count = f"count_{suffix}"
    if aggregate.agg is Agg.COUNT:
        return f"float({count})"
    if aggregate.agg in (Agg.SUM, Agg.MEAN):
        total = f"frauds_{suffix}" if aggregate.uses_labels else f"total_{suffix}"
        return total if aggregate.agg is Agg.SUM else f"{total} / {count} if {count} else 0.0"
    return f"low_{suffix}" if aggregate.agg is Agg.MIN else f"high_{suffix}"


def _row_value(row: RowFeature) -> str:
    """A row feature's expression (the arithmetic of :class:`rtml_features.rows.RowFeatures`)."""
    if row.kind is RowKind.FIELD:
        if row.field != "amount":  # the only numeric transaction field the engines pass on
            raise ValueError(f"{row.name}: the streaming engines only know the amount field")
        return "float(amount)"
    if row.kind is RowKind.WEEKEND:
        return "1.0 if weekend else 0.0"
    return f"1.0 if hour <= {int(row.night_end_hour)} else 0.0"


def _ms(duration: Any) -> int:
    return int(duration.total_seconds() * 1000)
