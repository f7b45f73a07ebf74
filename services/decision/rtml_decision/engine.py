"""The request path: one transaction in, one decision out, within a bounded time.

Steps (each a small collaborator, see their modules for the why):

1. one Redis round trip: the idempotency record, and when there is none
   our claim on the transaction id and the entries of the entities' prefix
   logs the request's windows select (:mod:`rtml_decision.request_store`);
   a stored decision is returned as
   is and nothing is produced again (a concurrent request holding the claim
   is waited for, within the budget) — unless it was made for a request
   with other fields (its fingerprint differs): :class:`IdempotencyConflict`;
2. every feature at the request's event time, the request included, and the
   consistency markers (:mod:`rtml_decision.request_features`): the values
   the batch engine computes for training;
3. the canary arm by a deterministic hash (:mod:`rtml_decision.canary`) and
   that arm's model score (:mod:`rtml_decision.scoring`);
4. the active rule set (:mod:`rtml_decision.active_rules`), then the top
   feature contributions — for review / decline decisions only unless
   ``contributions="all"`` (exact TreeSHAP costs several times the score,
   and an approved payment is rarely explained);
5. the decision and the transaction are queued on Kafka
   (:mod:`rtml_decision.outputs`), the decision replaces our claim in Redis
   in the background, and the response is sent.

Degraded mode: when Redis fails (error or socket timeout, both bounded by
the request budget), a window reaches before what an entity's logs still
hold (a request older than the logs' retention: ``out_of_range``), the
budget is spent before scoring, no champion is
loaded, or the model or the rules raise, the *fallback* rule set answers
from the request alone (row features, no score) and the decision says
``degraded`` with the reason. A Redis failure also means the idempotency
record can't be checked or written: the decision is still published; the
decision log's primary key (the transaction id) absorbs a duplicate.

Why a coroutine on the event loop and not FastAPI's thread pool: the work
is a fraction of a millisecond of CPU (one Redis round trip on a blocking
client bounded by the budget and a circuit breaker, see
:mod:`rtml_decision.request_store`; a one-row XGBoost call; the rules), and
handing it to a thread pool cost more than the work itself (thread hops and
GIL contention among 40 threads; see docs/benchmarks.md, "Decision API").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from rtml_common.events import Event, FiredRule, Transaction, utcnow
from rtml_decision.active_rules import ActiveRules
from rtml_decision.canary import CanaryRouter
from rtml_decision.decision_events import Inputs, build_decision
from rtml_decision.generic_request import (
    GenericLookup,
    GenericRequestStore,
    request_event,
    schema_fingerprint,
)
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.outputs import DecisionPublisher, route_schema
from rtml_decision.request_features import RequestFeatures
from rtml_decision.request_model import generic_path, request_model
from rtml_decision.request_store import (
    REDIS_FAILURES,
    DecisionInProgress,
    IdempotencyConflict,
    Lookup,
    RequestStore,
    Stored,
    fingerprint,
)
from rtml_decision.rules import RuleInputs, RuleResult, RuleSet, request_inputs
from rtml_decision.scoring import Scored, explain, pick_model, score
from rtml_features.definitions import FeatureSet
from rtml_features.generic_rows import GenericRows
from rtml_features.prefix_log import OutOfRange
from rtml_features.request_generic import GenericRequestVectors
from rtml_features.rows import RowFeatures, epoch_ms, weekend_and_hour
from rtml_models.serving import ServingModels

logger = logging.getLogger(__name__)


#: Request fields the context always holds (read by name below).
_CONTEXT_FIELDS = frozenset({"amount", "customer_id", "terminal_id"})


class DegradedReason(StrEnum):
    """Why the fallback rule set answered."""

    REDIS_UNAVAILABLE = "redis_unavailable"
    #: A window of the request reaches before what an entity's logs still hold (they
    #: keep the longest window plus label delay behind the newest event): its
    #: features are unknown, not 0.
    OUT_OF_RANGE = "out_of_range"
    TIMEOUT = "timeout"
    NO_MODEL = "no_model"
    MODEL_ERROR = "model_error"
    RULES_ERROR = "rules_error"


@dataclass(frozen=True, slots=True)
class Answer:
    """The response body (JSON bytes) and whether it was a stored decision."""

    body: bytes
    replayed: bool


class DecisionEngine:
    """Decides transactions; see the module docstring for the steps and degraded mode."""

    def __init__(self, *, store: RequestStore, serving: ServingModels, rules: ActiveRules,
                 router: CanaryRouter, feature_set: FeatureSet, publisher: DecisionPublisher,
                 metrics: DecisionMetrics, timeout_ms: int, top_contributions: int = 5,
                 canary_key: str = "customer_id", explain_approvals: bool = False) -> None:
        self.store = store
        self.serving = serving
        self.rules = rules
        self.router = router
        self.feature_set = feature_set
        schema = feature_set.schema
        #: Any set but the handbook's classic ones takes the generic request path
        #: (:mod:`rtml_decision.generic_request`); theirs stays as tuned.
        self.generic = generic_path(feature_set)
        if self.generic:
            if not isinstance(store, GenericRequestStore):
                raise TypeError(f"feature set {feature_set.name!r} is served from the generic "
                                "layout: its store must be a GenericRequestStore")
            self.generic_store = store
            self.generic_vectors = GenericRequestVectors(feature_set)
            self.generic_rows = GenericRows(feature_set)
            self._row_names = frozenset(self.generic_rows.names)
        else:
            self.row_features = RowFeatures(feature_set)
            self.request_features = RequestFeatures(feature_set)
            self._row_names = frozenset(self.row_features.names)
        self._id_field = schema.id_field
        self._time_field = schema.event_time
        self._key_field = schema.partition_key
        #: The request body (generated from the set's schema) and what rules may read.
        self.request_model = request_model(feature_set.schema)
        route_schema(self.request_model, feature_set.schema)
        self.rule_inputs: RuleInputs = request_inputs(feature_set.schema, feature_set.names,
                                                      feature_set.name)
        #: Declared request fields put in the context besides those read below.
        self.extra_fields = tuple(name for name in self.rule_inputs.fields
                                  if name not in _CONTEXT_FIELDS)
        self.publisher = publisher
        self.metrics = metrics
        self.timeout_s = timeout_ms / 1000
        self.top_contributions = top_contributions
        self.canary_key = canary_key
        self.explain_approvals = explain_approvals

    async def decide(self, tx: Transaction, started: float | None = None) -> Answer:
        """Decide ``tx`` (an event of the set's schema); ``started`` (``perf_counter``) is
        when the request arrived."""
        started = time.perf_counter() if started is None else started
        if self.generic:
            return await self._decide_generic(tx, started)
        rules = self.rules.current  # one rule-set state for the whole request
        snapshot = self.serving.current  # one model snapshot for the whole request
        time_ms = epoch_ms(tx.event_time)
        weekend, hour = weekend_and_hour(time_ms)
        context: dict[str, Any] = {
            "amount": tx.amount, "hour": float(hour), "is_weekend": weekend,
            "customer_id": tx.customer_id, "terminal_id": tx.terminal_id,
            **self.row_features.values(time_ms, {"amount": tx.amount}),
        }
        for name in self.extra_fields:
            context[name] = getattr(tx, name)
        reason: DegradedReason | None = None
        scored: Scored | None = None
        lookup: Lookup | None = None
        request_fingerprint = fingerprint(tx)
        try:
            lookup = self.store.lookup(tx.transaction_id, request_fingerprint, time_ms,
                                       {"customer_id": tx.customer_id,
                                        "terminal_id": tx.terminal_id})
        except REDIS_FAILURES as error:
            logger.warning("redis unavailable, answering degraded: %r", error)
            reason = DegradedReason.REDIS_UNAVAILABLE
        if lookup is not None:
            if lookup.stored is not None:
                return await self._replay(tx.transaction_id, request_fingerprint,
                                          lookup.stored, started)
            if time.perf_counter() - started > self.timeout_s:
                reason = DegradedReason.TIMEOUT
            else:
                try:
                    context.update(self.request_features.compute(
                        tx.transaction_id, time_ms, {"amount": tx.amount}, lookup.entities))
                except OutOfRange as error:
                    logger.debug("transaction %r older than the online logs hold: %s",
                                   tx.transaction_id[:64], error)
                    reason = DegradedReason.OUT_OF_RANGE
                else:
                    scored, reason = self._score(snapshot, tx, context)
        return self._conclude(tx, started, rules, context, scored, reason, request_fingerprint)

    async def _decide_generic(self, tx: Event, started: float) -> Answer:
        """:meth:`decide` for a set served from the generic layout: the same steps over
        the schema's fields and the set's entities (:mod:`rtml_decision.generic_request`)."""
        rules = self.rules.current
        snapshot = self.serving.current
        event = request_event(tx, self.feature_set.schema)
        time_ms: int = event[self._time_field]
        transaction_id = str(event[self._id_field])
        weekend, hour = weekend_and_hour(time_ms)
        context: dict[str, Any] = {"hour": float(hour), "is_weekend": weekend}
        for name in self.rule_inputs.fields:
            context[name] = event[name]
        context.update(self.generic_rows.values(time_ms, event))
        reason: DegradedReason | None = None
        scored: Scored | None = None
        lookup: GenericLookup | None = None
        request_fingerprint = schema_fingerprint(event, self.feature_set.schema)
        try:
            lookup = self.generic_store.lookup_event(transaction_id, request_fingerprint, event)
        except REDIS_FAILURES as error:
            logger.warning("redis unavailable, answering degraded: %r", error)
            reason = DegradedReason.REDIS_UNAVAILABLE
        if lookup is not None:
            if lookup.stored is not None:
                return await self._replay(transaction_id, request_fingerprint, lookup.stored,
                                          started)
            if time.perf_counter() - started > self.timeout_s:
                reason = DegradedReason.TIMEOUT
            else:
                try:
                    context.update(self.generic_vectors.compute(event, lookup.reads))
                except OutOfRange as error:
                    logger.debug("transaction %r older than the online logs hold: %s",
                                 transaction_id[:64], error)
                    reason = DegradedReason.OUT_OF_RANGE
                else:
                    scored, reason = self._score(snapshot, tx, context)
        return self._conclude(tx, started, rules, context, scored, reason, request_fingerprint)

    def _conclude(self, tx: Event, started: float, rules: Any, context: dict[str, Any],
                  scored: Scored | None, reason: DegradedReason | None,
                  request_fingerprint: bytes) -> Answer:
        """Rules, contributions, the fallback when degraded, then :meth:`_finish`."""
        rule_set = rules.primary if reason is None else rules.fallback
        if reason is None:
            try:
                result = rule_set.evaluate(context)
            except Exception:
                logger.exception("rule set %s failed, answering with the fallback",
                                 rule_set.version)
                reason, rule_set = DegradedReason.RULES_ERROR, rules.fallback
        if reason is None and scored is not None:
            exact = self.explain_approvals or result.outcome != "approve"
            try:
                scored = explain(scored, context, self.top_contributions,
                                 "treeshap" if exact else "path")
            except Exception:  # an explanation failing must not fail the decision
                logger.exception("contributions of model %s v%s failed",
                                 scored.served.info.name, scored.served.version)
        if reason is not None:
            scored = None
            context = {k: v for k, v in context.items() if k not in self.feature_set.names
                       or k in self._row_names}
            context["score"] = None
            self.metrics.degraded(reason)
            result = rule_set.evaluate(context)
        return self._finish(tx, started, rule_set, result, scored, context, reason,
                            request_fingerprint if reason is not DegradedReason.REDIS_UNAVAILABLE
                            else None)

    async def _replay(self, transaction_id: str, request_fingerprint: bytes, stored: Stored,
                      started: float) -> Answer:
        """The stored decision; if a concurrent request holds the claim, its decision.

        Raises :class:`IdempotencyConflict` when the record belongs to a
        request with other fields (same id, different payment: a 409), and
        :class:`DecisionInProgress` when a pending decision is not stored
        within what is left of the budget (the API answers 409: retry later).
        """
        if stored.conflicts_with(request_fingerprint):
            raise IdempotencyConflict(transaction_id)
        if stored.body is None:
            left = self.timeout_s - (time.perf_counter() - started)
            try:
                stored = await self.store.wait_for_decision(transaction_id, max(left, 0.0))
            except REDIS_FAILURES as error:
                raise DecisionInProgress(transaction_id) from error
            if stored.conflicts_with(request_fingerprint):
                raise IdempotencyConflict(transaction_id)
        assert stored.body is not None
        self.metrics.replayed()
        return Answer(stored.body, replayed=True)

    def _score(self, snapshot: Any, tx: Event, context: dict[str, Any]
               ) -> tuple[Scored | None, DegradedReason | None]:
        # the handbook's customer; another schema's partition key (its customer, or what
        # stands for it), unless it declares a customer_id
        key = (getattr(tx, "customer_id", None) or getattr(tx, self._key_field)
               if self.canary_key == "customer_id" else getattr(tx, self._id_field))
        arm, served = pick_model(snapshot, self.router.arm(key))
        if served is None:
            return None, DegradedReason.NO_MODEL
        try:
            scored = score(served, arm, context)
        except Exception:
            logger.exception("model %s v%s failed, answering degraded", served.info.name,
                             served.version)
            return None, DegradedReason.MODEL_ERROR
        context["score"] = scored.score
        return scored, None

    def _finish(self, tx: Event, started: float, rule_set: RuleSet, result: RuleResult,
                scored: Scored | None, context: dict[str, Any],
                reason: DegradedReason | None, claimed: bytes | None) -> Answer:
        """Publish and answer the decision; ``claimed``: our claim's fingerprint, if we hold one."""
        fired: list[FiredRule] = result.fired
        latency_ms = (time.perf_counter() - started) * 1000
        decided_at = utcnow()
        model_name = scored.served.info.name if scored else None
        model_version = scored.served.version if scored else None
        arm = scored.arm if scored else None
        inputs: Inputs = {k: v for k, v in context.items()
                          if v is None or isinstance(v, float | int | str)}
        transaction_id = getattr(tx, self._id_field)
        decision = build_decision(
            transaction_id=transaction_id, customer_id=str(getattr(tx, self._key_field)),
            event_time=getattr(tx, self._time_field), outcome=result.outcome,
            score=scored.score if scored else None, model_name=model_name,
            model_version=model_version, rule_set_version=rule_set.version,
            fired_rules=fired, arm=arm, degraded=reason is not None,
            latency_ms=latency_ms, decided_at=decided_at, inputs=inputs)
        body = orjson.dumps({
            "transaction_id": transaction_id,
            "outcome": str(result.outcome),
            "score": decision.score,
            "model_name": model_name,
            "model_version": model_version,
            "arm": arm,
            "rule_set": rule_set.name,
            "rule_set_version": rule_set.version,
            "fired_rules": [f.model_dump(mode="json") for f in fired],
            "contributions": [{"feature": c.feature, "value": c.value,
                               "contribution": c.contribution, "method": c.method}
                              for c in (scored.contributions if scored else [])],
            "degraded": reason is not None,
            "degraded_reason": str(reason) if reason else None,
            "latency_ms": round(latency_ms, 3),
            "decided_at": decided_at,
        })
        if claimed is not None:  # we hold the claim: our decision replaces it
            self.store.record(transaction_id, claimed, body)
        self.publisher.publish(decision, tx)
        self.metrics.decided(str(result.outcome), arm, reason is not None,
                             latency_ms / 1000, fired)
        return Answer(body, replayed=False)
