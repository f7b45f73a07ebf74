"""Redis online store backend."""
