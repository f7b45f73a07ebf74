"""Make sure the registry has a champion, and a challenger in shadow, before the services start.

The scorer and the decision API serve the ``champion`` alias; without one
every decision is a degraded fallback answer, which is not what a new user
running ``rtml up`` expects. So, when MLflow has no champion for the model,
``up`` does what the demo does: takes the demo's simulated data set
(simulating it, ~2 s, if it is missing), trains XGBoost through the same
pipeline as ``rtml train`` and moves the alias through the registry service
and its validation gate (:class:`rtml_cli.demo_steps.promote.RegistryProcess`),
never around it. Likewise a River online model goes to ``challenger`` when
no version holds that alias, so the scorer has a shadow to score and the
shadow auditor something to compare with the champion, as in production.
Existing aliases are left alone.
"""

from __future__ import annotations

import logging
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from rtml_cli.platform.files import PlatformError
from rtml_models.aliases import CHALLENGER, CHAMPION

#: The model families ``rtml train`` trains (``TrainConfig.model``).
ModelKind = Literal["xgboost", "river"]

#: Days the evaluation protocol's split spans (7 train + 7 delay + 7 test).
SPLIT_DAYS = 21


def current_champion(tracking_uri: str, model_name: str) -> str | None:
    """The champion's version in MLflow's registry, or None when there is none."""
    return current_alias(tracking_uri, model_name, CHAMPION)


def current_alias(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version ``alias`` points to in MLflow's registry, or None when none does."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise PlatformError(f"cannot ask MLflow ({tracking_uri}) for the {alias}: {exc}") from exc
    return str(version.version)


def ensure_data(data_dir: Path, console: Console) -> dict[str, Any]:
    """The manifest of the data set in ``data_dir``, simulating the demo's one if missing.

    Any complete data set there is used as it is (a smaller one makes a quicker
    start); only a missing or unreadable one is (re)generated.
    """
    from rtml_simulator.config import SimulationConfig
    from rtml_simulator.io import TRANSACTIONS_FILE, read_manifest, write_dataset
    from rtml_simulator.simulate import simulate

    try:
        if (data_dir / TRANSACTIONS_FILE).is_file():
            return read_manifest(data_dir)
    except (OSError, ValueError):
        pass
    config = SimulationConfig()
    console.print(f"  simulating {config.n_customers:,} customers x {config.n_days} days into "
                  f"{data_dir} (the demo's data set)", highlight=False)
    write_dataset(simulate(config), data_dir)
    return read_manifest(data_dir)


def choose_split(manifest: dict[str, Any]) -> Any:
    """The evaluation protocol's split when the data covers it, else its last 21 days."""
    from rtml_training.split import SplitConfig

    config = manifest["config"]
    start = date.fromisoformat(config["start_date"])
    days = int(config["n_days"])
    if days < SPLIT_DAYS:
        raise PlatformError(f"the data set has {days} days; training a champion needs at least "
                            f"{SPLIT_DAYS} (7 train, 7 label delay, 7 test)")
    default = SplitConfig()
    if default.test_end <= start + timedelta(days=days):
        return default
    return SplitConfig(train_start=start + timedelta(days=days - SPLIT_DAYS))


def train_version(data_dir: Path, manifest: dict[str, Any], tracking_uri: str,
                  model_name: str, kind: ModelKind = "xgboost") -> tuple[str, float]:
    """Train and register a version (``kind``: xgboost or river); returns (version, test AP)."""
    from rtml_cli.demo_steps.train import _Quiet
    from rtml_simulator.frames import DatasetError
    from rtml_training.config import TrainConfig
    from rtml_training.pipeline import train
    from rtml_training.split import SplitError

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    config = TrainConfig(data=data_dir, model=kind, name=model_name,
                         split=choose_split(manifest), tracking_uri=tracking_uri)
    try:
        result = train(config, _Quiet())
    except (DatasetError, SplitError) as exc:
        raise PlatformError(f"training {kind} on {data_dir}: {exc}") from exc
    if result.model_version is None:
        raise PlatformError("training registered no model version")
    return str(result.model_version.version), float(result.metrics.ap)


def promote(state_dir: Path, client_env: dict[str, str], model_name: str,
            moves: list[tuple[str, str, str]]) -> None:
    """Move each ``(alias, version, reason)`` through the registry service's gate, in order."""
    from rtml_cli.demo_steps.context import DemoError
    from rtml_cli.demo_steps.promote import RegistryProcess

    registry = RegistryProcess(state_dir, client_env)
    try:
        registry.start()
        for alias, version, reason in moves:
            try:
                registry.set_alias(model_name, alias, version, reason, actor="rtml up")
            except DemoError as exc:
                raise PlatformError(f"promoting {model_name} v{version} to {alias}: {exc} "
                                    f"(registry log: {registry.log_path})") from exc
    except DemoError as exc:  # the registry did not start
        raise PlatformError(f"{exc} (registry log: {registry.log_path})") from exc
    finally:
        registry.stop()


def ensure_champion(state_dir: Path, client_env: dict[str, str], data_dir: Path,
                    model_name: str, console: Console) -> str:
    """The champion's version; a champion (XGBoost) and a challenger (River) are trained and
    promoted first where the registry has none."""
    uri = client_env.get("RTML_MLFLOW_TRACKING_URI")
    if not uri:
        raise PlatformError("the stack has no MLflow server; the platform needs it for models")
    wanted: dict[str, ModelKind] = {CHAMPION: "xgboost", CHALLENGER: "river"}
    existing = {alias: current_alias(uri, model_name, alias) for alias in wanted}
    moves: list[tuple[str, str, str]] = []
    manifest: dict[str, Any] | None = None
    for alias, kind in wanted.items():
        version = existing[alias]
        if version is not None:
            console.print(f"  {alias}: {model_name} v{version} (kept)", highlight=False)
            continue
        console.print(f"  no {alias} for {model_name}: training {kind}", highlight=False)
        manifest = manifest or ensure_data(data_dir, console)
        version, ap = train_version(data_dir, manifest, uri, model_name, kind)
        existing[alias] = version
        moves.append((alias, version, f"rtml up: first {alias} ({kind}), AP {ap:.3f} on the "
                                      "test split"))
    if moves:
        promote(state_dir, client_env, model_name, moves)
        for alias, version, _ in moves:
            console.print(f"  {alias}: {model_name} v{version} (trained, gate passed)",
                          highlight=False)
    champion = existing[CHAMPION]
    assert champion is not None
    return champion
