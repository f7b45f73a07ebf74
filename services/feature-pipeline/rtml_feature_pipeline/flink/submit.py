"""Submit the Flink job to a session cluster once, then follow it (docker-compose's ``flink-job``).

::

    python -m rtml_feature_pipeline.flink.submit [--jobmanager HOST:PORT] [--parallelism N] \\
        [-- JOB OPTIONS]

1. waits until the job manager's REST API answers and offers at least
   ``--parallelism`` task slots;
2. submits :mod:`.job` with ``flink run -d -p N`` unless a job of the same
   name (``rtml-features-{set}-{version}``) is already running or starting:
   a restarted submitter never runs the job twice;
3. follows it: exits 0 when it finishes (a bounded run), 1 when it fails or is
   cancelled (compose's restart policy then submits again; without a
   checkpoint to resume from, the new run re-reads the topics), and writes the
   job's state to ``--state-file`` on each poll.

``--check`` is the healthcheck: exit 0 when a job of that name is running.

Settings from the environment (compose sets them): ``RTML_FLINK_JOBMANAGER``
(default ``flink-jobmanager:8081``), ``RTML_FLINK_PARALLELISM`` (default 1;
at most the cluster's task slots), and the job's own (``RTML_KAFKA_BOOTSTRAP_SERVERS``,
``RTML_REDIS_URL``, ``RTML_FEATURE_SET``, ... see :mod:`.job`). Job options after
``--`` go to the job unchanged. Pure standard library plus :mod:`.job`'s
argument parser: it runs where ``flink`` and the job's Python are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtml_feature_pipeline.flink import job as flink_job

#: Job states in which a job of that name counts as already submitted.
ACTIVE = {"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "RECONCILING", "FAILING",
          "CANCELLING", "SUSPENDED"}
FAILED = {"FAILED", "CANCELED"}


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The submitter's options, and the job's (everything after ``--``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    job_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, job_args = argv[:cut], argv[cut + 1:]
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="rtml_feature_pipeline.flink.submit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobmanager", default=env("RTML_FLINK_JOBMANAGER",
                                                    "flink-jobmanager:8081"),
                        help="REST address of the job manager (default: %(default)s)")
    parser.add_argument("--parallelism", type=int,
                        default=int(env("RTML_FLINK_PARALLELISM", "1")),
                        help="the job's parallelism (RTML_FLINK_PARALLELISM, default 1)")
    parser.add_argument("--flink", default=None,
                        help="the flink CLI (default: $FLINK_HOME/bin/flink or flink on PATH)")
    parser.add_argument("--python", default=sys.executable,
                        help="Python of the job's client and of the task managers' workers")
    parser.add_argument("--wait-s", type=float, default=300.0,
                        help="how long to wait for the cluster's slots")
    parser.add_argument("--poll-s", type=float, default=15.0)
    parser.add_argument("--state-file", type=Path, default=None,
                        help="write the followed job's state here on each poll")
    parser.add_argument("--check", action="store_true",
                        help="healthcheck: exit 0 if the job is running, else 1")
    args = parser.parse_args(argv)
    if args.parallelism < 1:
        parser.error("--parallelism must be >= 1")
    return args, job_args


def rest(jobmanager: str, path: str, timeout_s: float = 5.0) -> Any:
    """GET ``http://{jobmanager}{path}`` as JSON."""
    with urllib.request.urlopen(f"http://{jobmanager}{path}", timeout=timeout_s) as response:
        return json.loads(response.read())


def job_name(job_args: Sequence[str]) -> str:
    """The name :mod:`.job` gives the job with these options (``rtml-features-{set}-{version}``)."""
    feature_set = flink_job.compile_from_args(flink_job.parse_args(
        [*job_args, "--print-sql"])).feature_set
    return f"rtml-features-{feature_set.name}-{feature_set.version}"


def jobs_named(jobmanager: str, name: str) -> list[dict[str, Any]]:
    """The cluster's jobs of that name, newest first."""
    jobs = [j for j in rest(jobmanager, "/jobs/overview")["jobs"] if j.get("name") == name]
    return sorted(jobs, key=lambda j: j.get("start-time", 0), reverse=True)


def wait_for_slots(jobmanager: str, slots: int, timeout_s: float) -> None:
    """Until the cluster offers ``slots`` task slots in all (raises TimeoutError)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            overview = rest(jobmanager, "/overview")
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = str(exc)
        else:
            if overview.get("slots-total", 0) >= slots:
                return
            last = f"{overview.get('slots-total')} slots"
        time.sleep(2.0)
    raise TimeoutError(f"{jobmanager}: fewer than {slots} task slots after {timeout_s:g} s "
                       f"({last})")


def flink_cli(given: str | None) -> str:
    """The ``flink`` command line client."""
    if given:
        return given
    home = os.environ.get("FLINK_HOME")
    if home and Path(home, "bin", "flink").exists():
        return str(Path(home, "bin", "flink"))
    found = shutil.which("flink")
    if found is None:
        raise FileNotFoundError("no flink CLI: set FLINK_HOME or pass --flink")
    return found


def submit_command(args: argparse.Namespace, job_args: Sequence[str]) -> list[str]:
    """``flink run -d -p N`` of :mod:`.job` (run it with :func:`submit_env`).

    The job learns N from ``RTML_FLINK_PARALLELISM`` (:func:`submit_env`), not from a
    ``--parallelism`` argument: the flink CLI takes an option it knows that directly
    follows ``-py FILE`` for its own (``--parallelism`` is ``-p``), and the job would
    then set its default, 1.
    """
    return [flink_cli(args.flink), "run", "-d", "-m", args.jobmanager,
            "-p", str(args.parallelism), "-pyclientexec", args.python, "-pyexec", args.python,
            "-py", flink_job.__file__, *job_args]


def submit_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of ``flink run``: the job's client inherits it."""
    return {**os.environ, "RTML_FLINK_PARALLELISM": str(args.parallelism)}


def follow(args: argparse.Namespace, name: str) -> int:
    """Poll the newest job of that name until it ends: 0 finished, 1 failed or gone."""
    while True:
        found = jobs_named(args.jobmanager, name)
        state = found[0]["state"] if found else "MISSING"
        if args.state_file is not None:
            args.state_file.write_text(state + "\n")
        if state == "FINISHED":
            print(f"{name}: finished", flush=True)
            return 0
        if state in FAILED or state == "MISSING":
            print(f"{name}: {state}", file=sys.stderr, flush=True)
            return 1
        time.sleep(args.poll_s)


def main(argv: Sequence[str] | None = None) -> int:
    """Submit once (idempotent), then follow; or ``--check``."""
    args, job_args = parse_args(argv)
    name = job_name(job_args)
    if args.check:
        try:
            found = jobs_named(args.jobmanager, name)
        except (OSError, urllib.error.URLError, ValueError):
            return 1
        return 0 if found and found[0]["state"] == "RUNNING" else 1
    wait_for_slots(args.jobmanager, args.parallelism, args.wait_s)
    active = [j for j in jobs_named(args.jobmanager, name) if j["state"] in ACTIVE]
    if active:
        print(f"{name}: already {active[0]['state']} as {active[0]['jid']}; following it",
              flush=True)
    else:
        command = submit_command(args, job_args)
        print("submitting: " + " ".join(command), flush=True)
        run = subprocess.run(command, text=True, capture_output=True, env=submit_env(args))
        sys.stdout.write(run.stdout[-5000:])
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-5000:])
            return run.returncode
        deadline = time.monotonic() + 60
        while not jobs_named(args.jobmanager, name) and time.monotonic() < deadline:
            time.sleep(1.0)
    return follow(args, name)


if __name__ == "__main__":
    sys.exit(main())
