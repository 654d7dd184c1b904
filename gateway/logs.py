"""structlog set-up: readable console lines in a terminal, JSON lines otherwise.

The standard library's loggers (aiohttp, asyncio) write through the same renderer, so with --log-json every line
on stderr is one JSON object, tracebacks included (in its "exception" field), never plain text among them. The
exception is a refusal to start (cli.py: `smsgw: bad config: ...`, `smsgw: cannot start: ...`): one plain line,
the only one, as the README words it for people and scripts to read.

Lines go to stderr through `Stderr`, which drops a line stderr cannot take (its reader gone) rather than raise.
On a terminal no value writes a control character raw (`escape_control_characters`): JSON escapes them itself.
"""

from __future__ import annotations

import logging
import os
import re
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


# C0 (ESC, BEL, CR...), DEL and C1 (CSI...): a terminal acts on them. Printable text, Chinese included, is not one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


class _Escaped:
    """A value with control characters in a console line: shown as its repr (quoted, ESC as `\\x1b`), as the
    console renderer shows a value with a space or a newline, never raw."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)

    __str__ = __repr__  # (the event's column shows str(value))


def escape_control_characters(_logger: object, _method: str, event_dict: dict) -> dict:
    """Console lines only, before the renderer: a peer's bytes (a bind's system_id, a submit_sm's destination_addr,
    even from a connection never bound) would otherwise reach the operator's terminal raw, to set its title or clear
    its screen. A traceback keeps its lines; its other control characters are escaped."""
    for key, value in event_dict.items():
        if not isinstance(value, str) or not _CONTROL.search(value):
            continue  # (any other value is shown as its repr, which escapes them)
        if key == "exception":
            event_dict[key] = _CONTROL_BUT_NEWLINE.sub(lambda control: repr(control[0])[1:-1], value)
        else:
            event_dict[key] = _Escaped(value)
    return event_dict


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    json = not sys.stderr.isatty() if json is None else json
    stderr = Stderr()
    if json:
        rendering = [structlog.processors.JSONRenderer()]
    else:
        rendering = [escape_control_characters, structlog.dev.ConsoleRenderer(colors=False)]
    stamped = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=lambda *_name: stderr,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: the fields a filter or a caller added to the record (logging's `extra=`) become keys.
        foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, *rendering],
    ))  # fmt: skip
    root = logging.getLogger()
    root.handlers[:] = [handler]  # (replaces logging's last-resort handler, which writes plain text)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
