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

A start refused (its database a directory, another application's file, a newer
gateway's) removes the lock file it made, still holding its lock: one was left
beside every file refused. A start that opened that file meanwhile finds, once
it holds its lock, that the path no longer names it, and takes the one there now
(`_lock_file`): else it and a third start, on a new file there, would both hold one.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import struct
import time

_COMPANIONS = ("-wal", "-shm")  # SQLite's files beside a database in WAL mode, named after its path
# `set_aside_companions`' names: "<database>-wal.of-the-file-gone-<time>-<pid>.file-<device>-<inode>-<mtime ns>" (the
# file gone), "-<n>" after it if that name was taken (`_unused`).
_SET_ASIDE = ".of-the-file-gone-"
_SET_ASIDE_FROM = re.compile(r"\.file-(\d+)-(\d+)-(\d+)(?:-\d+)?$")
_WAL_HEADER = 32  # bytes before a -wal's first frame (sqlite.org/fileformat2.html#walformat)
# SQLite's unix VFS: each connection with a database open in WAL mode holds a read lock on this range of the database
# file (SHARED_FIRST, SHARED_SIZE), idle ones too, whatever path it opened it by.
_SHARED_RANGE = (0x40000002, 510)
_FLOCK = struct.Struct("hhqqi4x")  # Linux's struct flock: l_type, l_whence, l_start, l_len, l_pid (64-bit off_t)
# (device, inode) of the database files this process's gateways hold.
_HELD: set[tuple[int, int]] = set()


class DatabaseInUse(RuntimeError):
    """Another gateway holds the database's lock file, or the database file itself."""


class CompanionsSetAside(RuntimeError):
    """A stop set the database's -wal and -shm aside (the file was gone), and the file at its path is not that one."""


class DatabaseLock:
    def __init__(self, database: str) -> None:
        self.database = database
        # Beside the file itself, however it is named: a symlink to another gateway's database finds its lock.
        self.path = os.path.realpath(database) + ".lock"
        self._fd: int | None = None
        self._made = False  # the lock file was made by this lock, not there before (release: removed if refused)
        self._database_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._companions: dict[str, tuple[int, int]] = {}  # "-wal"/"-shm" -> (device, inode) seen beside it (`moved`)
        self.taken_back: list[str] = []  # the companions a stop set aside that `acquire` put back (their names then)
        self.not_used: list[str] = []  # those `acquire` found set aside and left there (`_to_put_back`)

    def acquire(self) -> None:
        """Take the locks, or raise DatabaseInUse (OSError if a file cannot be opened at all); then put back the -wal
        and -shm a stop set aside from this file (`_take_back_companions`), or raise CompanionsSetAside. Refused, it
        leaves no lock file it made (`release`)."""
        fd = self._lock_file()
        self._fd = fd
        try:
            aside, self.not_used = _to_put_back(self.database, _set_aside_beside(self.database))
            if aside and not os.path.lexists(self.database):  # (refused before the lock creates an empty file there)
                raise _not_taken_back(self.database, aside, "no file is there")
            self._lock_database()
            if aside:
                self._take_back_companions(aside)
        except BaseException:
            self.release(refused=True)
            raise
        # The holder's pid, for the message above and for an operator looking at the file.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def _lock_file(self) -> int:
        """The lock file's descriptor, locked (or DatabaseInUse). Again if, once locked, the path no longer names the
        file opened: a start refused removed it (`release`) between this one's opening and locking it."""
        while True:
            fd, self._made = _open_or_make(self.path)
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
            if _names(self.path, fd):
                return fd
            os.close(fd)

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

    def _take_back_companions(self, aside: list[str]) -> None:
        """The -wal and -shm a stop set aside (`set_aside_companions`) hold the file's commits since its last
        checkpoint: the file locked is the one they were set aside from (moved back, `mv` keeps its inode and its
        time), so they go back beside it before SQLite opens it, else it would open without them. Any other file
        there (a copy, a restore, a new database: another inode, or the same inode reused by a file since) is
        refused: which it is, only the operator knows. Under the database's lock: no other gateway has it open."""
        stat = os.fstat(self._database_fd)
        locked = (stat.st_dev, stat.st_ino, stat.st_mtime_ns)
        back: dict[str, str] = {}
        for name in aside:
            suffix = _COMPANIONS[0] if name.startswith(self.database + _COMPANIONS[0]) else _COMPANIONS[1]
            if _set_aside_from(name) != locked:
                raise _not_taken_back(self.database, aside, "the file there now is another one")
            if suffix in back or _holds_commits(self.database + suffix):
                raise _not_taken_back(self.database, aside, f"{self.database}{suffix} is there too")
            back[suffix] = name
        reader = _reader(self._database_fd)
        if reader is not None:
            raise CompanionsSetAside(f"{self.database} is open in another process{reader} (SQLite's lock on it): close "
                                     f"it, then start (renamed over its -wal and -shm, {', '.join(aside)} would be "
                                     "lost when it closes)")  # fmt: skip
        for suffix, name in back.items():
            os.rename(name, self.database + suffix)
            self.taken_back.append(name)

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
        its place (a restore, a `mv`) while the gateway ran; not before it is locked (a start refused). (A stat: call
        it per batch, not per message.)"""
        if self._identity is None:
            return False
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
        it: one a restore copied onto it (`cp` keeps the file) is the restored file's. Their names say which file
        they are of (device, inode, time last written): the next start puts them back if it is that file (moved back)
        and refuses another (`_take_back_companions`). Their new names."""
        gone = os.fstat(self._database_fd)
        of = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.file-{gone.st_dev}-{gone.st_ino}-{gone.st_mtime_ns}"
        aside = []
        for suffix, fingerprint in self._companions.items():
            path = self.database + suffix
            try:
                if _fingerprint(suffix, os.stat(path)) != fingerprint:
                    continue
                name = _unused(f"{path}{_SET_ASIDE}{of}")
                os.rename(path, name)
            except OSError:
                continue
            aside.append(name)
        return aside

    def release(self, refused: bool = False) -> None:
        """Only once this process's connections to the database are closed (see the module docstring). `refused`: the
        start was, the database not taken (a directory, another application's file, a newer gateway's): the lock file
        goes if this start made it, as it was there before a refused start. Removed while still locked: a start that
        opened it meanwhile takes the one there next (`_lock_file`)."""
        database_fd, self._database_fd = self._database_fd, None
        if database_fd is not None:
            _HELD.discard(self._identity)
            os.close(database_fd)
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if refused and self._made and _names(self.path, fd):
            with contextlib.suppress(OSError):  # (left there, it does no harm)
                os.unlink(self.path)
        os.close(fd)  # closing the only descriptor drops the flock


def _open_or_make(path: str) -> tuple[int, bool]:
    """A descriptor of the file at `path` for reading and writing, made if there is none, and whether it was made
    here. (Not if `path` is a symlink, even to nothing: O_EXCL follows none, and the file it makes is not `path`.)"""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False


def _names(path: str, fd: int) -> bool:
    """Whether `path` names the file open as `fd` (not removed, nor another file put there)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _fingerprint(suffix: str, stat: os.stat_result) -> tuple[int, ...]:
    """Which file, and for a -wal what is in it as far as a stat tells: nothing of the gateway writes it once its
    database is gone, while a restore copied onto it changes its size or its time."""
    if suffix == "-wal":
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
    return stat.st_dev, stat.st_ino


def _set_aside_beside(database: str) -> list[str]:
    """The -wal and -shm files stops set aside from `database` (`set_aside_companions`), sorted."""
    return sorted(name for suffix in _COMPANIONS for name in glob.glob(glob.escape(database + suffix + _SET_ASIDE) + "*"))


def _to_put_back(database: str, aside: list[str]) -> tuple[list[str], list[str]]:
    """Of the companions set aside, those a start puts back (or refuses to start without: a -wal holds the gone file's
    last commits, its -shm goes with it), and those it leaves there unused: named by an earlier smsgw, without the file
    they are of (its start went on without them; the file may have been moved back and written since, and they would
    replay old frames), and an -shm set aside without a -wal of its file (a -wal a restore copied onto the gateway's
    stayed at the path): an -shm is only an index of a -wal, which SQLite rebuilds at the first open."""
    walled = {_set_aside_from(name) for name in aside if name.startswith(database + _COMPANIONS[0])} - {None}
    used = [name for name in aside if _set_aside_from(name) in walled]
    return used, [name for name in aside if name not in used]


def _reader(database_fd: int) -> str | None:
    """Whether another process has the database open, as " (pid N)" (or "" where its pid is not visible), else None:
    each SQLite connection to it holds a read lock on its SHARED range, which F_GETLK on the file locked reports (not
    this process's own: it has no connection open before the start). Asked of the database file, not of its -shm:
    that one may be at another path (a session opened while the file was moved away), not readable by the
    gateway's user, or not a file at all (a FIFO there held the start for good: regression review 5)."""
    start, length = _SHARED_RANGE
    held = fcntl.fcntl(database_fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0))
    kind, _, _, _, pid = _FLOCK.unpack(held)
    if kind == fcntl.F_UNLCK:
        return None
    return f" (pid {pid})" if pid > 0 else ""


def _set_aside_from(name: str) -> tuple[int, ...] | None:
    """The file a companion was set aside from, as its name says: (device, inode, time last written in ns)."""
    found = _SET_ASIDE_FROM.search(name)
    return tuple(map(int, found.groups())) if found else None


def _holds_commits(companion: str) -> bool:
    """Whether a -wal or -shm at the path would be lost if one set aside replaced it: a -wal with frames in it. Not
    one without (a reader that found none, `sqlite3 -readonly`, leaves it empty; 32 bytes: its header alone), nor an
    -shm (an index of the -wal, rebuilt from it)."""
    try:
        return companion.endswith(_COMPANIONS[0]) and os.stat(companion).st_size > _WAL_HEADER
    except FileNotFoundError:
        return False


def _not_taken_back(database: str, aside: list[str], why: str) -> CompanionsSetAside:
    """What the operator must decide: the files set aside are the gone file's last commits, wanted with it only."""
    if not os.path.lexists(database):
        what = (f"move that file back to {database} (they are put back beside it at the start), or, to start on a new "
                "database, move them elsewhere")  # fmt: skip
    else:
        what = (f"if the file at {database} is the one gone copied back, rename them to {database}-wal and "
                f"{database}-shm; if it is any other (a backup restored, another database), move them elsewhere")  # fmt: skip
    return CompanionsSetAside(f"{', '.join(aside)}: set aside at a stop while the database file was gone from "
                              f"{database}, they hold that file's last commits, and {why}: {what}")  # fmt: skip


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
