"""Kill -9 of the scorer mid-stream publishes nothing twice and loses nothing.

Issue #17 finding 7: a scorer killed after publishing but before committing
scored its replay again and re-published every prediction and shadow score of
it. The scorer runs as its own process (``python -m rtml_scorer``) with a
long commit interval, so a kill always leaves published-but-uncommitted
outputs; it is SIGKILLed once outputs exist beyond the positions its
publication ledger stored, restarted, and left to score the rest. Then
``predictions`` and ``shadow-scores`` must hold exactly one record per
(transaction, model version), for every transaction produced.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest

from rtml_common.config import KafkaSettings
from rtml_common.kafka.published import end_offsets
from rtml_localstack.crash import ServiceProcess, duplicates, published_keys, wait_until
from rtml_scorer.crash_probe import published_beyond_ledger, scorer_env
from rtml_scorer.outputs import PREDICTIONS_TOPIC, SHADOW_TOPIC
from rtml_scorer.republish import PublicationLedger
from rtml_scorer.scorer import FEATURES_TOPIC

pytestmark = pytest.mark.integration

#: Chunks of 100 vectors produced after the restart (the input goes on across the kill).
CHUNKS_AFTER_RESTART = 10
#: Predictions beyond the stored positions when the scorer is killed.
PUBLISHED_AFTER_LEDGER = 200


def test_kill_9_publishes_each_score_once(deployment: Any, tmp_path: Any) -> None:
    d = deployment
    champion = d.register(d.xgb_model(1), "champion")
    shadow = d.register(d.xgb_model(2), "shadow")
    group = f"g-{d.name}"
    bootstrap = d.broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    ledger = PublicationLedger(kafka, group, FEATURES_TOPIC, [PREDICTIONS_TOPIC, SHADOW_TOPIC],
                               0, lambda: 0)
    partitions = range(len(end_offsets(kafka, [FEATURES_TOPIC])))
    scorer = ServiceProcess("rtml_scorer", scorer_env(bootstrap, d.registry.tracking_uri,
                                                      d.name, group), tmp_path / "logs")
    produced: list[str] = []
    restarted = threading.Event()

    def produce_steadily() -> None:
        """100 vectors every 0.1 s until some time after the restart (at most 60,000)."""
        customers = d.customers()
        after = 0
        while after < CHUNKS_AFTER_RESTART and len(produced) < 60_000:
            start = len(produced)
            chunk = [d.vector(i, customers[i % 40], d.at(i / 100))
                     for i in range(start, start + 100)]
            d.produce(chunk)
            produced.extend(v.transaction_id for v in chunk)
            after += restarted.is_set()
            time.sleep(0.1)

    producing = threading.Thread(target=produce_steadily, daemon=True)
    scorer.start()
    try:
        wait_until(lambda: "assigned [" in scorer.log() and "'features'" in scorer.log(), 90,
                   "the scorer's assignment", [scorer])
        producing.start()
        wait_until(lambda: published_beyond_ledger(ledger, partitions) >= PUBLISHED_AFTER_LEDGER,
                   60, "predictions published after the stored positions", [scorer])
        scorer.kill9()
        scorer.start()
        restarted.set()
        producing.join(60)
        assert not producing.is_alive()
        wait_until(lambda: sum(published_keys(bootstrap, PREDICTIONS_TOPIC,
                                              lambda v: v["transaction_id"]).values())
                   >= len(produced), 90, "a prediction for every vector", [scorer])
        assert scorer.stop() == 0, scorer.tail()
    finally:
        scorer.close()
    found = re.findall(r"(\d+) outputs published since their last commit", scorer.log())
    assert sum(int(n) for n in found) > 0, scorer.tail()

    for topic, version in ((PREDICTIONS_TOPIC, champion), (SHADOW_TOPIC, shadow)):
        counts = published_keys(bootstrap, topic,
                                lambda v: (v["transaction_id"], v["model_version"]))
        assert duplicates(counts) == 0, (topic, [k for k, n in counts.items() if n > 1][:5])
        assert set(counts) == {(tx, version) for tx in produced}, topic  # none lost


def test_env_is_complete() -> None:
    """The crash test's environment names only settings the scorer knows."""
    from rtml_scorer.config import ENV_PREFIX, Settings

    own = {k for k in scorer_env("b", "u", "m", "g") if k.startswith(ENV_PREFIX)}
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert own <= fields, own - fields
