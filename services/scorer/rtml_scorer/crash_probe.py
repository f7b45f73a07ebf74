"""Running the scorer as a process to crash it: its environment and what to watch.

For kill -9 tests (``tests/test_crash_duplicates.py``, the fault suite in
``tests/faults``): :func:`scorer_env` configures a ``python -m rtml_scorer``
process (with :class:`rtml_localstack.crash.ServiceProcess`), and
:func:`published_beyond_ledger` says when a kill would leave predictions
published after the positions the scorer stored — the case that used to
duplicate them.
"""

from __future__ import annotations

from collections.abc import Iterable

from rtml_common.kafka.published import end_offsets
from rtml_scorer.outputs import PREDICTIONS_TOPIC
from rtml_scorer.republish import PublicationLedger


def scorer_env(bootstrap: str, tracking_uri: str, model: str, group: str,
               commit_interval_s: float = 3.0, publication_interval_s: float = 0.5
               ) -> dict[str, str]:
    """The environment of a scorer process under test; a long commit interval makes
    every kill leave outputs published after the last commit."""
    return {
        "RTML_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "RTML_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "RTML_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "RTML_KAFKA_COMMIT_INTERVAL_S": str(commit_interval_s),
        "RTML_MLFLOW_TRACKING_URI": tracking_uri,
        "RTML_SCORER_MODEL_NAME": model,
        "RTML_SCORER_CONSUMER_GROUP": group,
        "RTML_SCORER_PUBLICATION_CHECKPOINT_INTERVAL_S": str(publication_interval_s),
    }


def published_beyond_ledger(ledger: PublicationLedger, partitions: Iterable[int]) -> int:
    """Predictions after the lowest positions the ``features`` partitions have stored
    (0 while any has none, or only the ledgers started before anything was scored)."""
    since: dict[tuple[str, int], int] = {}
    for partition in partitions:
        positions = ledger.load(partition)
        if positions is None:
            return 0
        for key, offset in positions.items():
            if key[0] == PREDICTIONS_TOPIC:
                since[key] = min(offset, since.get(key, offset))
    if not since or not sum(since.values()):
        return 0
    now = end_offsets(ledger.kafka, [PREDICTIONS_TOPIC], near=since)
    return sum(now.values()) - sum(since.values())
