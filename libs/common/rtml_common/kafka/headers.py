"""Normalising Kafka record headers to one shape.

confluent-kafka hands headers back as a list of (name, bytes) pairs, but its
type stubs (and producers from other clients) allow str values too; every
rtml helper works on ``list[tuple[str, bytes | None]]``.
"""

from __future__ import annotations

from typing import Any

HeaderList = list[tuple[str, bytes | None]]


def normalise_headers(raw: Any) -> HeaderList:
    """Headers as (name, bytes-or-None) pairs, whatever shape the client returned."""
    if not raw:
        return []
    if isinstance(raw, list):
        return raw  # what confluent-kafka returns: (str, bytes) pairs already (hot path)
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]
