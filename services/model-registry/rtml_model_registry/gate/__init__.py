"""The validation gate every alias change passes: a clean-process check of one version.

:mod:`~rtml_model_registry.gate.worker` runs in its own interpreter and checks
what can only be checked by loading the model (signature, held-out scores,
latency); :mod:`~rtml_model_registry.gate.runner` spawns it with a timeout and
adds the metric comparison with the champion; :mod:`~rtml_model_registry.gate.report`
is the report both produce.
"""

from rtml_model_registry.gate.report import Check, CheckStatus, GateReport
from rtml_model_registry.gate.runner import Gate, SubprocessGate

__all__ = ["Check", "CheckStatus", "Gate", "GateReport", "SubprocessGate"]
