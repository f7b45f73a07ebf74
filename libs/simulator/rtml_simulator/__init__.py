"""rtml card-transaction simulator and event-time Kafka replay.

``simulate(config)`` runs the generative process in memory, ``write_dataset``
stores it as Parquet, ``replay`` (in :mod:`rtml_simulator.replay`) streams a
data set to Kafka in event-time order with delayed labels. ``RichMode`` in
the config adds a device, IP address, merchant category, country and channel
to every payment and two fraud patterns they reveal (:mod:`rtml_simulator.rich`).
"""

from rtml_simulator.config import (
    CardTesting,
    DistributionShift,
    FraudScenarios,
    RichMode,
    SimulationConfig,
)
from rtml_simulator.io import read_manifest, read_transactions, write_dataset
from rtml_simulator.simulate import Simulation, Summary, simulate

__all__ = [
    "CardTesting",
    "DistributionShift",
    "FraudScenarios",
    "RichMode",
    "Simulation",
    "SimulationConfig",
    "Summary",
    "read_manifest",
    "read_transactions",
    "simulate",
    "write_dataset",
]
