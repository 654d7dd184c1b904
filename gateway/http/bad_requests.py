"""A request aiohttp cannot parse (a port scanner, a probe speaking another protocol, a bad Content-Length) is the
client's fault: one line at info naming the peer and what was wrong, not aiohttp's traceback at error level.

aiohttp answers it itself with a text/plain 400 before any middleware of ours runs (only a subclass of its
private request handler could change that), so the answer stays as aiohttp writes it.

aiohttp logs most of these at error level, but a bad method (TLS or an SMPP PDU sent to the HTTP port, the
commonest kind) at debug, and a logger drops a record below its level before its filters run. So aiohttp's
server logger passes everything to the filter, and the filter checks the gateway's level (the root logger's,
set by --log-level) itself, once the record is relabelled: one info line per malformed request at info or
debug, none at warning or above, and from one host only the first few, the rest counted as refused PDUs are (the
gateway's `complaints`, which each gateway's handlers pass along with their records: `request_logger`). Its reason is aiohttp's without the request's bytes, which aiohttp quotes: an
SMPP client pointed at this port sends its bind's password, a URL carries a token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref

from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError

from gateway.gctune import collect_and_give_back
from gateway.log_budget import LogBudgets

_AIOHTTP_SERVER = logging.getLogger("aiohttp.server")
_BUDGETS = "complaints"  # the record's attribute with its gateway's log budgets (request_logger)
_MALFORMED = "malformed HTTP request refused"
# What aiohttp's message ends with when it quotes the request: llhttp's "<what was wrong>:\n\n  b'<the line>'\n  ^",
# or a repr of the line or header at its end ("Invalid HTTP header: b'...'", "Bad status line '...'").
_QUOTED_REQUEST = re.compile(r"""(:\n\n.*|:?\s*b?('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\W*)$""", re.DOTALL)


class MalformedRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        complaints: LogBudgets | None = record.__dict__.pop(_BUDGETS, None)  # (not a field of the line)
        exc = record.exc_info[1] if record.exc_info else None
        # (code 500: aiohttp's own fault, whatever the class; that keeps its traceback)
        malformed = isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500
        if malformed:
            record.peer = _peer(record)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = _MALFORMED, ()
            record.exc_info = record.exc_text = None
            record.status = exc.code
            record.reason = _reason(exc)
            _collect_soon()
        if record.levelno < logging.getLogger().getEffectiveLevel():
            return False
        # ("-": no account, as on an SMPP connection before its bind; the counts: server.log_complaints)
        return not malformed or complaints is None or complaints.allow((record.peer, "-"), _MALFORMED)


def _reason(exc: HttpProcessingError) -> str:
    """What was wrong with the request, without its bytes."""
    message = exc.message if isinstance(exc.message, str) else ""
    if isinstance(exc, InvalidURLError) and ":\n\n" not in message:  # (its message is the URL itself)
        return "Invalid URL"
    return " ".join(_QUOTED_REQUEST.sub("", message).split()) or type(exc).__name__


def _peer(record: logging.LogRecord) -> str | None:
    """aiohttp's message is "Error handling request from %s" with the client's address as its argument."""
    return str(record.args[0]) if isinstance(record.args, tuple) and record.args else None


def request_logger(complaints: LogBudgets) -> logging.LoggerAdapter:
    """aiohttp's server logger for the handlers of one gateway's HTTP port: its records carry that gateway's log
    budgets, which the filter applies to the lines about malformed requests."""
    quiet_malformed_requests()
    return logging.LoggerAdapter(_AIOHTTP_SERVER, {_BUDGETS: complaints})


def quiet_malformed_requests() -> None:
    """Install the filter on aiohttp's server logger (once, however many apps are made)."""
    if not any(isinstance(f, MalformedRequests) for f in _AIOHTTP_SERVER.filters):
        _AIOHTTP_SERVER.addFilter(MalformedRequests())
    _AIOHTTP_SERVER.setLevel(logging.DEBUG)  # every record reaches the filter, which applies the gateway's level


def _collect_soon() -> None:
    """Collect every generation a second after a malformed request (once for any number of them), giving back to the
    system what that frees (gctune.collect_and_give_back). Its handler, parser, exception and the frames of its
    traceback hold each other, with the request's bytes, in cycles only the collector frees, and gctune's thresholds
    make a collection rare: 400 connections each sending 960 KB of headers left the gateway at 715 MB after they
    closed, 1,050 MB after the next 400 (one collection a second: 124-151 MB). Every generation: requests still being
    read when an automatic collection runs during a flood survive into the older ones."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # (logged outside an event loop: no connection of ours)
        return
    if loop not in _COLLECTING:
        _COLLECTING.add(loop)
        loop.call_later(1.0, _collect, loop)


_COLLECTING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()  # loops with a collection to come


def _collect(loop: asyncio.AbstractEventLoop) -> None:
    _COLLECTING.discard(loop)
    collect_and_give_back()
