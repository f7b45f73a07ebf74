"""One evaluation: figures → verdicts → recommendations / promotions → report → bounds.

Runs on its own thread (a gate run in the registry can take a minute; the
consumer must keep polling meanwhile) with its own SQLite connection. The
HTTP API reads :attr:`Evaluator.latest` and asks :meth:`Evaluator.approve`.

What happens to a ``graduate`` verdict, once per (shadow version, champion
version): a recommendation is recorded with a frozen copy of the report
(the file the registry's ``reason`` points at). With ``auto_promote`` it is
applied at once; otherwise it waits for ``POST /v1/recommendations/{id}/approve``.
A refused or failed promotion stays recorded as such and is not retried
automatically; approving it again is how a person retries.

A verdict is acted on only while it still describes the registry: the shadow
must still hold a shadow alias (a challenger replaced by a newer one is
history, however good its figures) and the champion it was compared with
must still be the champion (right after a promotion the figures still name
the old one until the new champion's scores arrive). Otherwise it waits.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rtml_models.aliases import CHAMPION, is_shadow_alias
from rtml_shadow_auditor.audit import Evaluation, evaluate_state
from rtml_shadow_auditor.config import Settings
from rtml_shadow_auditor.metrics import AuditorMetrics
from rtml_shadow_auditor.policy import Verdict, judge
from rtml_shadow_auditor.promotion import PromotionResult, RegistryClient
from rtml_shadow_auditor.report.render import write_atomically
from rtml_shadow_auditor.reporting import build_report, render
from rtml_shadow_auditor.store import APPLIED, FAILED, PENDING, REFUSED, Recommendation, Store

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class NotApprovable(Exception):
    """The recommendation is unknown (404) or already applied / being applied (409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Snapshot:
    """The latest evaluation as the API serves it."""

    evaluation: Evaluation
    verdicts: dict[str, Verdict]
    html: str | None
    report_path: Path | None


class Evaluator:
    """Evaluates the state and acts on the verdicts (see the module doc)."""

    def __init__(self, settings: Settings, store: Store, registry: RegistryClient,
                 metrics: AuditorMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.metrics = metrics or AuditorMetrics()
        self.latest: Snapshot | None = None
        self.evaluations = 0
        self._lock = threading.Lock()

    @property
    def report_path(self) -> Path:
        """The report rewritten on every evaluation."""
        model = _UNSAFE.sub("-", self.settings.model_name)
        return self.settings.report_dir / f"shadow-audit-{model}.html"

    def evaluate(self, now: datetime | None = None) -> Snapshot:
        """Evaluate, decide, act, write the report and prune; serialised with approvals."""
        with self._lock:
            return self._evaluate(now or datetime.now(UTC))

    def _evaluate(self, now: datetime) -> Snapshot:
        s = self.settings
        evaluation = evaluate_state(self.store, s.model_name, now, window_s=s.window_s,
                                    label_window_s=s.label_window_s,
                                    threshold=s.decision_threshold, bins=s.psi_bins,
                                    k=s.card_precision_k)
        verdicts = {audit.model_version: judge(audit, s, now) for audit in evaluation.shadows}
        for verdict in verdicts.values():
            self.store.save_verdict(verdict.model_version, verdict.evaluated_at,
                                    verdict.to_dict())
            self.metrics.verdicts.add(1, {"decision": verdict.decision})
        aliases = self._aliases()
        html, path = self._write_report(evaluation, verdicts, aliases)
        for verdict in verdicts.values():
            if verdict.graduate:
                stale = self._stale(verdict.model_version, verdict.champion_version, aliases)
                if stale:
                    logger.info("v%s graduates but is not acted on: %s",
                                verdict.model_version, stale)
                else:
                    self._graduate(verdict, html, now)
        if evaluation.champion is not None:
            self.metrics.record(evaluation.champion)
        for audit in evaluation.shadows:
            self.metrics.record(audit)
        pruned = self.store.prune(s.state_horizon_s, s.max_rows)
        if pruned:
            self.metrics.pruned.add(pruned)
        self.metrics.evaluations.add(1)
        self.evaluations += 1
        snapshot = Snapshot(evaluation, verdicts, html, path)
        self.latest = snapshot
        logger.info("evaluated %s: champion %s, %s", s.model_name,
                    evaluation.champion.model_version if evaluation.champion else None,
                    "; ".join(v.summary for v in verdicts.values()) or "no shadows")
        return snapshot

    def _aliases(self) -> dict[str, str] | None:
        """The registry's aliases now; None when the registry can't be asked."""
        try:
            return self.registry.aliases(self.settings.model_name)
        except Exception as exc:  # the report names "shadow" instead; nothing is promoted
            logger.warning("registry aliases unavailable: %r", exc)
            return None

    @staticmethod
    def _stale(version: str, champion: str, aliases: dict[str, str] | None) -> str | None:
        """Why a graduation of ``version`` over ``champion`` must wait, or None (see module doc)."""
        if aliases is None:
            return "the registry's aliases could not be read"
        shadows = sorted(a for a, v in aliases.items() if v == version and is_shadow_alias(a))
        if not shadows:
            return f"v{version} no longer holds a shadow alias"
        current = aliases.get(CHAMPION)
        if current != champion:
            return (f"it was compared with v{champion}, but the champion is now "
                    f"{'v' + current if current else 'unset'}; waiting for the new champion's "
                    "scores")
        return None

    def _write_report(self, evaluation: Evaluation, verdicts: dict[str, Verdict],
                      aliases: dict[str, str] | None) -> tuple[str | None, Path | None]:
        data = build_report(evaluation, verdicts, aliases or {}, self.settings.latency_sla_ms,
                            self.settings.card_precision_k)
        if data is None:
            return None, None
        html = render(data)
        return html, write_atomically(self.report_path, html)

    def _graduate(self, verdict: Verdict, html: str | None, now: datetime) -> None:
        s = self.settings
        if self.store.recommended(s.model_name, verdict.model_version, verdict.champion_version):
            return
        frozen: Path | None = None
        if html is not None:
            name = (f"shadow-audit-{_UNSAFE.sub('-', s.model_name)}-v{verdict.model_version}"
                    f"-over-v{verdict.champion_version}-{now.strftime('%Y%m%dT%H%M%SZ')}.html")
            frozen = write_atomically(s.report_dir / name, html)
        recommendation = self.store.add_recommendation(
            s.model_name, verdict.model_version, verdict.champion_version, verdict.summary,
            str(frozen.resolve()) if frozen else None)
        if recommendation is None:
            return
        logger.info("recommendation %d: %s", recommendation.id, verdict.summary)
        if s.auto_promote:
            self._apply(recommendation, "rtml-shadow-auditor (auto_promote)", (PENDING,))
        else:
            self.metrics.promotions.add(1, {"outcome": "recommended"})

    def approve(self, rec_id: int, actor: str) -> Recommendation:
        """A person approves: promote now (pending, refused or failed recommendations)."""
        with self._lock:
            current = self.store.recommendation(rec_id)
            if current is None:
                raise NotApprovable(404, f"no recommendation {rec_id}")
            if current.model_name != self.settings.model_name:
                raise NotApprovable(409, f"recommendation {rec_id} is for {current.model_name}")
            stale = self._stale(current.model_version, current.champion_version, self._aliases())
            if stale:
                raise NotApprovable(409, f"recommendation {rec_id} is out of date: {stale}")
            return self._apply(current, actor, (PENDING, REFUSED, FAILED))

    def _apply(self, recommendation: Recommendation, actor: str,
               allowed: tuple[str, ...]) -> Recommendation:
        claimed = self.store.claim(recommendation.id, allowed, actor)
        if claimed is None:
            raise NotApprovable(409, f"recommendation {recommendation.id} is "
                                     f"{recommendation.status}, not {' / '.join(allowed)}")
        reason = claimed.summary
        if claimed.report_path:
            reason += f"; audit report: {claimed.report_path}"
        result: PromotionResult = self.registry.promote(claimed.model_name, claimed.model_version,
                                                        reason, actor)
        status = APPLIED if result.applied else (REFUSED if result.status == "refused"
                                                 else FAILED)
        self.metrics.promotions.add(1, {"outcome": result.status})
        (logger.info if result.applied else logger.warning)(
            "promotion of %s v%s: %s: %s", claimed.model_name, claimed.model_version,
            result.status, result.detail)
        finished = self.store.finish(claimed.id, status, f"{result.status}: {result.detail}")
        assert finished is not None
        return finished

    def audit_json(self) -> dict[str, Any]:
        snapshot = self.latest
        if snapshot is None:
            return {"model_name": self.settings.model_name, "evaluated_at": None,
                    "champion": None, "shadows": []}
        return snapshot.evaluation.to_dict()
