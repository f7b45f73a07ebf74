"""Rich consoles for the command line that do not cut tables when output is piped.

Rich sizes a console to the terminal; when stdout is a pipe or a file (``rtml
dlq show | less``, a CI log, ``> out.txt``) there is no terminal and it falls
back to 80 columns, folding every table into an unreadable column of
fragments. :func:`make_console` gives such a console :data:`PIPED_WIDTH`
columns instead. ``COLUMNS`` in the environment still wins (rich reads it),
so a caller can pick any width; on a terminal nothing changes.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console

#: Width of a console whose output is not a terminal (and ``COLUMNS`` is unset).
PIPED_WIDTH = 200


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def make_console(stderr: bool = False, **options: Any) -> Console:
    """A ``rich.console.Console`` (same ``options``) that is :data:`PIPED_WIDTH` wide
    when its stream is not a terminal, unless ``width`` or ``COLUMNS`` says otherwise."""
    stream = options.get("file") or (sys.stderr if stderr else sys.stdout)
    if options.get("width") is None and not os.environ.get("COLUMNS") \
            and not _is_terminal(stream):
        options["width"] = PIPED_WIDTH
    return Console(stderr=stderr, **options)
