"""Kafka helpers on confluent-kafka: reliable producer, at-least-once consumer
loop with dead-lettering, and topic administration."""
