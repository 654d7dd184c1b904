"""What a short-code handler sees and returns. Handlers never touch sockets or PDUs.

The gateway (or later USSD and the HTTP API) turns whatever arrived into an
`Inbound`, calls the handler, and delivers its `Reply`s as text; channel
details stay outside the handler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.clock import Clock


@dataclass(frozen=True, slots=True)
class Inbound:
    subscriber: str  # canonical MSISDN
    short_code: str
    text: str
    received_at: float  # epoch seconds, from the gateway clock
    channel: str = "sms"
    message_ids: tuple[str, ...] = ()  # the stored MO(s) this text came in


@dataclass(frozen=True, slots=True)
class Reply:
    to: str  # canonical MSISDN
    text: str
    source: str  # the short code it comes from


@dataclass(slots=True)
class HandlerContext:
    clock: Clock
    options: dict[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    async def handle(self, inbound: Inbound, ctx: HandlerContext) -> list[Reply]: ...
