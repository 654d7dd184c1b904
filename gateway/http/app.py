"""HTTP side. For now: liveness and readiness; the operator API follows (SPEC section 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .bad_requests import request_logger

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY = web.AppKey("gateway", object)
# What one connection's request line and headers may take: aiohttp's defaults (128 headers of 8190 octets) let each
# connection hold 1 MiB of them (400 connections that never ended their headers took 750 MB).
HEADER_LIMITS = {"max_line_size": 8190, "max_headers": 32, "max_field_size": 4096}
# What the stop gives the HTTP connections still open once the SMPP side is done (AppRunner's shutdown_timeout, 60 s by
# default): a request whose body never came whole held it ~10 s (aiohttp reads what is left of an unread body for up to
# lingering_time, 10 s, before it closes), past the grace `docker run --stop-timeout` gives (README "Docker"). The
# answers here take no time: nothing is cut short that would be answered.
HTTP_STOP_GRACE = 1.0


def make_app(gateway: Gateway) -> web.Application:
    # aiohttp's keep-alive timer runs from the connection's opening and from each answer until a request's headers
    # are whole (not while a request is handled): it bounds both the idle connection and the slow headers.
    handler_args = {"keepalive_timeout": gateway.config.gateway.http_idle_timeout, **HEADER_LIMITS,
                    "logger": request_logger(gateway.complaints)}  # fmt: skip
    app = web.Application(middlewares=[json_errors], handler_args=handler_args)
    app[GATEWAY] = gateway
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    return app


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    # A gateway whose store cannot commit answers every submission ESME_RSYSERR: traffic should go elsewhere.
    can_commit = gateway.store.can_commit
    ready = gateway.ready and can_commit
    body = {
        "ready": ready,
        "store": "ok" if can_commit else "database file gone" if gateway.store.database_gone else "cannot commit",
        "binds": sum(1 for c in gateway.connections if c.account is not None),
        "mt_waiting": sum(gateway.delivery.queued.values()),
    }
    return web.json_response(body, status=200 if ready else 503)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Every error a client can cause comes back as JSON with a reason."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason, "status": exc.status}, status=exc.status)
