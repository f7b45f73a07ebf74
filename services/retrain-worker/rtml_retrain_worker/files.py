"""Durable file writes: temp file, fsync, rename, fsync the directory.

A reader (or the worker after a crash) sees either the old file or the
complete new one, never a torn write: ``rename`` is atomic on POSIX within a
file system, and the fsyncs make the content and the rename survive a power
loss before anything that depends on them (a Kafka commit) happens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: Suffix of files being written; left-overs of a crash are removed at start-up.
TEMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temp_path)``, then make its file durable as ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + TEMP_SUFFIX)
    write(temp)
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """``path`` holds exactly ``data`` afterwards, or is unchanged if we crash."""
    def write(temp: Path) -> None:
        temp.write_bytes(data)

    write_atomically(path, write)


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete files a crash left half-written (their content was never acknowledged)."""
    removed = []
    if directory.is_dir():
        for temp in directory.glob(f"*{TEMP_SUFFIX}"):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed
