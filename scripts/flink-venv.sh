#!/usr/bin/env bash
# Create or update .venv-flink, the Flink engine's own virtualenv, idempotently:
# Python 3.11 + PyFlink 2.0 + the Kafka connector (pinned with hashes in
# services/feature-pipeline/flink-requirements.txt) + the rtml packages the
# job imports, in editable mode. PyFlink's pins (apache-beam 2.61, pyarrow < 17,
# redis < 6, Python <= 3.11) clash with the main venv, hence a venv of its own.
#
# Each step prints one line. Re-running is cheap: a stamp file records the hash of the requirements, the
# rtml pyproject files and this script; nothing is installed when it matches.
# First run: ~0.5 GB of downloads (PyFlink's jars), about 1-2 minutes.
#
# Env: PYTHON_FLINK (default: python3.11, else python3 if it is 3.11),
#      RTML_FLINK_VENV (default: .venv-flink at the repository root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${RTML_FLINK_VENV:-$ROOT/.venv-flink}"
REQUIREMENTS=services/feature-pipeline/flink-requirements.txt
# The job imports rtml_features (definitions, Redis store) and rtml_feature_pipeline.flink.
PACKAGES=(libs/common libs/features services/feature-pipeline)

say() { printf '\033[1m[flink-venv]\033[0m %s\n' "$*" >&2; }

is_311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; }

PYTHON="${PYTHON_FLINK:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && is_311 "$candidate"; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [ -z "$PYTHON" ] || ! is_311 "$PYTHON"; then
  say "PyFlink 2.0 needs Python 3.11 (none found); set PYTHON_FLINK=/path/to/python3.11"
  exit 1
fi
say "python: $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"

if ! command -v java >/dev/null 2>&1; then
  say "warning: no java on PATH; the job needs Java 11+ (17 is used here) to run"
fi

stamp_inputs=("$REQUIREMENTS" "$ROOT/scripts/flink-venv.sh")
for p in "${PACKAGES[@]}"; do stamp_inputs+=("$p/pyproject.toml"); done
want_stamp="$({ "$PYTHON" --version 2>&1; cat "${stamp_inputs[@]}"; } | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.rtml-flink-stamp"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  say "up to date ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ] || ! is_311 "$VENV/bin/python"; then
  say "creating virtualenv $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
else
  say "updating virtualenv $VENV"
fi

started=$SECONDS
say "installing PyFlink and its pinned dependencies (hash-checked; first run downloads ~0.5 GB)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  -r "$REQUIREMENTS" 2>&1 | { grep -v '^WARNING: Location' || true; }
say "installed the pinned requirements in $((SECONDS - started)) s"

# --no-deps: their declared dependencies (pyarrow >= 17, redis >= 8 via the main
# constraints, pydantic, ...) clash with PyFlink's pins or are not imported by the
# job; what the job does import (redis, numpy) is in the requirements above.
say "installing rtml packages in editable mode (--no-deps): ${PACKAGES[*]}"
editable=()
for p in "${PACKAGES[@]}"; do editable+=(-e "$p"); done
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${editable[@]}" \
  2>&1 | { grep -v '^WARNING: Location' || true; }

say "checking the install"
"$VENV/bin/python" - <<'PY'
import os
import sys

import pyflink
import redis  # noqa: F401

import rtml_feature_pipeline.flink.sink  # noqa: F401  (imports PyFlink's DataStream API)
from rtml_feature_pipeline.flink.compile import compile_feature_set, SourceOptions
from rtml_features.baseline import BASELINE

lib = os.path.join(os.path.dirname(pyflink.__file__), "lib")
jars = set(os.listdir(lib))
missing = [j for j in ("flink-connector-kafka.jar", "kafka-clients.jar") if j not in jars]
if missing:
    sys.exit(f"[flink-venv] PyFlink has no Kafka connector: {missing} not in {lib}")
compile_feature_set(BASELINE, SourceOptions(bootstrap_servers="localhost:9092"))
PY
echo "$want_stamp" > "$stamp_file"
say "ready: $VENV (run the job: $VENV/bin/python -m rtml_feature_pipeline.flink.job --help)"
