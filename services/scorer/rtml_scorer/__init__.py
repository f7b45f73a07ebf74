"""rtml scorer: champion and shadow scoring on the live ``features`` stream (issue #5).

Run it with ``python -m rtml_scorer``. Settings: :mod:`rtml_scorer.config`;
the scoring step: :mod:`rtml_scorer.scorer`; wiring: :mod:`rtml_scorer.service`;
design: docs/scorer.md.
"""

SERVICE_NAME = "rtml-scorer"
ISSUE = 5
