"""structlog set-up: readable console lines in a terminal, JSON lines otherwise.

The standard library's loggers (aiohttp, asyncio) write through the same renderer, so with --log-json every line
on stderr is one JSON object, tracebacks included (in its "exception" field), never plain text among them. The
exception is a refusal to start (cli.py: `smsgw: bad config: ...`, `smsgw: cannot start: ...`): one plain line,
the only one, as the README words it for people and scripts to read.

Lines go to stderr through `Stderr`, which drops a line stderr cannot take (its reader gone) rather than raise.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import structlog


class Stderr:
    """Where every log line goes: structlog's logger (`msg` and its level names take the rendered line) and the
    standard library's stream (`write`). Each line is one write to stderr's file descriptor. A line stderr cannot take
    (a `| tee`, `| logger` or log shipper gone: a broken pipe; EIO) is dropped: the error stays here, not raised into
    the code that logged it (a bind answered, a refusal answered, a stop exiting 0), and there is nowhere to say so.
    Unbuffered: nothing is left in sys.stderr's buffer for Python to fail to flush at exit (status 120)."""

    def __init__(self) -> None:
        self._fd = sys.stderr.fileno()
        self._encoding = sys.stderr.encoding
        self._lock = threading.Lock()  # a line's partial writes are not interleaved with another thread's

    def write(self, text: str) -> None:
        data = text.encode(self._encoding, "backslashreplace")
        with self._lock:
            try:
                while data:
                    data = data[os.write(self._fd, data):]
            except OSError:
                pass  # the line is lost, the caller carries on (see the class's docstring)

    def flush(self) -> None:
        pass  # (nothing is buffered)

    def msg(self, message: str) -> None:
        self.write(message + "\n")

    debug = info = warning = error = critical = exception = msg


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    json = not sys.stderr.isatty() if json is None else json
    stderr = Stderr()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    stamped = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=lambda *_name: stderr,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: the fields a filter or a caller added to the record (logging's `extra=`) become keys.
        foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
    ))  # fmt: skip
    root = logging.getLogger()
    root.handlers[:] = [handler]  # (replaces logging's last-resort handler, which writes plain text)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
