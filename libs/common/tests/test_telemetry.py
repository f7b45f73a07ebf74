"""Telemetry: metrics reach the Prometheus endpoint, logs are JSON with trace ids.

Each check runs in a fresh interpreter because OpenTelemetry providers are
process-global and can be set only once.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_metrics_are_served_with_prometheus_names() -> None:
    port = free_port()
    result = run(f"""
        import urllib.request
        from opentelemetry import metrics
        from rtml_common.telemetry import init_telemetry
        init_telemetry("probe")
        meter = metrics.get_meter("rtml.kafka")
        meter.create_counter("rtml_events_consumed").add(3, {{"topic": "transactions"}})
        from rtml_common.metric_buckets import DURATION_SECONDS
        meter.create_histogram("rtml_batch_duration", unit="s",
                               explicit_bucket_boundaries_advisory=list(DURATION_SECONDS),
                               ).record(0.003)
        print(urllib.request.urlopen("http://127.0.0.1:{port}/metrics").read().decode())
    """, RTML_TELEMETRY_METRICS_PORT=str(port))
    assert result.returncode == 0, result.stderr
    assert re.search(r'^rtml_events_consumed_total\{[^}]*topic="transactions"[^}]*\} 3\.0$',
                     result.stdout, re.MULTILINE)
    assert re.search(r"^rtml_batch_duration_seconds_count\{[^}]*\} 1\.0$", result.stdout,
                     re.MULTILINE)
    # Sub-10 ms durations resolve into fine buckets, not the default first one.
    assert re.search(r'^rtml_batch_duration_seconds_bucket\{[^}]*le="0\.0025"[^}]*\} 0\.0$',
                     result.stdout, re.MULTILINE)
    assert re.search(r'^rtml_batch_duration_seconds_bucket\{[^}]*le="0\.005"[^}]*\} 1\.0$',
                     result.stdout, re.MULTILINE)


def test_logs_are_json_lines_with_trace_ids() -> None:
    result = run("""
        import logging
        from rtml_common.telemetry import init_telemetry
        telemetry = init_telemetry("probe")
        assert init_telemetry("other") is telemetry  # second call is a no-op
        with telemetry.tracer.start_as_current_span("work") as span:
            logging.getLogger("x").warning("inside %s", "span")
            print(format(span.get_span_context().trace_id, "032x"))
        logging.getLogger("x").info("outside")
    """)
    assert result.returncode == 0, result.stderr
    trace_id = result.stdout.strip()
    inside, outside = (json.loads(line) for line in result.stderr.strip().splitlines())
    assert inside["message"] == "inside span"
    assert inside["service"] == "probe"
    assert inside["trace_id"] == trace_id
    assert inside["ts"].endswith("+00:00")
    assert outside["message"] == "outside"
    assert "trace_id" not in outside
