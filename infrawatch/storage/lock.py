"""One agent per database: an exclusive `flock` on `<db>.lock`, held while the agent runs.

Two agents writing one database would each send the other's alerts and fight over the outbox.
The kernel drops the lock when the process ends (even on SIGKILL), so a stale file never blocks
a start. `infrawatch silence`, `query` and `alerts` do not take it: they share the database
with the running agent on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class DatabaseInUse(Exception):
    """Another running agent holds the database's lock (or the lock file can't be made)."""


def lock_path(db: Path) -> Path:
    """The lock file next to database `db`."""
    return db.with_name(db.name + ".lock")


@contextlib.contextmanager
def agent_lock(db: Path) -> Iterator[Path]:
    """Hold the exclusive lock of database `db` for the body; DatabaseInUse if held."""
    path = lock_path(db)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DatabaseInUse(f"{path}: cannot create the lock file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(
                f"{db}: another infrawatch agent is running on this database "
                "(two agents must not share one; point storage.path elsewhere)"
            ) from None
        # Who holds it, for a person looking at the file; the lock itself is what counts.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock
