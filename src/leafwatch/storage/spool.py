"""A durable local log of records the database could not take yet: one SQLite file per process.

Each process appends to its own file, `<directory>/<pid>-<random>.spool`, and holds an exclusive
`flock` on `<file>.lock` for as long as it lives. The kernel drops that lock when the process
ends, however it ends, so a file whose lock can be taken belongs to a process that is gone: any
process may then claim it and replay it, and no two processes hold one file at once.

A record is on disk when `append` returns: SQLite in WAL mode with synchronous=FULL syncs the log
at every commit, and a process killed mid-write leaves the records committed before it intact.
"""

import fcntl
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
SUFFIX = ".spool"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_key ON records (key);
"""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record, numbered in the order it was appended."""

    seq: int
    kind: str
    key: str
    body: dict[str, Any]


class SpoolFile:
    """One spool file, held under its lock by this process: append, read in order, remove."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd
        # Request threads append while the replay thread reads and removes.
        self._guard = threading.Lock()
        self._db = _connect(path)

    @classmethod
    def create(cls, directory: Path) -> "SpoolFile":
        """A new, empty file of this process (locked before it exists: never taken for orphaned)."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        lock_fd = _lock(path)
        assert lock_fd is not None, f"{path} is new, yet locked"
        file = cls(path, lock_fd)
        _sync_directory(directory)  # the new file's name survives a power cut too
        return file

    @classmethod
    def claim(cls, path: Path) -> "SpoolFile | None":
        """Take the file of a process that is gone; None while a live process holds it."""
        lock_fd = _lock(path)
        if lock_fd is None:
            return None
        if not path.exists():  # replayed and deleted by another process meanwhile
            _lock_path(path).unlink(missing_ok=True)
            os.close(lock_fd)
            return None
        return cls(path, lock_fd)

    def append(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """Add a record at the end; it is on disk when this returns."""
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
        with self._guard:
            self._db.execute(
                "INSERT INTO records (kind, key, body) VALUES (?, ?, ?)", (kind, key, text)
            )

    def pending(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` records, in the order they were appended."""
        with self._guard:
            rows = self._db.execute(
                "SELECT seq, kind, key, body FROM records ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [SpooledRecord(seq, kind, key, json.loads(body)) for seq, kind, key, body in rows]

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget records that are in the database now."""
        if not seqs:
            return
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in seqs])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def depth(self) -> int:
        """Records waiting in this file."""
        with self._guard:
            return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def find(self, kind: str, key: str) -> dict[str, Any] | None:
        """The body of a waiting record, or None."""
        with self._guard:
            return _find(self._db, kind, key)

    def close(self) -> None:
        """Let the file go, records kept: another process may claim it."""
        with self._guard:
            self._db.close()
            os.close(self._lock_fd)

    def delete(self) -> None:
        """Remove the file, which must be empty, and let its lock go."""
        with self._guard:
            self._db.close()
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            _lock_path(self.path).unlink(missing_ok=True)
            os.close(self._lock_fd)


class Spool:
    """This process's spool file, in the directory where every process's files meet."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.own = SpoolFile.create(directory)

    def append(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """Add a record to this process's file; it is on disk when this returns."""
        self.own.append(kind, key, body)

    def find(self, kind: str, key: str) -> dict[str, Any] | None:
        """A waiting record of any process on this host, or None."""
        found = self.own.find(kind, key)
        if found is not None:
            return found
        for path in self._others():
            found = _read(path, lambda db: _find(db, kind, key), None)
            if found is not None:
                return found
        return None

    def depth(self) -> int:
        """Records waiting in every process's files on this host."""
        others = sum(_read(path, _count, 0) for path in self._others())
        return self.own.depth() + others

    def orphans(self) -> Iterator[SpoolFile]:
        """Claim, one at a time, the files whose processes are gone (the caller closes each)."""
        for lock in sorted(self.directory.glob(f"*{SUFFIX}.lock")):
            path = lock.with_name(lock.name.removesuffix(".lock"))
            if path != self.own.path and (file := SpoolFile.claim(path)) is not None:
                yield file

    def close(self) -> None:
        """Let this process's file go: deleted when empty, else left for another to replay."""
        if self.own.depth() == 0:
            self.own.delete()
        else:
            self.own.close()

    def _others(self) -> list[Path]:
        return sorted(path for path in self.directory.glob(f"*{SUFFIX}") if path != self.own.path)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit: each append is its own transaction, committed (and synced) at once.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


def _read(path: Path, query: Callable[[sqlite3.Connection], T], missing: T) -> T:
    """Run `query` on another process's file; `missing` when the file is gone."""
    try:
        # mode=rw: a file deleted since it was listed is not created again, empty.
        db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return missing
    try:
        return query(db)
    except sqlite3.OperationalError:  # deleted between the open and the read
        return missing
    finally:
        db.close()


def _find(db: sqlite3.Connection, kind: str, key: str) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT body FROM records WHERE key = ? AND kind = ? ORDER BY seq LIMIT 1", (key, kind)
    ).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int | None:
    """An exclusive flock on the file's lock file, or None when another process holds it."""
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
