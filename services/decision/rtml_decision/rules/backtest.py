"""Backtest a candidate rule set over logged decisions before activating it.

``logged`` is a DataFrame with one row per logged decision (from the
Cassandra decision log or a Parquet export — reading it is the caller's job):
``transaction_id``, ``outcome`` (what was decided then), the inputs the rules
read (feature columns, ``score``, ``amount``, ``hour``, ...) and optionally
``is_fraud`` (the label, where known; NaN/None when not). The candidate is
evaluated on every row; the "before" side is the logged outcome, or — with
``current`` — the current rule set re-evaluated on the same rows (isolating
the rule change from whatever model or rules produced the log).

Missing values (NaN) become ``None``: a missing ``score`` behaves as in
degraded mode; a row missing a *required* input of a rule set is skipped and
counted. Evaluation is row-wise with the compiled rules (~10-20 µs a row), so
100k rows take a couple of seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rtml_common.events import Outcome
from rtml_decision.rules.ruleset import RuleSet
from rtml_decision.rules.types import MissingInputError

OUTCOMES = (Outcome.APPROVE, Outcome.REVIEW, Outcome.DECLINE)


@dataclass(frozen=True, slots=True)
class LabelMetrics:
    """How one side's decisions fared on the labelled rows."""

    frauds: int
    genuine: int
    #: Frauds declined or reviewed (caught), declined, and approved (missed).
    caught: int
    declined: int
    missed: int
    #: Genuine transactions declined or reviewed (customer friction), and declined.
    false_positives: int
    false_declines: int

    @property
    def recall(self) -> float | None:
        return self.caught / self.frauds if self.frauds else None

    @property
    def precision(self) -> float | None:
        flagged = self.caught + self.false_positives
        return self.caught / flagged if flagged else None

    def to_dict(self) -> dict[str, Any]:
        return {"frauds": self.frauds, "genuine": self.genuine, "caught": self.caught,
                "declined": self.declined, "missed": self.missed,
                "false_positives": self.false_positives,
                "false_declines": self.false_declines,
                "recall": self.recall, "precision": self.precision}


@dataclass(frozen=True)
class Backtest:
    """How decisions would change under a candidate rule set."""

    candidate: str
    candidate_version: str
    #: "logged" (the log's outcomes) or the current rule set's version.
    baseline: str
    rows: int
    #: Rows evaluated (both sides known); skipped rows lacked a required input.
    evaluated: int
    skipped: int
    before: dict[str, int]
    after: dict[str, int]
    #: before outcome -> after outcome -> count.
    transitions: dict[str, dict[str, int]]
    changed: int
    labelled: int
    before_labels: LabelMetrics | None
    after_labels: LabelMetrics | None
    #: Candidate rule -> number of evaluated rows on which it fired.
    rule_fires: dict[str, int]
    #: Candidate rule evaluations that raised (a UDF failed), per rule.
    rule_errors: dict[str, int]
    changed_examples: list[dict[str, Any]] = field(default_factory=list)
    skipped_examples: list[str] = field(default_factory=list)

    def rates(self, side: str) -> dict[str, float]:
        counts = self.before if side == "before" else self.after
        return {k: (v / self.evaluated if self.evaluated else 0.0) for k, v in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate, "candidate_version": self.candidate_version,
            "baseline": self.baseline, "rows": self.rows, "evaluated": self.evaluated,
            "skipped": self.skipped,
            "before": self.before, "after": self.after,
            "before_rates": self.rates("before"), "after_rates": self.rates("after"),
            "transitions": self.transitions, "changed": self.changed,
            "labelled": self.labelled,
            "before_labels": self.before_labels.to_dict() if self.before_labels else None,
            "after_labels": self.after_labels.to_dict() if self.after_labels else None,
            "rule_fires": self.rule_fires, "rule_errors": self.rule_errors,
            "changed_examples": self.changed_examples,
            "skipped_examples": self.skipped_examples,
        }

    def to_markdown(self) -> str:
        n = self.evaluated or 1
        lines = [
            f"### Backtest of `{self.candidate}` {self.candidate_version} "
            f"against {self.baseline}",
            "",
            f"{self.rows:,} logged decisions, {self.evaluated:,} evaluated, "
            f"{self.skipped:,} skipped (missing required inputs); "
            f"**{self.changed:,} decisions change** ({self.changed / n:.2%}).",
            "",
            "| outcome | before | after | change |",
            "|---|---:|---:|---:|",
        ]
        for o in OUTCOMES:
            b, a = self.before[o.value], self.after[o.value]
            lines.append(f"| {o.value} | {b:,} ({b / n:.2%}) | {a:,} ({a / n:.2%}) "
                         f"| {a - b:+,} |")
        lines += ["", "Transitions (rows: before, columns: after):", "",
                  "| before \\ after | " + " | ".join(o.value for o in OUTCOMES) + " |",
                  "|---|" + "---:|" * len(OUTCOMES)]
        for b_out in OUTCOMES:
            row = self.transitions[b_out.value]
            lines.append(f"| {b_out.value} | "
                         + " | ".join(f"{row[a.value]:,}" for a in OUTCOMES) + " |")
        if self.before_labels and self.after_labels:
            bl, al = self.before_labels, self.after_labels
            lines += ["", f"On {self.labelled:,} labelled rows ({bl.frauds:,} frauds):", "",
                      "| figure | before | after |", "|---|---:|---:|"]
            for label, key in (("frauds caught (declined or reviewed)", "caught"),
                               ("frauds declined", "declined"),
                               ("frauds missed (approved)", "missed"),
                               ("false positives (genuine reviewed or declined)",
                                "false_positives"),
                               ("false declines (genuine declined)", "false_declines")):
                lines.append(f"| {label} | {getattr(bl, key):,} | {getattr(al, key):,} |")
            lines.append(f"| recall | {_pct(bl.recall)} | {_pct(al.recall)} |")
            lines.append(f"| precision | {_pct(bl.precision)} | {_pct(al.precision)} |")
        if self.rule_fires:
            lines += ["", "| candidate rule | fired | errors |", "|---|---:|---:|"]
            for rule, count in self.rule_fires.items():
                lines.append(f"| {rule} | {count:,} | {self.rule_errors.get(rule, 0):,} |")
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column as Python objects with NaN/NA as None."""
    series = frame[name]
    if series.isna().any():
        return series.astype(object).where(series.notna(), None).tolist()
    return series.tolist()


def _labels(outcomes: list[str], labels: list[Any]) -> LabelMetrics:
    frauds = genuine = caught = declined = missed = fp = fd = 0
    for outcome, label in zip(outcomes, labels, strict=True):
        if bool(label):
            frauds += 1
            if outcome == "approve":
                missed += 1
            else:
                caught += 1
                declined += outcome == "decline"
        else:
            genuine += 1
            if outcome != "approve":
                fp += 1
                fd += outcome == "decline"
    return LabelMetrics(frauds, genuine, caught, declined, missed, fp, fd)


def backtest(candidate: RuleSet, logged: pd.DataFrame, current: RuleSet | None = None,
             *, examples: int = 20) -> Backtest:
    """Evaluate ``candidate`` over ``logged`` and compare with the log (or ``current``).

    Raises ``ValueError`` when a column the comparison needs is absent
    (a required input of a rule set, ``outcome`` without ``current``) from a
    log that has rows; an empty log (no decision in the window) gives a
    report of zero rows.
    """
    sets = [candidate] + ([current] if current is not None else [])
    needed = {"transaction_id"} | ({"outcome"} if current is None else set())
    for rs in sets:
        needed |= set(rs.required_inputs)
    if logged.empty:  # no decision in the window: nothing to compare, not an error
        logged = pd.DataFrame({name: pd.Series(dtype=object) for name in sorted(needed)})
    missing = sorted(needed - set(logged.columns))
    if missing:
        raise ValueError(f"logged decisions lack column(s): {', '.join(missing)}")
    names = sorted(set().union(*(rs.inputs for rs in sets)) & set(logged.columns))
    columns = [_column(logged, n) for n in names]
    ids = [str(i) for i in logged["transaction_id"].tolist()]
    if current is None:
        logged_outcomes = [Outcome(str(o).strip().lower()).value for o in logged["outcome"]]

    rule_fires: Counter[str] = Counter()
    rule_errors: Counter[str] = Counter()
    before: list[str] = []
    after: list[str] = []
    kept: list[int] = []
    skipped: list[str] = []
    for i, row in enumerate(zip(*columns, strict=True) if columns else ((),) * len(ids)):
        context = dict(zip(names, row, strict=True))
        try:
            result = candidate.evaluate(context)
            b = current.evaluate(context).outcome.value if current is not None \
                else logged_outcomes[i]
        except MissingInputError:
            skipped.append(ids[i])
            continue
        kept.append(i)
        before.append(b)
        after.append(result.outcome.value)
        for fired in result.fired:
            rule_fires[fired.rule] += 1
        for error in result.errors:
            rule_errors[error.rule] += 1

    transitions = {b.value: {a.value: 0 for a in OUTCOMES} for b in OUTCOMES}
    changed_examples: list[dict[str, Any]] = []
    for i, b, a in zip(kept, before, after, strict=True):
        transitions[b][a] += 1
        if a != b and len(changed_examples) < examples:
            changed_examples.append({"transaction_id": ids[i], "before": b, "after": a})
    changed = sum(1 for b, a in zip(before, after, strict=True) if a != b)

    labelled = 0
    before_labels = after_labels = None
    if "is_fraud" in logged.columns:
        labels = _column(logged, "is_fraud")
        known = [j for j, i in enumerate(kept) if labels[i] is not None]
        labelled = len(known)
        if known:
            kept_labels = [labels[kept[j]] for j in known]
            before_labels = _labels([before[j] for j in known], kept_labels)
            after_labels = _labels([after[j] for j in known], kept_labels)

    fires = {r.name: rule_fires.get(r.name, 0) for r in candidate.rules}
    return Backtest(
        candidate=candidate.name, candidate_version=candidate.version,
        baseline="logged decisions" if current is None
        else f"`{current.name}` {current.version}",
        rows=len(ids), evaluated=len(kept), skipped=len(skipped),
        before={o.value: before.count(o.value) for o in OUTCOMES},
        after={o.value: after.count(o.value) for o in OUTCOMES},
        transitions=transitions, changed=changed, labelled=labelled,
        before_labels=before_labels, after_labels=after_labels,
        rule_fires=fires, rule_errors={k: v for k, v in rule_errors.items() if v},
        changed_examples=changed_examples, skipped_examples=skipped[:examples])
