"""The Flink engine: the same feature definitions as Flink SQL, run with PyFlink.

:mod:`.compile` (pure Python, importable anywhere) turns a ``FeatureSet``
into Flink SQL and refuses what Flink cannot compute; :mod:`.job` is the
PyFlink entry point and :mod:`.sink` its Redis writer, both run inside the
Flink virtualenv (``scripts/flink-venv.sh``). See docs/flink.md.
"""
