"""Atomic writes: whole replacement, no torn or stray files, crash clean-up."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rtml_common.files import (
    TEMP_SUFFIX,
    fsync_dir,
    remove_temp_files,
    write_atomically,
    write_bytes_atomically,
)


class Boom(Exception):
    pass


@pytest.mark.parametrize("durable", [True, False])
def test_content_is_replaced_whole(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"x" * 10_000)

    returned = write_bytes_atomically(target, b"short", durable=durable)

    assert returned == target
    assert target.read_bytes() == b"short"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_callback_gets_a_temp_path_next_to_the_target(tmp_path: Path) -> None:
    target = tmp_path / "segment.parquet"
    seen: list[Path] = []

    def write(temp: Path) -> None:
        seen.append(temp)
        assert not target.exists(), "the target must not appear before the write is done"
        temp.write_text("data")

    write_atomically(target, write)

    (temp,) = seen
    assert temp.parent == tmp_path
    assert temp.name.startswith("segment.parquet.") and temp.name.endswith(TEMP_SUFFIX)
    assert not temp.exists()
    assert target.read_text() == "data"


@pytest.mark.parametrize("durable", [True, False])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "report.html"
    target.write_text("old page")

    def write(temp: Path) -> None:
        temp.write_text("half a new pa")
        raise Boom

    with pytest.raises(Boom):
        write_atomically(target, write, durable=durable)

    assert target.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_failed_first_write_creates_nothing(tmp_path: Path) -> None:
    def write(temp: Path) -> None:
        raise Boom

    with pytest.raises(Boom):
        write_atomically(tmp_path / "new.bin", write)

    assert list(tmp_path.iterdir()) == []


def test_remove_temp_files_removes_left_overs_only(tmp_path: Path) -> None:
    keep = [tmp_path / "0000000001-labels.parquet", tmp_path / "notes.tmp.txt",
            tmp_path / "requests.json"]
    for path in keep:
        path.write_bytes(b"keep")
    # Named as write_atomically names its temps, and as the retrain worker's old helper did.
    left_overs = [tmp_path / f"0000000002-transactions.parquet.3f9a01b2c4d5{TEMP_SUFFIX}",
                  tmp_path / f"requests.json{TEMP_SUFFIX}"]
    for path in left_overs:
        path.write_bytes(b"torn")
    (tmp_path / f"subdir{TEMP_SUFFIX}").mkdir()

    removed = remove_temp_files(tmp_path)

    assert sorted(removed) == sorted(left_overs)
    assert sorted(tmp_path.iterdir()) == sorted([*keep, tmp_path / f"subdir{TEMP_SUFFIX}"])


def test_remove_temp_files_cleans_up_after_a_crashed_writer(tmp_path: Path) -> None:
    """A process killed inside the callback leaves a temp that start-up then deletes."""
    target = tmp_path / "0000000003-labels.parquet"
    target.write_bytes(b"old")
    crash = textwrap.dedent(f"""
        import os
        from rtml_common.files import write_atomically
        def write(temp):
            temp.write_bytes(b"half")
            os._exit(3)
        write_atomically({str(target)!r}, write)
    """)
    run = subprocess.run([sys.executable, "-c", crash], check=False, timeout=60)
    assert run.returncode == 3
    (left_over,) = [p for p in tmp_path.iterdir() if p != target]

    assert remove_temp_files(tmp_path) == [left_over]
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"old"


def test_remove_temp_files_of_missing_directory(tmp_path: Path) -> None:
    assert remove_temp_files(tmp_path / "absent") == []


def test_mode_is_applied(tmp_path: Path) -> None:
    target = write_bytes_atomically(tmp_path / "page.html", b"<html/>", mode=0o640)

    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_default_mode_follows_umask_like_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        (tmp_path / "plain").write_bytes(b"")
        target = write_bytes_atomically(tmp_path / "atomic", b"")
    finally:
        os.umask(old)

    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain").stat().st_mode) == 0o644


def test_parent_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"

    write_bytes_atomically(target, b"\x00\x01", durable=True)

    assert target.read_bytes() == b"\x00\x01"


def test_accepts_str_paths(tmp_path: Path) -> None:
    returned = write_bytes_atomically(str(tmp_path / "s.txt"), b"s")

    assert returned == tmp_path / "s.txt"
    assert returned.read_bytes() == b"s"


def test_writers_of_one_path_use_distinct_temps(tmp_path: Path) -> None:
    """Overlapping writers never share (and truncate) one temp file."""
    target = tmp_path / "shared.bin"
    inside = threading.Barrier(2)
    temps: list[Path] = []

    def writer(payload: bytes) -> None:
        def write(temp: Path) -> None:
            temps.append(temp)
            temp.write_bytes(payload)
            inside.wait(timeout=10)  # both temps exist at once

        write_atomically(target, write)

    threads = [threading.Thread(target=writer, args=(p,)) for p in (b"A" * 4096, b"B" * 4096)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(set(temps)) == 2
    assert target.read_bytes() in (b"A" * 4096, b"B" * 4096)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_fsync_dir_of_missing_directory_raises(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "absent")
