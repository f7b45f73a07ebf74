"""Fixtures of the fault suite: the harness, service processes, and the chaos report.

Test modules cannot import each other under pytest's importlib mode, so the
harness (``harness.py`` beside this file) is handed to them by the
``faults`` fixture. Each case records its figures with ``fault_report``; when
``RTML_FAULTS_REPORT`` names a file (``make chaos`` does), the session writes
them there as a markdown table, with the machine and the date.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_HERE = Path(__file__).parent
_RESULTS: list[dict[str, Any]] = []


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rtml_faults_harness", _HERE / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_HARNESS = _load_harness()


@pytest.fixture
def faults() -> ModuleType:
    """The harness module (``ServiceProcess``, ``wait_until``, ``tally``, ``profile()``...)."""
    return _HARNESS


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``factory(module, env) -> ServiceProcess``; every one killed at teardown."""
    started: list[Any] = []

    def factory(module: str, env: dict[str, str]) -> Any:
        service = _HARNESS.ServiceProcess(module, env, tmp_path / "logs")
        started.append(service)
        return service

    yield factory
    for service in started:
        service.close()


@pytest.fixture
def fault_report() -> Callable[[Any], None]:
    """``record(FaultResult)``: printed, and written to the chaos report if one is asked for."""

    def record(result: Any) -> None:
        row = result.as_row()
        _RESULTS.append(row)
        print(f"fault result: {row}")

    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RTML_FAULTS_REPORT")
    if not target or not _RESULTS:
        return
    Path(target).write_text(render_report(_RESULTS, _HARNESS.profile().name, exitstatus))


def render_report(rows: list[dict[str, Any]], profile: str, exitstatus: int) -> str:
    """The markdown report of one fault session."""
    cpu = os.cpu_count()
    lines = [
        "# Fault suite report",
        "",
        f"Written by `make chaos` (profile `{profile}`) on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {platform.node()}: "
        f"{platform.system()} {platform.machine()}, {cpu} CPU(s), Python "
        f"{platform.python_version()}. pytest exit status: {exitstatus} "
        f"({'all cases passed' if exitstatus == 0 else 'SOME CASES FAILED'}).",
        "",
        "Recovery = from the SIGKILL (or the server's return) to the moment the service's "
        "effects cover every input produced before the fault.",
        "",
        "| case | fault | records | faults injected | lost | duplicated | "
        "recovery max (s) | recovery median (s) | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['fault']} | {row['records']:,} | {row['faults']} | "
            f"{row['lost']} | {row['duplicated']} | {_num(row['recovery_max_s'])} | "
            f"{_num(row['recovery_median_s'])} | {row['notes']} |")
    total = {key: sum(r[key] for r in rows) for key in ("records", "faults", "lost",
                                                        "duplicated")}
    lines += ["", f"Total: {total['records']:,} records, {total['faults']} faults injected, "
                  f"{total['lost']} lost, {total['duplicated']} duplicated.", ""]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
