"""HTTP side. For now: liveness and readiness; the operator API follows (SPEC section 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .bad_requests import quiet_malformed_requests

if TYPE_CHECKING:
    from gateway.app import Gateway

GATEWAY = web.AppKey("gateway", object)


def make_app(gateway: Gateway) -> web.Application:
    quiet_malformed_requests()
    app = web.Application(middlewares=[json_errors])
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
