"""One gateway per database file: an exclusive advisory lock on `<database>.lock`.

Two gateways on one SQLite file would both deliver every MT waiting in it (and
each trust its own in-memory state: dedup keys in flight, serial locks), so the
second one must not start. SQLite's own locks only serialise transactions.

flock(2), not fcntl(2) locks: an fcntl lock held by this process on a file is
dropped when the process closes *any* descriptor of that file, and SQLite uses
fcntl locks on the database itself; a separate lock file keeps the two apart.
The kernel drops the lock when its descriptor closes, so a gateway that died
(kill -9 included) leaves nothing to clean up. The descriptor is not inherited
by children (os.open's default, PEP 446): the SQLite writer process, which can
outlive its parent by a moment, never holds it.
"""

from __future__ import annotations

import fcntl
import os


class DatabaseInUse(RuntimeError):
    """Another process holds the database's lock file."""


class DatabaseLock:
    def __init__(self, database: str) -> None:
        self.database = database
        # Beside the file itself, however it is named: a symlink to another gateway's database finds its lock.
        self.path = os.path.realpath(database) + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DatabaseInUse (OSError if the lock file cannot be opened at all)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DatabaseInUse(f"{self.database} is in use by another smsgw{by}; lock file {self.path}") from None
        except BaseException:
            os.close(fd)
            raise
        # The holder's pid, for the message above and for an operator looking at the file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock
