"""The event the handbook's features are computed for: the transaction.

Declared once in :mod:`rtml_common.handbook` (the simulator, the decision API and
the validators read it there); named here so the repo lists the schema its sets
read. A repo of your own declares its events in a file like this one.
"""

from rtml_common.handbook import TRANSACTION_SCHEMA

__all__ = ["TRANSACTION_SCHEMA"]
