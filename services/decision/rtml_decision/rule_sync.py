"""Keep this process's rules in step with the shared store (:mod:`rtml_decision.rule_store`).

One daemon thread per process subscribes to the store's activation channel
and re-reads the store: when it (re)subscribes (covering announcements
missed while disconnected), on each announcement, and every
``RTML_DECISION_RULES_REFRESH_INTERVAL_S`` (covering anything else). A
re-read costs one ``HGET`` of the revision; the document is fetched only
when the stored revision is above the one held.

Never trusted blindly: the stored text is validated again (YAML, schema,
expressions, embedded tests — a new release's functions may disagree with
an old set) in the rule worker's child process with its time limit, and
its version must be the one stored with it. A document refused is logged
and counted (``rtml_decision_rules_sync_failures_total{reason="invalid"}``),
the rules held stay, and that revision is not tried again; Redis being
unreachable is counted as ``redis_unavailable`` and retried. A store holding
a lower revision than this process lost its data (Redis keeps no
persistence here): the set held is stored again (:meth:`RuleStore.reseed`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from redis.client import PubSub

from rtml_decision.active_rules import ActiveRules
from rtml_decision.metrics import DecisionMetrics
from rtml_decision.request_store import ANY_REDIS_FAILURE
from rtml_decision.rule_store import RuleStore, StoredRulesInvalid
from rtml_decision.rules import RuleSet, RuleSetError

logger = logging.getLogger(__name__)

#: Validates a stored rule set's text completely: the compiled set, or RuleSetError.
Validator = Callable[[str, str], RuleSet]

#: Longest wait between two reconnection attempts of the subscriber.
MAX_BACKOFF_S = 5.0


class RuleSync:
    """Moves :class:`ActiveRules` to the store's newer revisions; see the module docstring."""

    def __init__(self, rules: ActiveRules, store: RuleStore, validate: Validator,
                 metrics: DecisionMetrics, refresh_interval_s: float = 10.0) -> None:
        self.rules = rules
        self.store = store
        self.validate = validate
        self.metrics = metrics
        self.refresh_interval_s = refresh_interval_s
        #: The revision last refused, not validated again (a new one is).
        self.refused_revision = 0
        self._last_refusal = ""
        self._lock = threading.Lock()  # one re-read at a time (start-up, thread)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self, why: str) -> bool:
        """Re-read the store; True if a newer set was activated. Never raises."""
        with self._lock:
            try:
                return self._sync(why)
            except ANY_REDIS_FAILURE as error:
                self.metrics.rules_sync_failed("redis_unavailable")
                logger.warning("shared rules (%s): Redis unavailable, keeping %s (revision "
                               "%d): %r", why, self.rules.current.primary.version,
                               self.rules.current.revision, error)
                return False

    def _sync(self, why: str) -> bool:
        held = self.rules.current.revision
        revision = 0  # unknown until read
        try:
            revision = self.store.revision()
            if revision < held:
                self._reseed(why, revision)
                return False
            if revision == held or revision == self.refused_revision:
                return False
            stored = self.store.load()
            # read again: our own upload has usually been activated here by now
            if stored is None or stored.revision <= self.rules.current.revision:
                return False
            revision = stored.revision
            source = f"<shared revision {revision}>"
            rule_set = self.validate(stored.text, source)
            if rule_set.version != stored.version:
                raise RuleSetError(f"{source}: the text gives version {rule_set.version}, "
                                   f"stored as {stored.version}")
        except (StoredRulesInvalid, RuleSetError) as error:
            self._refuse(why, revision, error)
            return False
        state = self.rules.activate(rule_set, stored.source, revision=revision,
                                    activated_at=stored.activated_at, text=stored.text)
        if state.revision != revision:  # a newer one arrived meanwhile
            return False
        logger.info("shared rules (%s): now deciding with %s %s (revision %d)", why,
                    rule_set.name, rule_set.version, revision)
        return True

    def _reseed(self, why: str, stored_revision: int) -> None:
        """The store holds less than this process (Redis lost it): store ours again."""
        state = self.rules.current
        if state.text is None:
            return
        if self.store.reseed(state.revision, state.primary, state.text, state.source,
                             state.activated_at):
            logger.warning("shared rules (%s): the store held revision %d, below ours (Redis "
                           "lost it?): stored %s (revision %d) again", why, stored_revision,
                           state.primary.version, state.revision)

    def _refuse(self, why: str, revision: int, error: Exception) -> None:
        """Count and log a refused stored set; keep the rules held (and stop retrying it)."""
        self.metrics.rules_sync_failed("invalid")
        repeated = revision == 0 and str(error) == self._last_refusal
        self._last_refusal = str(error)
        if revision:
            self.refused_revision = max(self.refused_revision, revision)
        current = self.rules.current
        (logger.debug if repeated else logger.error)(
            "shared rules (%s): stored revision %s refused, keeping %s (revision %d): %s", why,
            revision or "?", current.primary.version, current.revision, str(error)[:2000])

    def start(self) -> None:
        """Follow the store on a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._follow, name="rules-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _follow(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=False)
            try:
                pubsub.subscribe(self.store.channel)
                backoff = 0.1
                self._listen(pubsub)
            except ANY_REDIS_FAILURE as error:  # once (re)subscribed, the store is re-read
                (logger.warning if backoff == 0.1 else logger.debug)(
                    "shared rules: subscription lost, retrying in %.1fs: %r", backoff, error)
                self.metrics.rules_sync_failed("redis_unavailable")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                with contextlib.suppress(*ANY_REDIS_FAILURE):
                    pubsub.close()

    def _listen(self, pubsub: PubSub) -> None:
        """Re-read on (re)subscription, on each announcement and every refresh interval."""
        next_read = time.monotonic() + self.refresh_interval_s
        while not self._stop.is_set():
            wait = max(0.0, min(1.0, next_read - time.monotonic()))
            message = pubsub.get_message(timeout=wait)
            if message is not None and message["type"] in ("subscribe", "message"):
                self.sync("subscribed" if message["type"] == "subscribe"
                          else "activation announced")
                next_read = time.monotonic() + self.refresh_interval_s
            elif time.monotonic() >= next_read:
                self.sync("periodic re-read")
                next_read = time.monotonic() + self.refresh_interval_s
