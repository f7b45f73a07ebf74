"""rtml decision: the synchronous decision API and its rules DSL (issue #6).

Run it with ``python -m rtml_decision``; the decision-log writer alone with
``python -m rtml_decision.log_writer``; an offline backtest with
``python -m rtml_decision.backtest``. Settings: :mod:`rtml_decision.config`.
"""

SERVICE_NAME = "rtml-decision"
ISSUE = 6
