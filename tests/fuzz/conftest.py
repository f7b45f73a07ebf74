"""The fuzz suite's budget and its OpenAPI fuzzer (issue #17: make hostile probing permanent).

Budget (environment variables; the defaults are the CI run, ``make fuzz`` raises them):

* ``RTML_FUZZ_EXAMPLES`` (default 20): Hypothesis examples per operation and per
  generation mode (schema-valid, then schema-violating), so an API with N
  operations gets up to 2 * N * examples requests;
* ``RTML_FUZZ_RECORDS`` (default 10,000): malformed records the poison test
  produces (plus the valid ones interleaved);
* ``RTML_FUZZ_SEED`` (default 17): one seed for every generator, so a CI
  failure replays exactly.

Every response goes through schemathesis's server-error, status-code and
response-schema checks. A failing case does not stop the run: each is kept
(operation, check, the request as a curl command, the response) so one run
lists every problem; the test fails at the end if any was found.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from rtml_localstack.environment import is_developer_setting

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@dataclass(frozen=True)
class Budget:
    """How much the suite fuzzes (see the module docstring)."""

    examples: int
    records: int
    seed: int

    @classmethod
    def from_environment(cls) -> Budget:
        return cls(examples=int(os.environ.get("RTML_FUZZ_EXAMPLES", "20")),
                   records=int(os.environ.get("RTML_FUZZ_RECORDS", "10000")),
                   seed=int(os.environ.get("RTML_FUZZ_SEED", "17")))


@dataclass
class Finding:
    """One failing request: which check said what, and how to replay it."""

    operation: str
    mode: str
    failure: str
    request: str
    status: int | None

    def describe(self) -> str:
        return (f"{self.operation} [{self.mode}] -> {self.status}: {self.failure}\n"
                f"    {self.request}")


@dataclass
class FuzzReport:
    """What one API's fuzz run did."""

    api: str
    operations: list[str] = field(default_factory=list)
    requests: int = 0
    server_errors: int = 0
    unsatisfiable: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.api}: {len(self.operations)} operations, {self.requests} requests, "
                 f"{self.server_errors} 5xx, {len(self.findings)} failing cases"]
        seen: set[tuple[str, str]] = set()
        for finding in self.findings:
            key = (finding.operation, finding.failure.splitlines()[0])
            if key not in seen:  # one line per distinct failure, not per example
                seen.add(key)
                lines.append(finding.describe())
        return "\n".join(lines)


Fuzz = Callable[..., FuzzReport]


@pytest.fixture(scope="session")
def budget() -> Budget:
    return Budget.from_environment()


@pytest.fixture
def clean_environment(budget: Budget, monkeypatch: pytest.MonkeyPatch) -> None:
    """Services under test see their defaults, not the developer's RTML_* variables
    (the budget, read first, keeps the RTML_FUZZ_* ones)."""
    for name in [name for name in os.environ if is_developer_setting(name)]:
        monkeypatch.delenv(name)


@pytest.fixture
def fuzz_api(budget: Budget) -> Fuzz:
    """``fuzz_api(name, schema, headers=...)``: every operation, both modes, every check."""

    def run(api: str, schema: Any, headers: dict[str, str] | None = None,
            base_url: str | None = None) -> FuzzReport:
        report = FuzzReport(api)
        for result in schema.get_all_operations():
            operation = result.ok()
            report.operations.append(operation.label)
            for mode in MODES:
                _fuzz_operation(operation, mode, budget, report, headers or {}, base_url)
        return report

    return run


def _fuzz_operation(operation: Any, mode: schemathesis.GenerationMode, budget: Budget,
                    report: FuzzReport, headers: dict[str, str], base_url: str | None) -> None:
    @hypothesis.settings(max_examples=budget.examples, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @hypothesis.seed(budget.seed)
    @hypothesis.given(operation.as_strategy(generation_mode=mode))
    def examples(case: schemathesis.Case) -> None:
        report.requests += 1
        try:
            response = case.call(base_url=base_url, headers=headers)
        except Exception as exc:  # in-process (ASGI): an unhandled error, a 500 over HTTP
            report.server_errors += 1
            report.findings.append(Finding(
                operation.label, str(mode), f"Unhandled exception: {exc!r}"[:800],
                case.as_curl_command(headers=headers)[:600], 500))
            return
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as group:
            failures = getattr(group, "exceptions", None) or (group,)
            for failure in failures:
                report.findings.append(Finding(
                    operation.label, str(mode), _text(failure),
                    case.as_curl_command(headers=headers)[:600], response.status_code))

    try:
        examples()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to violate (an operation without parameters or body has no negative
        # cases); any case generated before that still ran every check.
        report.unsatisfiable.append(f"{operation.label} [{mode}]")


def _text(failure: BaseException) -> str:
    title = getattr(failure, "title", type(failure).__name__)
    message = getattr(failure, "message", str(failure))
    return f"{title}: {message}"[:800]
