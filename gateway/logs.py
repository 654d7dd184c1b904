"""structlog set-up: readable console lines in a terminal, JSON lines otherwise.

The standard library's loggers (aiohttp, asyncio) write through the same renderer, so with --log-json every line
on stderr is one JSON object, tracebacks included (in its "exception" field), never plain text among them. The
exception is a refusal to start (cli.py: `smsgw: bad config: ...`, `smsgw: cannot start: ...`): one plain line,
the only one, as the README words it for people and scripts to read.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    json = not sys.stderr.isatty() if json is None else json
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    stamped = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
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
