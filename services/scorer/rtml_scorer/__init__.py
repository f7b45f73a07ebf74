"""rtml scorer: champion and shadow scoring (issue #5; not implemented yet).

Run it with ``python -m rtml_scorer``.
Settings: :mod:`rtml_scorer.config`.
"""

SERVICE_NAME = "rtml-scorer"
ISSUE = 5
