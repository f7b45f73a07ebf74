"""Atomic file writes: temp file in the same directory, then ``os.replace``.

Why: a reader (a web server, a person refreshing a report, the retrain
worker restarting after a crash, a training job opening a data set) sees
either the old file or the complete new one, never a torn write, because a
rename within one file system is atomic on POSIX.

``durable=True`` adds the fsyncs (of the file, then of its directory) that
make the content *and* the rename survive a power loss before anything that
depends on them happens, e.g. a Kafka offset commit for events now on disk.
They cost a disk flush each, so bulk output that can simply be regenerated
(the simulator's Parquet data sets) passes ``durable=False``.

Temp names are unique (two writers of one path never share a temp file) and
end in :data:`TEMP_SUFFIX`, so a service can delete a crash's left-overs at
start-up with :func:`remove_temp_files`.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     state = write_bytes_atomically(Path(tmp) / "state.json", b'{"offset": 41}')
...     _ = write_atomically(state, lambda temp: temp.write_text('{"offset": 42}'))
...     print(state.read_text(), [p.name for p in Path(tmp).iterdir()])
{"offset": 42} ['state.json']
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

#: Suffix of files being written; left-overs of a crash are removed at start-up.
TEMP_SUFFIX = ".tmp"

_CREATE_ATTEMPTS = 100


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename (or create/delete) in ``directory`` survive a power loss."""
    _fsync(directory)


def _fsync(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a directory's data to disk (a read-only descriptor serves both)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> Path:
    """A new empty ``<name>.<random>.tmp`` next to ``path``.

    Not :func:`tempfile.mkstemp`: that creates the file 0o600, which would
    change the permissions of every file we write; ``0o666`` here lets the
    umask decide, as a plain ``open`` would. ``O_EXCL`` keeps it unique.
    """
    for _ in range(_CREATE_ATTEMPTS):
        temp = path.with_name(f"{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"no free temporary name next to {path}")


def write_atomically(
    path: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    durable: bool = True,
    mode: int | None = None,
) -> Path:
    """Call ``write(temp_path)``, then put that file in place as ``path``; returns ``path``.

    The callback gets a path (not a handle) so libraries that open files
    themselves (``pyarrow.parquet.write_table``) can write it. On any
    exception the temp file is removed, ``path`` is left as it was and the
    exception propagates. ``mode`` (e.g. ``0o644`` for a page a web server
    reads) is applied before the rename, so the file never appears with
    other permissions.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _create_temp(target)
    try:
        write(temp)
        if mode is not None:
            os.chmod(temp, mode)
        if durable:
            _fsync(temp)
        os.replace(temp, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


def write_bytes_atomically(
    path: str | os.PathLike[str], data: bytes, *, durable: bool = True, mode: int | None = None
) -> Path:
    """``path`` holds exactly ``data`` afterwards, or is unchanged if we fail or crash."""

    def write(temp: Path) -> None:
        temp.write_bytes(data)

    return write_atomically(path, write, durable=durable, mode=mode)


def remove_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete files a crash left half-written (their content was never acknowledged).

    Call it at start-up, before any writer of ``directory`` runs: a temp file
    being written right now looks the same as a left-over.
    """
    folder = Path(directory)
    removed: list[Path] = []
    if folder.is_dir():
        for temp in sorted(folder.glob(f"*{TEMP_SUFFIX}")):
            if temp.is_file():
                temp.unlink(missing_ok=True)
                removed.append(temp)
    return removed
