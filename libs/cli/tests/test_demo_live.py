"""The demo's live step summarises what the services' own counters say, as printed."""

from __future__ import annotations

import io

from rich.console import Console, Group

from rtml_cli.demo_steps.live import _DESCRIBE, _decisions_table, _declined
from rtml_cli.platform.scrape import parse

SUMMARY = {
    "ok": 1169, "outcomes": {"approve": 1166, "review": 0, "decline": 3}, "degraded": 0,
    "status_4xx": 0, "status_5xx": 0, "latency_ms": {"p50": 5.8, "p99": 18.7, "max": 30.0},
    "seconds": 30.0, "achieved_rate": 39.0, "labels": {"produced": 1169},
    "event_time": {"first": "2018-04-15T00:00:43Z", "last": "2018-04-16T05:58:29Z"},
}
DECLINE = {
    "transaction_id": "demo-1-144004", "score": 0.971, "model_name": "fraud-detector",
    "model_version": "1",
    "fired_rules": [{"rule": "score_very_high", "reason_code": "SCORE_VERY_HIGH",
                     "outcome": "decline"},
                    {"rule": "risky_terminal", "reason_code": "RISKY_TERMINAL", "outcome": None}],
    "contributions": [{"feature": "terminal_id_risk_7day_window", "value": 0.4167,
                       "contribution": 6.858, "method": "treeshap"}],
}


def _text(*renderables: object) -> str:
    out = io.StringIO()
    Console(file=out, width=160).print(Group(*renderables))  # type: ignore[arg-type]
    return out.getvalue()


def test_decisions_and_the_declined_payment_are_shown() -> None:
    text = _text(_decisions_table(SUMMARY), *_declined(DECLINE))
    assert "1,169" in text and "1,166" in text and "5.8 ms" in text and "18.7 ms" in text
    assert "declined: demo-1-144004, score 0.971 (fraud-detector v1)" in text
    assert "SCORE_VERY_HIGH -> decline" in text and "RISKY_TERMINAL" in text
    assert "terminal_id_risk_7day_window" in text and "+6.858" in text
    assert _declined(None) == []


def test_services_are_described_from_their_exported_series() -> None:
    scorer = parse('rtml_scorer_events_scored_total{role="champion",model_version="1"} 120.0\n'
                   'rtml_scorer_events_scored_total{role="shadow",model_version="2"} 118.0\n')
    assert _DESCRIBE["scorer"](scorer) == ("120 vectors scored by the champion, "
                                           "118 by shadows")
    auditor = parse('rtml_shadow_auditor_roc_auc{role="champion",model_version="1"} 0.765\n'
                    'rtml_shadow_auditor_roc_auc{role="shadow",model_version="2"} 0.798\n'
                    'rtml_shadow_auditor_agreement{role="shadow",model_version="2"} 0.999\n')
    assert _DESCRIBE["shadow-auditor"](auditor) == (
        "champion AUC 0.765 on matured labels; shadow v2: AUC 0.798, agrees with the "
        "champion on 99.9%")
    assert _DESCRIBE["shadow-auditor"]([]) == "no matured labels yet"
    consistency = parse(
        'rtml_consistency_decisions_total{outcome="checked"} 111.0\n'
        'rtml_consistency_decisions_pending 4.0\n'
        'rtml_consistency_checked_total{feature="tx_amount",lag="current"} 111.0\n'
        'rtml_consistency_checked_total{feature="tx_amount",lag="stale"} 9.0\n'
        'rtml_consistency_mismatches_total{feature="tx_amount",lag="current"} 0.0\n')
    assert _DESCRIBE["consistency-monitor"](consistency).startswith(
        "111 sampled decisions re-computed with the batch engine (4 waiting for their window's "
        "data): 0 mismatches in 111 feature values")
