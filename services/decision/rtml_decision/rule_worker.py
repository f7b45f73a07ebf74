"""Rule-set validation and backtests in a worker process with a hard time limit.

Why a process: validating a rule set runs its embedded tests, and a backtest
evaluates it over logged decisions — pure-Python CPU work that, on the event
loop, stalled decisions (a 990 KB set with 8,195 tests: 64 s; a decision
waited 58 s against a 50 ms budget). A thread would not help: it holds the
GIL the loop needs. Here each job runs in a child forked from a
``forkserver`` (a clean process with the rules package preloaded, not a
fork of this one with its threads and sockets), the loop only waits on a
pipe from a thread that sleeps in ``poll``, and a job past its time limit
is killed (SIGKILL), never merely abandoned.

What crosses the pipe is plain data: the validated YAML document (the
parent then compiles it without re-running the tests: ~0.2 ms a rule, in a
thread) or the backtest's report. One job runs at a time; others queue.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pandas as pd

from rtml_decision.rules import RuleInputs, RuleSet, RuleSetError, backtest
from rtml_decision.rules.ruleset import rule_set_document, rule_set_from_document

#: Modules the fork server imports once, so each job starts in milliseconds.
PRELOAD = ["rtml_decision.rule_worker"]


class JobTimeout(RuleSetError):
    """The job ran past its time limit and its process was killed."""


def _validate(text: str, source: str, inputs: RuleInputs | None = None) -> dict[str, Any]:
    """Everything :func:`parse_rule_set` checks, embedded tests included; the document."""
    document = rule_set_document(text, source)
    rule_set_from_document(document, source, inputs=inputs)  # raises RuleSetError: why
    result: dict[str, Any] = document
    return result


def _backtest(text: str, source: str, current: dict[str, Any] | None,
              frame: pd.DataFrame, inputs: RuleInputs | None = None) -> dict[str, Any]:
    candidate = rule_set_from_document(rule_set_document(text, source), source, inputs=inputs)
    baseline = None if current is None else rule_set_from_document(
        current, "<active>", run_tests=False, inputs=inputs)
    try:
        report: dict[str, Any] = backtest(candidate, frame, current=baseline).to_dict()
    except ValueError as error:  # the log lacks an input the rules require
        raise RuleSetError(f"{source}: {error}") from None
    return report


_JOBS: dict[str, Callable[..., dict[str, Any]]] = {"validate": _validate,
                                                   "backtest": _backtest}
_WHAT = {"validate": "validation", "backtest": "backtest"}


def _run(job: str, args: tuple[Any, ...], source: str, conn: Connection) -> None:
    """The child: run ``job``, send ("ok", result) or ("error", message)."""
    try:
        conn.send(("ok", _JOBS[job](*args)))
    except RuleSetError as error:
        conn.send(("error", str(error)))
    except (RecursionError, MemoryError, ValueError, TypeError) as error:
        conn.send(("error", f"{source}: cannot be processed: {type(error).__name__}: "
                            f"{str(error)[:300]}"))
    finally:
        conn.close()


class RuleWorker:
    """Runs validation and backtest jobs in killed-on-timeout child processes.

    ``inputs``: what rule sets may read (the served schema's fields and feature
    set, :func:`rtml_decision.rules.request_inputs`); the legacy standard
    inputs when not given. It crosses to the child with each job.
    """

    def __init__(self, validation_timeout_s: float, backtest_timeout_s: float,
                 inputs: RuleInputs | None = None) -> None:
        self.validation_timeout_s = validation_timeout_s
        self.backtest_timeout_s = backtest_timeout_s
        self.inputs = inputs
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)
        self._one_at_a_time: asyncio.Lock | None = None

    @property
    def busy(self) -> bool:
        """Whether a job is running now (uploads and backtests queue behind it)."""
        return self._one_at_a_time is not None and self._one_at_a_time.locked()

    async def validate(self, text: str, source: str = "<upload>") -> RuleSet:
        """The validated, compiled rule set; :class:`RuleSetError` with the reason otherwise."""
        document = await self._job("validate", (text, source, self.inputs), source,
                                   self.validation_timeout_s,
                                   "RTML_DECISION_RULES_VALIDATION_TIMEOUT_S")
        return await asyncio.to_thread(rule_set_from_document, document, source,
                                       None, False, self.inputs)

    def validate_blocking(self, text: str, source: str) -> RuleSet:
        """:meth:`validate` for a thread that may block (the shared-rules sync).

        The same child process and time limit; it does not queue behind the
        API's jobs (a second child at most, for a moment).
        """
        document = self._run_child("validate", (text, source, self.inputs), source,
                                   self.validation_timeout_s,
                                   "RTML_DECISION_RULES_VALIDATION_TIMEOUT_S")
        return rule_set_from_document(document, source, None, False, self.inputs)

    async def backtest(self, text: str, current: RuleSet | None, frame: pd.DataFrame,
                       source: str = "<upload>") -> dict[str, Any]:
        """The backtest report of candidate ``text`` (validated too) over ``frame``."""
        document = None if current is None else dict(current.document)
        report: dict[str, Any] = await self._job(
            "backtest", (text, source, document, frame, self.inputs), source,
            self.backtest_timeout_s,
            "RTML_DECISION_BACKTEST_TIMEOUT_S")
        return report

    async def _job(self, job: str, args: tuple[Any, ...], source: str, timeout_s: float,
                   setting: str) -> Any:
        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Lock()
        async with self._one_at_a_time:
            return await asyncio.to_thread(self._run_child, job, args, source, timeout_s,
                                           setting)

    def _run_child(self, job: str, args: tuple[Any, ...], source: str, timeout_s: float,
                   setting: str) -> Any:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_run, args=(job, args, source, sender),
                                        name=f"rtml-rules-{job}", daemon=True)
        try:
            process.start()
            sender.close()
            if not receiver.poll(timeout_s):
                raise JobTimeout(f"{source}: the {_WHAT[job]} took longer than {timeout_s:g} s "
                                 f"({setting}) and was stopped; split or simplify the rule "
                                 "set or its embedded tests")
            status, payload = receiver.recv()
        except EOFError:
            process.join(5)
            raise RuleSetError(f"{source}: the {_WHAT[job]} process died (exit code "
                               f"{process.exitcode}) before answering") from None
        finally:
            if process.is_alive():
                process.kill()
            process.join()
            receiver.close()
        if status != "ok":
            raise RuleSetError(payload)
        return payload
