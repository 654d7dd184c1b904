"""Handler names used in config ([[short_codes]] handler = "...") and the classes behind them."""

from __future__ import annotations

from .base import Handler
from .customer_service import CustomerService
from .echo import EchoHandler
from .order import OrderHandler
from .rating import RatingHandler
from .silent import SilentHandler
from .spam_report import SpamReportHandler

HANDLERS: dict[str, type] = {
    "echo": EchoHandler,
    "customer_service": CustomerService,
    "order": OrderHandler,
    "spam_report": SpamReportHandler,
    "rating": RatingHandler,
    "silent": SilentHandler,  # never answers (tests of a server that drops replies)
}

# The names a [[short_codes]] entry may give: not `order`, which serves the catalogue's service codes (they have it
# without an entry) and has nothing to order on any other code (gateway/config.py refuses it there).
SHORT_CODE_HANDLERS = tuple(sorted(name for name in HANDLERS if name != "order"))

# The operator's own services: a number blocked network-wide for spam may still text the codes that run them, to
# unsubscribe, rate or reach customer service (gateway/guards.py).
OPERATOR_SERVICES = frozenset({"customer_service", "spam_report", "rating"})


def options_of(name: str) -> dict[str, str]:
    """The [[short_codes]] keys besides code and handler that the handler reads (its ctx.options), each with its type
    as the config's settings write theirs ("str", "float"...); none unless it declares OPTIONS, so a misspelt or
    misplaced key is refused at start instead of ignored, and one of another type instead of used as it is."""
    return getattr(HANDLERS[name], "OPTIONS", {})


def make_handler(name: str) -> Handler:
    """KeyError for a name it does not know: only a [[short_codes]] entry's can be one, so that is what it lists."""
    try:
        return HANDLERS[name]()
    except KeyError:
        raise KeyError(f"unknown handler {name!r}; known: {', '.join(SHORT_CODE_HANDLERS)}") from None
