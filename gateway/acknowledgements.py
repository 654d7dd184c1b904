"""Which of an SP's content a subscriber's SME acknowledgement answers (README, Acknowledgements).

An SME delivery acknowledgement or a manual/user one (esm_class message type 0x08, 0x10) to an SP's service code goes
to the SP: it answers content the SP sent that subscriber from that code asking for one of that kind
(registered_delivery 0x04, 0x08: SMPP 3.4 5.2.17), one acknowledgement of each kind per message asked. Without such
content waiting or delivered within ANSWERED_WITHIN, not acknowledged yet, it is refused: any handset could otherwise
push any text into any SP's application, queued ahead of its own notices to the SP.

The acknowledgement stored names the content it answers by origin_id (read from the store: it holds after a
restart); one on its way to the store claims it until its write settles.
"""

from __future__ import annotations

from .clock import Clock
from .smpp.constants import EsmClass
from .store.base import Store
from .store.records import Message, acknowledgement_kind

ANSWERED_WITHIN = 86400.0  # seconds after its delivery that content may still be acknowledged
# esm_class message type: what it acknowledges
_KINDS = {int(EsmClass.SME_DELIVERY_ACK): "SME delivery", int(EsmClass.MANUAL_USER_ACK): "manual/user"}


class Acknowledgements:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._claimed: dict[int, set[str]] = {kind: set() for kind in _KINDS}  # by kind, the content ids answered

    def answered(self, sp: str, code: str, subscriber: str, esm_class: int) -> str | None:
        """The id of the content an acknowledgement (esm_class) from `subscriber` to `code`, SP `sp`'s, answers: of
        that asking for one of its kind not acknowledged yet, the one delivered first, else the one sent first of
        those waiting (Store.unacknowledged_content). None: it answers none."""
        kind = acknowledgement_kind(esm_class)
        since = self.clock.now() - ANSWERED_WITHIN
        return self.store.unacknowledged_content(sp, code, subscriber, kind, since, self._claimed[kind])

    @staticmethod
    def unanswered(sp: str, code: str, subscriber: str, esm_class: int) -> str:
        """Why an acknowledgement that answers nothing is refused (the line about its refusal)."""
        kind = _KINDS[acknowledgement_kind(esm_class)]
        return (f"an acknowledgement ({kind}) answers none of {sp}'s content from {code} to {subscriber}: none asking "
                f"for one (registered_delivery bits 3-2) is waiting or was delivered within {ANSWERED_WITHIN:g} s, or "
                "it was acknowledged already")  # fmt: skip

    def claim(self, acknowledgement: Message) -> None:
        """`acknowledgement` (its origin_id: the content it answers) goes to the store: no other answers that content."""
        self._claimed[_kind_of(acknowledgement)].add(acknowledgement.origin_id)  # type: ignore[arg-type]

    def settled(self, acknowledgement: Message) -> None:
        """Its write settled: committed, the store tells the content acknowledged; else (failed, a copy) it is not."""
        self._claimed[_kind_of(acknowledgement)].discard(acknowledgement.origin_id)  # type: ignore[arg-type]


def _kind_of(acknowledgement: Message) -> int:
    kind = acknowledgement_kind(acknowledgement.esm_class)
    assert kind and acknowledgement.origin_id is not None
    return kind
