"""Shared foundation of every rtml service: event contracts (:mod:`.events`),
topics (:mod:`.topics`), wire format (:mod:`.serde`), configuration
(:mod:`.config`), Kafka helpers (:mod:`.kafka`) and telemetry (:mod:`.telemetry`)."""
