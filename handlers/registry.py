"""Handler names used in config ([[short_codes]] handler = "...") and the classes behind them."""

from __future__ import annotations

from .base import Handler
from .echo import EchoHandler

HANDLERS: dict[str, type] = {
    "echo": EchoHandler,
}


def make_handler(name: str) -> Handler:
    try:
        return HANDLERS[name]()
    except KeyError:
        raise KeyError(f"unknown handler {name!r}; known: {', '.join(sorted(HANDLERS))}") from None
