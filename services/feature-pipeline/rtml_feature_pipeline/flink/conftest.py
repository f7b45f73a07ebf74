"""pytest collection of this package's doctests (``pytest --doctest-modules``).

The Redis sink subclasses PyFlink's ``KeyedProcessFunction`` at import time,
so it imports only in the Flink virtualenv; in the main one (no PyFlink)
pytest skips collecting it instead of failing the whole run. :mod:`.compile`
and :mod:`.job` need no PyFlink to import.
"""

from __future__ import annotations

import importlib.util

collect_ignore = [] if importlib.util.find_spec("pyflink") else ["sink.py"]
