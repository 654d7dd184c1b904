"""One gateway per database file: exclusive advisory locks on `<database>.lock` and on the database file itself.

Two gateways on one SQLite file would both deliver every MT waiting in it (and
each trust its own in-memory state: dedup keys in flight, serial locks), so the
second one must not start. SQLite's own locks only serialise transactions.

The lock file, beside the file however it is named (a symlink finds the real
one), holds the holder's pid for the refusal message. It cannot see a hard
link, another name in another directory for the same file: so the database
file itself is locked too, which every name of it shares (the refusal then finds the holder's pid and
the name it uses in /proc: its lock file said nothing). (A lock file named
by device and inode would have to live in one place every gateway agrees on,
which containers and mount namespaces do not give.)

flock(2), not fcntl(2) locks: SQLite uses fcntl locks on the database, and the
two kinds do not interact on a local file system (on NFS Linux emulates flock
with fcntl locks, but SQLite's WAL mode does not work there in any case). One
rule does: closing *any* descriptor of a file drops every fcntl lock this
process holds on it, those of this process's SQLite connections included (the
reader is in this process; the writer is a child). So the database's
descriptor opens before the reader connects and closes after it has closed
(SqliteStore.open and close), and a file a gateway of this process already
holds is refused without opening it (`_HELD`): a refused second start must not
close a descriptor of a file the first one is reading.

The kernel drops the locks when their descriptors close, so a gateway that died
(kill -9 included) leaves nothing to clean up. The descriptors are not inherited
by children (os.open's default, PEP 446): the SQLite writer process, which can
outlive its parent by a moment, never holds them.
"""

from __future__ import annotations

import fcntl
import os
import time

_COMPANIONS = ("-wal", "-shm")  # SQLite's files beside a database in WAL mode, named after its path
# (device, inode) of the database files this process's gateways hold.
_HELD: set[tuple[int, int]] = set()


class DatabaseInUse(RuntimeError):
    """Another gateway holds the database's lock file, or the database file itself."""


class DatabaseLock:
    def __init__(self, database: str) -> None:
        self.database = database
        # Beside the file itself, however it is named: a symlink to another gateway's database finds its lock.
        self.path = os.path.realpath(database) + ".lock"
        self._fd: int | None = None
        self._database_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._companions: dict[str, tuple[int, int]] = {}  # "-wal"/"-shm" -> (device, inode) seen beside it (`moved`)

    def acquire(self) -> None:
        """Take the locks, or raise DatabaseInUse (OSError if a file cannot be opened at all)."""
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
        self._fd = fd
        try:
            self._lock_database()
        except BaseException:
            self.release()
            raise
        # The holder's pid, for the message above and for an operator looking at the file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _lock_database(self) -> None:
        try:
            known = os.stat(self.database)
        except FileNotFoundError:
            pass  # a new database: created here, its first user
        else:
            if (known.st_dev, known.st_ino) in _HELD:
                # this process's own gateway: opening and closing it would drop that one's SQLite locks
                raise self._in_use(known)
        fd = os.open(self.database, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = os.fstat(fd)
            os.close(fd)  # held by another process: this one has no SQLite connection to it
            raise self._in_use(held) from None
        except BaseException:
            os.close(fd)
            raise
        stat = os.fstat(fd)
        self._database_fd, self._identity = fd, (stat.st_dev, stat.st_ino)
        _HELD.add(self._identity)

    def _in_use(self, held: os.stat_result) -> DatabaseInUse:
        """The file is locked but its lock file here was free: another gateway opened it under another name (a hard
        link), or under this one and its lock file was removed (a cleanup script). Which one, and its pid, the
        kernel tells when it can."""
        pid = _flock_holder(held)
        name = _name_in(pid, held) if pid is not None else None
        by = f"pid {pid}" if pid is not None else "pid unknown"
        if name == os.path.realpath(self.database):
            how = f"its lock file {self.path} was removed while it ran"
        elif name is not None:
            how = f"it uses the same file under another name, {name} (a hard link)"
        else:
            how = f"the file itself is locked: its lock file {self.path} was removed, or it uses a hard link to the file"
        return DatabaseInUse(f"{self.database} is in use by another smsgw ({by}); {how}")

    def moved(self) -> bool:
        """Whether the database's path no longer names the file locked: deleted, moved away, or another file put in
        its place (a restore, a `mv`) while the gateway ran. (A stat: call it per batch, not per message.)"""
        try:
            now = os.stat(self.database)
        except (FileNotFoundError, NotADirectoryError):
            return True
        return (now.st_dev, now.st_ino) != self._identity

    def note_companions(self) -> None:
        """While the path names the database, at its start and after each commit: its -wal as it is (which file, its
        size, when last written) and its -shm (which file), for `set_aside_companions`. (Two stats: per batch, not per
        message.)"""
        for suffix in _COMPANIONS:
            try:
                self._companions[suffix] = _fingerprint(suffix, os.stat(self.database + suffix))
            except OSError:
                continue

    def set_aside_companions(self) -> list[str]:
        """The database gone from its path (`moved`), at the stop: its own -wal and -shm, which SQLite cannot fold
        into a file gone and leaves at the path, are renamed aside, so that a file restored there opens as it is
        (paired with them it served the old file's pages, or was corrupted). Its -wal only as the gateway last left
        it: one a restore copied onto it (`cp` keeps the file) is the restored file's. Their new names."""
        aside = []
        for suffix, fingerprint in self._companions.items():
            path = self.database + suffix
            try:
                if _fingerprint(suffix, os.stat(path)) != fingerprint:
                    continue
                name = _unused(f"{path}.of-the-file-gone-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
                os.rename(path, name)
            except OSError:
                continue
            aside.append(name)
        return aside

    def release(self) -> None:
        """Only once this process's connections to the database are closed (see the module docstring)."""
        database_fd, self._database_fd = self._database_fd, None
        if database_fd is not None:
            _HELD.discard(self._identity)
            os.close(database_fd)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def _fingerprint(suffix: str, stat: os.stat_result) -> tuple[int, ...]:
    """Which file, and for a -wal what is in it as far as a stat tells: nothing of the gateway writes it once its
    database is gone, while a restore copied onto it changes its size or its time."""
    if suffix == "-wal":
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
    return stat.st_dev, stat.st_ino


def _unused(name: str) -> str:
    """`name`, or with a number after it if a file has it (an earlier stop's, the same pid in another container)."""
    candidate, n = name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _flock_holder(held: os.stat_result) -> int | None:
    """The pid holding a flock on the file, from /proc/locks (None where there is none or it is not visible)."""
    where = f"{os.major(held.st_dev):02x}:{os.minor(held.st_dev):02x}:{held.st_ino}"
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                # "7: FLOCK  ADVISORY  WRITE 4242 fe:00:2154603 0 EOF" (a waiter's line has "->" after the number)
                fields = line.split()
                if fields[1:3] == ["FLOCK", "ADVISORY"] and fields[5] == where and int(fields[4]) > 0:
                    return int(fields[4])  # (0 or -1: a process in a pid namespace this one cannot see)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _name_in(pid: int, held: os.stat_result) -> str | None:
    """The path under which process `pid` has the file open, if its /proc entries can be read (same user)."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in descriptors:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            opened = os.stat(link)
            if (opened.st_dev, opened.st_ino) == (held.st_dev, held.st_ino):
                return os.readlink(link)
        except OSError:
            continue  # closed meanwhile
    return None
