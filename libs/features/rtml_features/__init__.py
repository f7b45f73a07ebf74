"""Feature definitions shared by the streaming, batch and Flink engines."""
