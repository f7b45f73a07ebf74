"""``rtml top`` options: where Prometheus is found, bad input, and the metric names it reads."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rtml_cli.top.client import PrometheusClient, PrometheusUnreachable, QueryFailed, parse_response
from rtml_cli.top.command import TopError, prometheus_url, top_command
from rtml_cli.top.queries import PANELS, check_window
from rtml_localstack.state import ComponentRecord, StackState, now_iso

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()

def top_app() -> typer.Typer:
    """The command as ``rtml`` mounts it (``app.command("top")(top_command)``)."""
    app = typer.Typer()
    app.command()(top_command)
    return app


def closed_port() -> int:
    """A port nothing listens on (bound, then released; nothing else starts here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_url_comes_from_stack_json(tmp_path: Path) -> None:
    state = StackState(tmp_path)
    state.components["prometheus"] = ComponentRecord(
        pid=1, port=19090, host="127.0.0.1", started_at=now_iso(), command=["prometheus"],
        log=str(tmp_path / "prometheus.log"))
    state.save()
    assert prometheus_url(None, tmp_path) == "http://127.0.0.1:19090"
    assert prometheus_url("http://10.0.0.5:9090/", tmp_path) == "http://10.0.0.5:9090"


def test_no_prometheus_recorded_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TopError, match=r"no Prometheus recorded in .*stack\.json.*rtml up"):
        prometheus_url(None, tmp_path)


def test_unreadable_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(TopError, match="unreadable state file"):
        prometheus_url(None, tmp_path)


@pytest.mark.parametrize("url", ["127.0.0.1:9090", "ftp://host:9090", "http://"])
def test_bad_url_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(TopError, match="expected http://host:port"):
        prometheus_url(url, tmp_path)


@pytest.mark.parametrize("window", ["30s", "1m", "1m30s", "500ms"])
def test_window_accepts_prometheus_durations(window: str) -> None:
    assert check_window(window) == window


@pytest.mark.parametrize("window", ["30", "1 m", "-1m", "1x", ""])
def test_window_refuses_anything_else(window: str) -> None:
    with pytest.raises(ValueError, match="Prometheus duration"):
        check_window(window)


def test_unreachable_prometheus_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with PrometheusClient(url, timeout_s=2.0) as client, \
            pytest.raises(PrometheusUnreachable, match=f"Prometheus at {url} is not reachable"):
        client.query("up")
    result = runner.invoke(top_app(), ["--once", "--prometheus-url", url])
    assert result.exit_code == 1
    assert "is not reachable" in result.stderr and not result.stdout


def test_missing_state_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(top_app(), ["--once", "--state-dir", str(tmp_path)],
                           env={"RTML_PROMETHEUS_URL": ""})
    assert result.exit_code == 2
    assert "no Prometheus recorded" in result.stderr


def test_bad_window_is_a_usage_error() -> None:
    result = runner.invoke(top_app(), ["--once", "--window", "soon",
                                       "--prometheus-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "rate window 'soon'" in result.stderr


def test_error_answers_are_query_failures() -> None:
    with pytest.raises(QueryFailed, match="bad_data: parse error"):
        parse_response({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with pytest.raises(QueryFailed, match="result type 'matrix'"):
        parse_response({"status": "success", "data": {"resultType": "matrix", "result": []}})
    with pytest.raises(QueryFailed, match="unexpected answer shape"):
        parse_response({"status": "success", "data": {"resultType": "vector",
                                                      "result": [{"metric": {}}]}})
    scalar = parse_response({"status": "success",
                             "data": {"resultType": "scalar", "result": [1.5, "2"]}})
    assert [(s.labels, s.value) for s in scalar] == [({}, 2.0)]


def _exported_names() -> set[str]:
    return {name for panel in PANELS for query in panel.queries
            for name in re.findall(r"\brtml_[a-z0-9_]+", query.promql)}


def _candidates(name: str) -> list[str]:
    """The instrument names ``name`` may come from (the exporter adds these suffixes)."""
    base = re.sub(r"_(total|bucket|count|sum)$", "", name)
    return [name, base, re.sub(r"_seconds$", "", base)]


def test_every_metric_read_is_exported_by_the_code() -> None:
    """A renamed metric must not silently turn a panel into "no data yet"."""
    sources = "\n".join(path.read_text() for pattern in
                        ("services/*/rtml_*/**/*.py", "libs/common/rtml_common/**/*.py",
                         "libs/cli/rtml_cli/platform/*.py")  # the supervisor of `rtml up`
                        for path in ROOT.glob(pattern))
    names = _exported_names()
    assert len(names) > 20
    missing = {name for name in names
               if not any(re.search(rf"\b{candidate}\b", sources)
                          for candidate in _candidates(name))}
    assert not missing, f"not exported by any service: {sorted(missing)}"
