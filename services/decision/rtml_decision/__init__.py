"""rtml decision: decision API and rules DSL (issue #6; not implemented yet).

Run it with ``python -m rtml_decision``.
Settings: :mod:`rtml_decision.config`.
"""

SERVICE_NAME = "rtml-decision"
ISSUE = 6
