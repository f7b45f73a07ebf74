"""What the demo's steps share: their settings, their results, the summary.

The demo is a list of :class:`Step` objects run in order over one
:class:`DemoContext`. A step reads what earlier steps left in the context
(e.g. the broker address the stack step found), stores its own result for
later steps and tests, and appends :class:`Section` objects that the final
summary prints. Adding a stage to the demo (features, scoring, decisions) is
therefore one new step function and one entry in the step list; nothing
else changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType

from rtml_simulator.config import SimulationConfig

if TYPE_CHECKING:
    from rtml_cli.demo_steps.audit import AuditCounts
    from rtml_cli.demo_steps.dataset import DatasetInfo
    from rtml_cli.demo_steps.malformed import MalformedRecord
    from rtml_common.kafka.dead_letter import DeadLetter
    from rtml_localstack.stack import ComponentResult
    from rtml_simulator.replay import ReplayReport

#: Header put on every record the demo produces by hand, so a re-run can tell
#: its own records (and their dead letters) from those of earlier runs.
RUN_HEADER = "rtml-demo-run"


class DemoError(RuntimeError):
    """A step cannot go on; the message says what failed and what to do."""


@dataclass(frozen=True)
class DemoSettings:
    """Everything the user can choose about a demo run."""

    #: Stack state directory (``rtml stack`` commands must use the same one).
    state_dir: Path
    #: Where the simulated data set lives (reused when its config matches).
    data_dir: Path
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    #: Replayed slice: days ``[start_day, start_day + days)``.
    start_day: int = 0
    days: int = 14
    #: Stack components to start, in start order.
    components: Sequence[str] = ("kafka", "redis", "mlflow", "cassandra", "prometheus")
    #: Port per component (None or absent: the component's default).
    ports: Mapping[str, int | None] = field(default_factory=dict)
    #: Per-component start timeout override (None: each component's own).
    stack_timeout_s: float | None = None
    #: The audit consumer stops after this long without a record.
    audit_idle_s: float = 3.0
    #: First training day of the models the demo trains (None: the evaluation
    #: protocol's default, 2018-07-25); 21 days of data must follow it.
    train_start: date | None = None
    #: Registered model name the demo trains and promotes.
    model_name: str = "fraud-detector"
    #: Feature repo folder (``RTML_FEATURE_REPO``) and feature set (``RTML_FEATURE_SET``)
    #: the demo replays, trains and serves; None: the handbook's repo and default set.
    feature_repo: Path | None = None
    feature_set: str | None = None

    def feature_env(self) -> dict[str, str]:
        """The variables that select the served feature set, for this process and every
        service (empty: the handbook's defaults)."""
        env: dict[str, str] = {}
        if self.feature_repo is not None:
            env["RTML_FEATURE_REPO"] = str(self.feature_repo.resolve())
        if self.feature_set is not None:
            env["RTML_FEATURE_SET"] = self.feature_set
        return env


@dataclass(frozen=True)
class Section:
    """One block of the final summary."""

    title: str
    body: RenderableType


@dataclass
class DemoContext:
    """The state of one demo run, filled in step by step."""

    settings: DemoSettings
    console: Console
    #: Identifies this run's hand-made records and its consumer group.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: Wall clock (ms) at the start: records produced by this run are not older.
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    #: Set by the stack step (or by a test pointing at its own broker).
    bootstrap_servers: str | None = None
    stack_results: list[ComponentResult] = field(default_factory=list)
    #: Variables services need to reach the stack (``rtml stack env``).
    client_env: dict[str, str] = field(default_factory=dict)
    dataset: DatasetInfo | None = None
    replay: ReplayReport | None = None
    malformed: list[MalformedRecord] = field(default_factory=list)
    audit: AuditCounts | None = None
    #: The feature worker's run (an ``rtml_feature_pipeline.kafka_engine.EngineRun``).
    features: Any = None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Training results (``rtml_training.result.TrainResult``), champion candidate first.
    trained: list[Any] = field(default_factory=list)
    #: The live step's traffic summary (``rtml_cli.traffic.runner.run_traffic``'s).
    live: dict[str, Any] | None = None
    sections: list[Section] = field(default_factory=list)
    #: ``(command, what it does)`` pairs printed under "what next".
    next_commands: list[tuple[str, str]] = field(default_factory=list)

    def require_kafka(self) -> str:
        """The broker address, or a clear error if no step provided one."""
        if not self.bootstrap_servers:
            raise DemoError("no Kafka broker: the stack step must run first")
        return self.bootstrap_servers

    def add_section(self, title: str, body: RenderableType) -> None:
        self.sections.append(Section(title, body))


@dataclass(frozen=True)
class Step:
    """A named stage of the demo."""

    title: str
    run: Callable[[DemoContext], None]
