"""rtml monitoring math, shared so every service measures drift the same way.

* :mod:`rtml_monitoring.reference` — the binned training distributions a model
  version carries (written by training, read by the drift monitor and the
  shadow auditor).
* :mod:`rtml_monitoring.divergence` — PSI, KL and Jensen-Shannon divergence
  between two binned distributions, with one documented smoothing rule.

Pure numpy; no service, broker or MLflow import.
"""
