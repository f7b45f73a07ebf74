"""``python -m rtml_cli.platform --state-dir DIR``: the supervisor ``rtml up`` starts.

Not meant to be run by hand: ``rtml up`` writes the spec it runs
(``<state>/platform/spec.json``) and starts this detached, with its output in
``<state>/platform/logs/supervisor.log``; ``rtml down`` stops it with SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtml_cli.platform.files import PlatformError
from rtml_cli.platform.supervisor import main


def _parse(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser(prog="python -m rtml_cli.platform",
                                     description="Supervise the platform's services.")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="the stack state directory whose platform/spec.json to run")
    return parser.parse_args(argv).state_dir.resolve()


if __name__ == "__main__":
    try:
        sys.exit(main(_parse(sys.argv[1:])))
    except PlatformError as exc:
        print(f"rtml platform supervisor: {exc}", file=sys.stderr)
        sys.exit(2)
