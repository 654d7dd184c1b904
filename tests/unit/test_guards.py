"""Submission guards: blocks after spam reports and subscriptions, as committed effects add and lift them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.accounts import Accounts
from gateway.config import AccountConfig
from gateway.guards import Guards
from gateway.ids import MessageIds
from gateway.smpp.constants import CommandStatus as S
from gateway.store.effects import Put
from gateway.store.records import Block, Direction, Message, MessageStatus, Subscription
from handlers.base import Catalogue
from simulator.testing import gateway_config

SPAMMER, VICTIM, OTHER = "8613900000009", "8613800000001", "8613800000002"


def guards_and_account():
    accounts = Accounts((AccountConfig("handset", "pw", "handset", numbers=("86138", "86139")),))
    return Guards(Catalogue(())), accounts.get("handset")


def status(guards: Guards, account, source: str, dest: str) -> int | None:
    refusal = guards.check(account, source, dest)
    return refusal[0] if refusal else None


def test_a_personal_block_stops_only_that_pair_until_each_of_its_blocks_is_lifted() -> None:
    guards, handset = guards_and_account()
    first = Block("b1", SPAMMER, VICTIM, 1.0)
    second = Block("b2", SPAMMER, VICTIM, 2.0)  # the same subscriber reported the same number again
    guards.observe([Put(first), Put(second)])
    assert status(guards, handset, SPAMMER, VICTIM) == S.SMSGW_RBLOCKEDBYRECIPIENT
    assert status(guards, handset, SPAMMER, OTHER) is None
    guards.observe([Put(replace(first, lifted_at=3.0))])
    assert status(guards, handset, SPAMMER, VICTIM) == S.SMSGW_RBLOCKEDBYRECIPIENT  # b2 still stands
    guards.observe([Put(replace(second, lifted_at=4.0))])
    assert status(guards, handset, SPAMMER, VICTIM) is None


def test_a_network_block_stops_every_destination_until_lifted() -> None:
    guards, handset = guards_and_account()
    block = Block("n1", SPAMMER, "", 1.0)
    guards.observe([Put(block)])
    guards.observe([Put(block)])  # the same record committed again changes nothing
    assert status(guards, handset, SPAMMER, VICTIM) == S.SMSGW_RSENDERBLOCKED
    assert status(guards, handset, SPAMMER, OTHER) == S.SMSGW_RSENDERBLOCKED
    guards.observe([Put(replace(block, lifted_at=2.0))])
    assert status(guards, handset, SPAMMER, OTHER) is None


def test_what_waited_through_a_lifted_network_block_stays_undeliverable_and_what_came_after_goes() -> None:
    """Before and after the block by ids (made in order), not by the clock's readings: a simulated clock set back
    after a lift rejected every MT the number sent afterwards that had to wait, and a frozen clock let one that
    waited through the whole block go out."""
    guards, _handset = guards_and_account()
    ids = MessageIds()

    def mt(submitted_at: float) -> Message:
        return Message(id=ids.next(), direction=Direction.MT, status=MessageStatus.ENROUTE, account="handset",
                       source_addr=SPAMMER, dest_addr=VICTIM, short_message=b"x", submitted_at=submitted_at)  # fmt: skip

    waited = mt(100.0)  # accepted before the block, stamped the moment the block begins (a frozen clock)
    block = Block(ids.next(), SPAMMER, "", 100.0)
    guards.observe([Put(block), Put(replace(block, lifted_at=400.0))])
    assert guards.undeliverable(waited)[0] == S.SMSGW_RSENDERBLOCKED
    assert guards.undeliverable(mt(500.0)) is None  # accepted after the lift
    assert guards.undeliverable(mt(50.0)) is None  # after the lift, the clock set back to before the block


def test_binds_ask_again_only_about_the_recipients_a_tightening_concerns() -> None:
    """A bind re-checks its queue after a block or an unsubscription (SPEC 3.1: at once), but only the MTs to
    the recipients concerned: every spam report re-checked every queued MT on every bind."""
    guards, _handset = guards_and_account()
    seen = guards.tightened
    assert guards.recipients_since(seen) == frozenset()
    personal = Block("b1", SPAMMER, VICTIM, 1.0)
    guards.observe([Put(personal), Put(personal)])  # committed again: one tightening
    assert guards.tightened == seen + 1 and guards.recipients_since(seen) == {VICTIM}
    guards.observe([Put(replace(personal, lifted_at=2.0))])  # lifting tightens nothing
    assert guards.recipients_since(seen) == {VICTIM}
    guards.observe([Put(Block("n1", SPAMMER, "", 3.0))])  # network-wide: anyone's MTs
    assert guards.recipients_since(seen) is None
    assert guards.recipients_since(guards.tightened) == frozenset()
    for n in range(300):  # more than are kept: anyone's, to be safe
        guards.observe([Put(Block(f"p{n}", SPAMMER, OTHER, 4.0))])
    assert guards.recipients_since(guards.tightened - 300) is None
    assert guards.recipients_since(guards.tightened - 2) == {OTHER}


def sp_guards() -> Guards:
    """Guards of the example catalogue, `sina` an SP account (sina-news and sina-weather both on 1066916)."""
    return Guards(Catalogue(gateway_config().catalogue), sp_accounts=("sina",))


def sp_content(ids: MessageIds) -> Message:
    """An MT of sina's content on 1066916 to VICTIM, accepted now (its id made next)."""
    return Message(id=ids.next(), direction=Direction.MT, status=MessageStatus.ENROUTE, account="sina",
                   source_addr="1066916", dest_addr=VICTIM, short_message=b"x")  # fmt: skip


def active(id: str, service: str) -> Subscription:
    """VICTIM's active subscription `id` to `service`."""
    return Subscription(id, VICTIM, service, "active", 1.0, "sms", "mo-1", 1.0)


def test_sp_content_goes_out_only_while_its_code_stayed_subscribed_since_it_was_accepted() -> None:
    """Per service code, by ids: an MT accepted while the subscriber had sina-news waited through an unsubscription
    and an order again of the same service (it went out); a second service on the code keeps the first's period."""
    guards = sp_guards()
    ids = MessageIds()

    def cancel(s: Subscription) -> None:
        guards.observe([Put(replace(s, status="cancelled"))])

    news = active(ids.next(), "sina-news")
    guards.observe([Put(news)])
    waited = sp_content(ids)
    cancel(news)
    again = active(ids.next(), "sina-news")
    guards.observe([Put(again)])
    assert guards.undeliverable(waited)[0] == S.SMSGW_RNOSUBSCRIPTION
    assert guards.undeliverable(sp_content(ids)) is None

    weather = active(ids.next(), "sina-weather")  # the same code
    guards.observe([Put(weather)])
    through = sp_content(ids)
    cancel(again)  # weather still active on 1066916: its active period goes on
    assert guards.undeliverable(through) is None


def test_a_second_service_ordered_on_the_code_does_not_restart_its_active_period() -> None:
    """Content accepted while sina-news was active goes out after sina-weather (the same code, 1066916) is ordered
    too: the subscriber never lost the code. Its order must not begin the code's active period again, after which
    what waited counted as accepted before the subscription."""
    guards = sp_guards()
    ids = MessageIds()
    guards.observe([Put(active(ids.next(), "sina-news"))])
    waiting = sp_content(ids)
    guards.observe([Put(active(ids.next(), "sina-weather"))])
    assert guards.undeliverable(waiting) is None


@pytest.mark.parametrize("id", ["sub-1", "f" * 32], ids=["a test's", "an import's of 32 hex digits"])
def test_a_subscription_id_not_made_by_message_ids_stops_no_sp_content(id: str) -> None:
    """An active period is told by ids MessageIds made (19 hex digits); a subscription id of another form does not
    sort among them (`sub-1` and 32 `f` after every one, though the latter begins like one): taken for the period's
    start, every MT of the code's content counted as accepted before it and was refused ESME_RNOSUBSCRIPTION
    (Guards._active: such a one "stops nothing")."""
    guards = sp_guards()
    guards.observe([Put(active(id, "sina-news"))])
    assert guards.undeliverable(sp_content(MessageIds())) is None
