"""Producer retries never reorder a partition, with or without idempotence."""

from __future__ import annotations

from rtml_common.config import KafkaSettings
from rtml_common.kafka.producer import producer_config


def test_without_idempotence_one_request_is_in_flight() -> None:
    config = producer_config(KafkaSettings(idempotent_producer=False))
    assert config["enable.idempotence"] is False
    assert config["max.in.flight.requests.per.connection"] == 1


def test_with_idempotence_the_client_keeps_its_ordered_pipelining() -> None:
    config = producer_config(KafkaSettings(idempotent_producer=True))
    assert config["enable.idempotence"] is True
    assert "max.in.flight.requests.per.connection" not in config


def test_an_explicit_setting_still_wins() -> None:
    settings = KafkaSettings(idempotent_producer=False,
                             extra={"max.in.flight.requests.per.connection": "2"})
    assert producer_config(settings)["max.in.flight.requests.per.connection"] == "2"
