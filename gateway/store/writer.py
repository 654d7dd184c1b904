"""The SQLite writer process: runs each batch of statements as one transaction.

Why a process and not a thread: a writer thread shares the event loop's GIL.
sqlite3 releases it only around each row's step, and taking it back waits for
the loop thread to let go, so under load the writer either starves or takes
the loop's core (measured: the gateway with aiosqlite's thread never used more
than one core in total, see bench/perf-log.md). A process has its own
interpreter: the inserts run on another core while the loop goes on.

Protocol over the child's stdin/stdout, one request in flight at a time: a
frame is a 4-byte big-endian length and a `marshal`led value (parent and child
are the same interpreter, and every value bound here is a str, bytes, int,
float or None, which marshal handles faster than pickle).

    parent -> child   (number, [(sql, params, tokens), ...])  one transaction, in issue order
    child -> parent   (True, "", "", statements, skipped)     committed; `skipped`: ids of rows an
                                                              INSERT ... SKIP_DUPLICATE_KEY did not store
                      (False, error_class, message, 0, [])    rolled back; nothing of it stands

The child groups the steps into executemany runs itself (writer_child.plan).
Each batch carries a number, which its transaction stores as the last one
committed (table writer_progress). A child killed after its COMMIT and before
its answer (the OOM killer, an operator) leaves the batch in doubt; the
parent then reads the last number committed from the database itself (its
successor, which says it too at its start, may die before it does), so the
batch is answered as what it was. Taken as not committed, a message got ESME_RSYSERR and
was delivered all the same (the client's resend making a second copy), and a
delivered MT's final status was written again and again, its receipt held back.

The child answers a ("ready", last batch committed, why it cannot write now
or None, (schema version found, version now, seconds the migration took)) frame
once its connection is open and migrated (the database locked by another process:
`cannot_write_at_start`; the versions: `schema`), or an error frame and exits. It ignores SIGINT, SIGTERM
and SIGHUP (a Ctrl-C, or the closing of the terminal, reaches the whole process
group, and the gateway must still drain through it) and exits when its stdin
closes: after the parent's close(), or when the parent dies. A transaction it had not committed by then was never
acknowledged to anyone.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..logs import get_logger
from ..open_files import near_limit
from .migrations import SchemaVersionError
from .writer_child import FRAME_LENGTH as _LENGTH
from .writer_child import (
    LAST_COMMITTED,
    READ_ONLY,
    SKIP_DUPLICATE_KEY,
    Step,
    connect,
    frame,
    not_stored,
)

log = get_logger("store")


class WriterDied(sqlite3.OperationalError):
    """The writer process is gone and the batch in flight did not commit (or, if no new process could start to
    tell, may have)."""


class WriterCannotStart(WriterDied):
    """The writer process is gone and no successor can start: no batch can commit until one does."""


# --- the parent's side -------------------------------------------------------------


class WriterProcess:
    """Starts the writer child and hands it batches. Use from one task at a time."""

    def __init__(self, path: str, on_exit: Callable[[], None] | None = None) -> None:
        """`on_exit()`: the child exited of itself (killed from outside, out of memory), not by close() or a
        restart: the caller's next commit() starts its successor."""
        self.path = path
        self.on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._next_batch = 1
        self._restart_failing = False
        # The exit status of the child a restart replaces, kept while no successor can start (for the line saying one did).
        self._replaced_status: int | None = None
        self._watch: asyncio.Task[None] | None = None  # the child's exit, told to on_exit
        # The child's probe at its start failed (the database locked by another process): its error, else None.
        self.cannot_write_at_start: str | None = None
        # The schema version the child found the file at (0: a new file), the version now and the seconds taken.
        self.schema: tuple[int, int, float] = (0, 0, 0.0)

    async def start(self, create: bool = True) -> None:
        """Start the child; return once it has opened and migrated the database (else raise its error). `create`: it
        may create the database (a successor must not: a file gone from the path is an error, not a new database)."""
        package_root = str(Path(__file__).resolve().parents[2])  # the directory holding gateway/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
        # -P: `-m` would put the working directory first on sys.path, and a `gateway` package there (an operator's
        # project, another checkout of smsgw) would stand in for this one: the child must run this process's code.
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "gateway.store.writer_child", self.path, "rwc" if create else "rw",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        reply = await self._receive()
        if reply[0] != "ready":
            await self.close()
            raise _error(reply[1], reply[2])
        if self.on_exit is not None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_exit(self._proc))
        # A batch's number is above every number committed (the child tells the last one at its start) and never
        # given out twice: the last one committed is this batch's only if this batch committed.
        self._next_batch = max(self._next_batch, reply[1] + 1)
        self.cannot_write_at_start = reply[2]
        self.schema = reply[3]

    async def commit(self, steps: list[Step]) -> tuple[int, list[str]]:
        """Run the steps in one transaction and commit, or raise the sqlite3 error.

        Returns the statements run and the ids of the rows skipped as duplicates (writer_child.SKIP_DUPLICATE_KEY).
        Raises WriterDied if the child died and the batch did not commit."""
        number = self._next_batch
        self._next_batch += 1
        try:
            body = marshal.dumps((number, steps))
        except ValueError:  # a str or int subclass (an enum member in a service record)
            body = marshal.dumps((number, [_marshallable(step) for step in steps]))
        request = frame(body)
        if not await self._send(request):
            # The child died between batches (killed from outside, out of
            # memory) and had not read this one: a new child can take it.
            await self._restart()
            if not await self._send(request):
                raise WriterDied("SQLite writer process exited as soon as it was restarted")
        try:
            ok, error_class, message, statements, skipped = await self._receive()
        except WriterDied as died:
            if not await self._committed_after_all(number):
                if self._restart_failing:  # and no successor could start: no batch commits until one can
                    raise WriterCannotStart(f"{died}; no writer process could start again") from None
                raise
            log.warning("SQLite writer process died after committing its batch; the batch stands", database=self.path, batch=number)
            return 0, self._not_stored_after_all(steps)
        if not ok:
            if READ_ONLY in message:  # its connection may have opened the file read-only, for good: the next batch's
                await self.close()  # writer process opens it anew (or cannot start while it stays so)
            raise _error(error_class, message)
        return statements, skipped

    async def _committed_after_all(self, number: int) -> bool:
        """The child died before answering for batch `number`: did it commit it? The database tells, read here once
        the child is gone (what it had not committed is rolled back), not by its successor, which may die too
        before it says (the OOM killer striking twice); then a successor is started. False only if the database
        cannot be read: then nobody knows, and the caller is told what a batch that did not commit tells."""
        if self._proc is not None:
            await self._proc.wait()
        try:
            last: int | None = self._read_last_committed()
        except sqlite3.Error as exc:
            log.error("cannot read the SQLite writer's last committed batch", database=self.path, error=repr(exc))
            last = None
        try:
            await self._restart()
        except WriterDied:
            pass  # (logged: the next batch tries again)
        if last is not None:
            self._next_batch = max(self._next_batch, last + 1)
        return last == number

    def _read_last_committed(self) -> int:
        conn = connect(self.path, timeout=10.0)
        try:
            return conn.execute(LAST_COMMITTED).fetchone()[0]
        finally:
            conn.close()

    def _not_stored_after_all(self, steps: list[Step]) -> list[str]:
        """The ids of a committed batch's rows that its INSERT ... SKIP_DUPLICATE_KEY skipped (the answer the
        child did not send). Nothing has written since that commit: what has no row was skipped."""
        ids = [params[0] for sql, params, _tokens in steps if sql.endswith(SKIP_DUPLICATE_KEY)]
        if not ids:
            return []
        conn = connect(self.path)
        try:
            return not_stored(conn, ids)
        finally:
            conn.close()

    async def close(self) -> None:
        """Close the child's stdin and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        await proc.wait()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def wait(self) -> int | None:
        """Wait until the child has exited (however it ended); its exit status, None if never started."""
        return await self._proc.wait() if self._proc is not None else None

    async def _send(self, frame: bytes) -> bool:
        """Hand the child a frame; False if the child is gone (so it cannot have read any of it)."""
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(frame)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        if self._proc is proc and self.on_exit is not None:  # (not closed, nor replaced already)
            self.on_exit()

    async def _restart(self) -> None:
        """A successor for a child that is gone; WriterCannotStart if none can (the database's directory gone, no
        memory for a process): then the store cannot commit (not ready) and tries again with its next batch."""
        proc, self._proc = self._proc, None
        if proc is not None:
            status = await proc.wait()
            if self._replaced_status is None:  # (not a successor's that failed: the child that died is the news)
                self._replaced_status = status
        try:
            await self.start(create=False)
        except (sqlite3.Error, OSError, SchemaVersionError) as exc:
            if not self._restart_failing:  # (once until one starts: the store tries every second meanwhile)
                self._restart_failing = True
                hint = {"hint": "the open-file limit is reached: raise `ulimit -n`"} if near_limit() else {}
                log.error("SQLite writer process cannot be restarted", database=self.path, error=repr(exc), **hint)
            raise WriterCannotStart(f"SQLite writer process cannot be restarted: {exc}") from exc
        self._restart_failing = False
        status, self._replaced_status = self._replaced_status, None
        log.warning("SQLite writer process restarted", database=self.path, exit_status=status, pid=self.pid)

    async def _receive(self) -> tuple:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            header = await self._proc.stdout.readexactly(_LENGTH.size)
            return marshal.loads(await self._proc.stdout.readexactly(_LENGTH.unpack(header)[0]))
        except asyncio.IncompleteReadError:
            code = await self._proc.wait()
            raise WriterDied(f"SQLite writer process exited with status {code}") from None


def _marshallable(step: Step) -> Step:
    """The step itself if marshal takes it (message rows always do), else with `_plain` parameters."""
    try:
        marshal.dumps(step)
    except ValueError:
        sql, params, tokens = step
        return sql, tuple(map(_plain, params)), tuple(map(_plain, tokens))
    return step


def _plain(value: Any) -> Any:
    """A value as sqlite3 would bind it, in a type marshal takes: the string or number inside a subclass."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__index__(value)
    if isinstance(value, float):
        return float(value)
    return value


def _error(error_class: str, message: str) -> Exception:
    """The child's error as the parent's exception of the same sqlite3 class."""
    if error_class == SchemaVersionError.__name__:
        return SchemaVersionError(message)
    cls = getattr(sqlite3, error_class, None)
    if isinstance(cls, type) and issubclass(cls, sqlite3.Error):
        return cls(message)
    return sqlite3.OperationalError(f"{error_class}: {message}")
