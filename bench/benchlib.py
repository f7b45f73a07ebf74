"""What every benchmark here shares: machine facts and writing its docs section.

Each benchmark runs as ``python bench/<name>.py [--quick] [--json]`` and owns
one ``## <Section>`` of ``docs/benchmarks.md``, which it rewrites in place so
the file always holds the latest full run of each.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

#: The feature set the service benchmarks run (``RTML_FEATURE_SET``, which every service
#: and command reads): the handbook's ``baseline`` unless the caller sets another, so each
#: benchmark stays comparable with its earlier runs in docs/benchmarks.md although the
#: platform's default is now ``extended``. model_selection and feature_ablation name their
#: sets explicitly. ``RTML_FEATURE_SET=extended python bench/<name>.py`` measures the default.
os.environ.setdefault("RTML_FEATURE_SET", "baseline")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "date": date.today().isoformat(),
        # Other work on the machine skews timings; record how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def write_section(section: str, text: str, path: Path = DOCS) -> None:
    """Replace (or append) ``section`` (a ``## `` heading line), leaving others alone."""
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(updated.rstrip("\n") + "\n")


def report(result: dict[str, Any], section: str, text: str, *, quick: bool,
           as_json: bool) -> None:
    """A full run rewrites its docs section; print the JSON object last, or the Markdown."""
    import json

    if not quick:
        write_section(section, text)
    print(json.dumps(result) if as_json else text)
