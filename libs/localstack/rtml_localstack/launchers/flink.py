"""A standalone Flink session cluster from the ``apache-flink`` package (PyFlink).

The PyFlink wheel ships a whole Flink distribution inside the package
(``pyflink/bin``, ``pyflink/conf``, ``pyflink/lib`` with, in the Flink
virtualenv, the Kafka connector): the same jars the job's MiniCluster runs, so
a session cluster started from it runs exactly the tested combination. This
module starts one job manager and N task managers from those scripts in the
foreground (``jobmanager.sh start-foreground``), each its own process group,
with a configuration directory of its own (free 127.0.0.1 ports, small
memory sizes), submits jobs with ``bin/flink run`` and stops everything.

Not a :class:`~rtml_localstack.launchers.base.ComponentLauncher` of the
stack: a cluster is several processes, and only the Flink engine's tests
(and a developer trying the engine) need one::

    with FlinkSessionCluster(Path(".venv-flink/bin/python"), Path("/tmp/flink"),
                             task_manager_env={"PYTHONPATH": "..."}) as cluster:
        cluster.run_python_job("job.py", ["--bootstrap-servers", ...], parallelism=2)

``task_manager_env``: the task managers' embedded Python (PyFlink's
``thread`` execution mode, pemja) runs without the virtualenv's site set-up,
so it needs a ``PYTHONPATH`` naming site-packages and the job's sources.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from rtml_localstack.ports import LOCALHOST, free_ports
from rtml_localstack.process import ProcessIdentity, exit_code, spawn, stop, tail

#: Java options every Flink process on Java 17 needs (from PyFlink's shipped config.yaml).
_JAVA_OPTS_KEY = "env.java.opts.all"


def pyflink_home(python: Path) -> Path:
    """The Flink distribution inside the PyFlink package of ``python``."""
    out = subprocess.run(
        [str(python), "-c", "import os, pyflink; print(os.path.dirname(pyflink.__file__))"],
        capture_output=True, text=True, timeout=60, check=True)
    return Path(out.stdout.strip())


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@dataclass
class FlinkSessionCluster:
    """Job manager + ``task_managers`` task managers on 127.0.0.1, from PyFlink's ``bin/``.

    ``workdir`` holds ``conf/`` (PyFlink's shipped files, with a ``config.yaml``
    written here), ``logs/`` (one file per process) and ``tmp/``. Ports are
    picked free at :meth:`start`.
    """

    python: Path
    workdir: Path
    task_managers: int = 2
    slots_per_task_manager: int = 1
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "1280m"
    task_manager_env: Mapping[str, str] = field(default_factory=dict)
    #: Extra Flink settings (flat keys) written into config.yaml.
    settings: Mapping[str, str] = field(default_factory=dict)
    start_timeout_s: float = 90.0
    home: Path | None = None
    rest_port: int = 0
    rpc_port: int = 0
    _processes: list[tuple[str, ProcessIdentity]] = field(default_factory=list)

    # -- configuration ---------------------------------------------------------------------

    @property
    def conf_dir(self) -> Path:
        return self.workdir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def rest_address(self) -> str:
        """``host:port`` of the REST endpoint (``flink run -m``, the web UI)."""
        return f"{LOCALHOST}:{self.rest_port}"

    def configuration(self) -> dict[str, Any]:
        """The cluster's flat settings: PyFlink's Java options plus these ports and sizes."""
        import yaml  # only the launcher needs it

        assert self.home is not None
        shipped = yaml.safe_load((self.home / "conf" / "config.yaml").read_text()) or {}
        java_opts = _flatten(shipped).get(_JAVA_OPTS_KEY, "")
        return {
            _JAVA_OPTS_KEY: java_opts,
            "jobmanager.rpc.address": LOCALHOST,
            "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.bind-host": LOCALHOST,
            "jobmanager.memory.process.size": self.jobmanager_memory,
            "taskmanager.bind-host": LOCALHOST,
            "taskmanager.host": LOCALHOST,
            "taskmanager.numberOfTaskSlots": self.slots_per_task_manager,
            "taskmanager.memory.process.size": self.taskmanager_memory,
            "rest.address": LOCALHOST,
            "rest.bind-address": LOCALHOST,
            "rest.port": self.rest_port,
            "blob.server.port": "0",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": "0",
            "parallelism.default": 1,
            "io.tmp.dirs": str(self.workdir / "tmp"),
            "web.tmpdir": str(self.workdir / "tmp" / "web"),
            # Fail a broken job at once instead of restarting it for ever.
            "restart-strategy.type": "none",
            **self.settings,
        }

    def prepare(self) -> None:
        """Pick free ports and write ``conf/`` (idempotent)."""
        if self.home is None:
            self.home = pyflink_home(self.python)
        if not self.rest_port or not self.rpc_port:
            self.rest_port, self.rpc_port = free_ports(2)
        if self.conf_dir.exists():
            shutil.rmtree(self.conf_dir)
        shutil.copytree(self.home / "conf", self.conf_dir)
        (self.workdir / "tmp" / "web").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}: {json.dumps(str(value))}" for key, value in
                 self.configuration().items()]
        (self.conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        """Environment of every Flink process and of ``flink run``."""
        assert self.home is not None
        return {"FLINK_HOME": str(self.home), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(self.log_dir)}

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FlinkSessionCluster:
        """Start every process; return once the REST API counts every task manager."""
        self.prepare()
        assert self.home is not None
        bin_dir = self.home / "bin"
        self._processes.append(("jobmanager", spawn(
            ["bash", str(bin_dir / "jobmanager.sh"), "start-foreground"],
            self.log_dir / "jobmanager.out", env=self.env(), cwd=self.workdir,
            die_with_parent=True)))
        for index in range(self.task_managers):
            self._processes.append((f"taskmanager-{index}", spawn(
                ["bash", str(bin_dir / "taskmanager.sh"), "start-foreground"],
                self.log_dir / f"taskmanager-{index}.out",
                env={**self.env(), **self.task_manager_env}, cwd=self.workdir,
                die_with_parent=True)))
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def overview(self) -> dict[str, Any]:
        """``GET /overview``: task managers, slots, jobs."""
        url = f"http://{self.rest_address}/overview"
        with urllib.request.urlopen(url, timeout=2.0) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def wait_ready(self) -> None:
        """Poll ``/overview`` until every task manager has registered its slots."""
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            for name, identity in self._processes:
                code = exit_code(identity.pid)
                if code is not None:
                    raise RuntimeError(f"Flink {name} exited with {code}:\n{self.logs()}")
            try:
                data = self.overview()
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            else:
                if data.get("taskmanagers") == self.task_managers:
                    return
                last = f"{data.get('taskmanagers')} of {self.task_managers} task managers"
            time.sleep(0.5)
        raise TimeoutError(f"Flink session cluster not ready after {self.start_timeout_s:g} s "
                           f"({last}):\n{self.logs()}")

    def stop(self) -> list[str]:
        """SIGTERM every process group (SIGKILL after 15 s); what happened to each."""
        done = [f"{name}: {stop(identity, timeout_s=15.0)}"
                for name, identity in reversed(self._processes)]
        self._processes.clear()
        return done

    def __enter__(self) -> FlinkSessionCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- jobs ------------------------------------------------------------------------------

    def run_python_job(self, script: Path | str, arguments: Sequence[str], parallelism: int,
                       timeout_s: float = 300.0, env: Mapping[str, str] | None = None,
                       detached: bool = False) -> subprocess.CompletedProcess[str]:
        """``flink run -py script`` against this cluster; waits for the job unless detached.

        The client and the task managers' Python workers both use :attr:`python`.
        The CLI takes an option of its own (``-p``/``--parallelism``, ``-d``, ...) that
        directly follows the script: start ``arguments`` with one it does not know.
        """
        assert self.home is not None
        command = [str(self.home / "bin" / "flink"), "run", "-m", self.rest_address,
                   "-p", str(parallelism), "-pyclientexec", str(self.python),
                   "-pyexec", str(self.python), *(["-d"] if detached else []),
                   "-py", str(script), *arguments]
        return subprocess.run(command, env={**os.environ, **self.env(), **(env or {})},
                              capture_output=True, text=True, timeout=timeout_s,
                              cwd=self.workdir)

    def logs(self, chars: int = 3000) -> str:
        """The tail of every process's log (for failure messages)."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            if path.is_file():
                parts.append(f"--- {path.name}\n{tail(path, 40)[-chars:]}")
        return "\n".join(parts)
