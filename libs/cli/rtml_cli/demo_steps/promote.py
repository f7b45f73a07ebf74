"""Demo step: promote the trained models through the registry service and its gate.

Aliases only ever move through the registry service (``services/model-registry``):
it loads the version in a clean process, checks its inputs against the
feature set, scores the held-out sample, measures p99 single-row latency,
compares metrics with the current champion, then moves the alias, writes the
audit log and publishes ``model-events``. The demo runs the real service
(``python -m rtml_model_registry``) against the stack for the two requests
and stops it afterwards; "what next" prints how to run it yourself.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from rtml_cli.demo_steps.context import DemoContext, DemoError
from rtml_localstack.ports import free_port
from rtml_localstack.services import ServiceFailed, ServiceProcess

#: The alias each trained model asks for, in the training step's order.
ALIASES = {"xgboost": "champion", "river": "challenger"}
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 120.0  # the gate starts a clean process and measures latency


class RegistryProcess:
    """``python -m rtml_model_registry`` on a free port, with a fresh API key."""

    def __init__(self, state_dir: Path, client_env: dict[str, str]) -> None:
        self.port = free_port()
        self.api_key = secrets.token_urlsafe(24)
        state = state_dir / "model-registry"
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / "demo-service.log"
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = ServiceProcess("rtml_model_registry", self.log_path, {
            **client_env,
            "RTML_MODEL_REGISTRY_HTTP_PORT": str(self.port),
            "RTML_MODEL_REGISTRY_API_KEY": self.api_key,
            "RTML_MODEL_REGISTRY_AUDIT_DB": str(state / "audit.sqlite"),
        })

    def start(self) -> RegistryProcess:
        """Start the service and wait until it answers ``/healthz``."""
        self.service.start()
        try:
            self.service.wait_http(f"{self.url}/healthz", START_TIMEOUT_S)
        except ServiceFailed as exc:
            raise DemoError(str(exc)) from None
        return self

    def set_alias(self, model: str, alias: str, version: str, reason: str,
                  actor: str = "rtml demo") -> dict[str, Any]:
        response = httpx.put(
            f"{self.url}/v1/models/{model}/aliases/{alias}",
            json={"version": version, "actor": actor, "reason": reason},
            headers={"X-API-Key": self.api_key}, timeout=REQUEST_TIMEOUT_S)
        body: dict[str, Any] = response.json()
        if response.status_code == 409:  # a re-run: the alias already points there
            return {"alias": alias, "version": version, "gate": None, "note": body.get("detail")}
        if response.status_code != 200:
            raise DemoError(f"{model} v{version} -> {alias}: HTTP {response.status_code}: "
                            f"{body.get('detail', body)}")
        return body

    def stop(self) -> None:
        self.service.stop()


def promote_models(ctx: DemoContext) -> None:
    """Champion for XGBoost, challenger for River, each through the gate."""
    if not ctx.trained:
        raise DemoError("nothing to promote: the training step must run first")
    service = RegistryProcess(ctx.settings.state_dir, ctx.client_env)
    changes: list[dict[str, Any]] = []
    try:
        service.start()
        for result in ctx.trained:
            version = result.model_version
            alias = ALIASES[result.config.model]
            change = service.set_alias(
                version.name, alias, version.version,
                f"rtml demo: {result.config.model}, AP {result.metrics.ap:.3f} on the test split")
            changes.append(change)
            gate = change.get("gate") or {}
            total = gate.get("timings_ms", {}).get("total")
            took = f" (gate {total / 1000:.1f} s)" if total else ""
            ctx.console.print(f"  {version.name} v{version.version} -> {alias}"
                              f"{took}: {change.get('note') or 'gate passed'}", highlight=False)
    finally:
        service.stop()
    ctx.add_section("registry: aliases moved through the validation gate", _table(changes))
    model = ctx.trained[0].model_version.name
    ctx.next_commands.append((
        f"rtml train --data {ctx.settings.data_dir}",
        "train and register another version (then promote it through the registry API)"))
    ctx.next_commands.append((
        'eval "$(rtml stack env)"; RTML_MODEL_REGISTRY_API_KEY=... python -m rtml_model_registry',
        f"run the registry API (docs: docs/model-registry.md); GET /v1/models/{model}"))
    ctx.next_commands.append((
        "rtml loop", "the closed loop end to end: drift alert -> retrain -> shadow -> new "
        "champion (docs/closed-loop.md)"))


def _table(changes: list[dict[str, Any]]) -> Table:
    """One line per alias change: the gate's verdict, then its latency finding."""
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("alias", "version", "gate"):
        table.add_column(column, no_wrap=column != "gate")
    for change in changes:
        gate = change.get("gate")
        if not gate:
            table.add_row(change["alias"], str(change["version"]),
                          str(change.get("note", "unchanged")))
            continue
        statuses = [check["status"] for check in gate["checks"]]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("passed", "skipped", "failed")
                           if statuses.count(s))
        latency = next((c["detail"] for c in gate["checks"] if c["name"] == "latency"), "")
        table.add_row(change["alias"], str(change["version"]),
                      f"{'passed' if gate['passed'] else 'REFUSED'} ({counts}); {latency}")
    return table
