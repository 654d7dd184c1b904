"""An MO handled as it arrives, in the transaction that stores it (gateway/mo.py), seen from a handset.

A single-part MO whose subscriber has nothing else on its way is handled at once and stored
`processed` together with its handling. These tests pin what that must not change: per-subscriber
order, one handling per message whatever its copies (a handler that fails: test_mo_retry.py).
PDUs sent back to back go in one write (the gateway reads them together): that is when an MO meets
another one still being handled or committed.
"""

from __future__ import annotations

import sqlite3
import struct

from smpplib import gsm

from gateway.store.records import MessageStatus
from tests.e2e.test_amend import multi_resp, submit_multi
from tests.smpp_handset import (
    ESM_UDHI,
    ESME_ROK,
    RawLink,
    answer,
    encode,
    encoded,
    reassemble,
    text,
)

A = "8613800000001"
ECHO = "10086000"  # replies with the text it received
LONG_CHINESE = "移动梦网统一查询退订服务：发送0000查询您已定制的全部业务，发送TD加业务代码退订。" * 3  # 2 parts in UCS2


def statuses(gw, ids) -> list[MessageStatus]:
    return [gw.call(gw.gateway.store.get(i.decode() if isinstance(i, bytes) else i)).status for i in ids]


def test_a_short_mo_does_not_overtake_the_long_one_sent_before_it(gateway, handset):
    """The long MO's last part is still being committed when the short one arrives: the short one waits its turn."""
    a = handset(A, gw=gateway)
    parts, coding, esm_class = gsm.make_parts(LONG_CHINESE, encoding=8)
    assert len(parts) == 2 and esm_class == ESM_UDHI
    pdus = [a.make("submit_sm", ECHO, part, data_coding=coding, esm_class=esm_class) for part in parts]
    sequences = a.send_together(*pdus, a.make("submit_sm", ECHO, "after it"))
    assert [a.response(s).status for s in sequences] == [ESME_ROK] * 3
    replies = a.expect_many(3)
    assert reassemble(replies[:2]) == LONG_CHINESE
    assert text(replies[2]) == "after it"


def test_an_mo_is_stored_before_the_later_ones_of_its_subscriber(gateway, handset):
    """The first is handled at once and stored with its handling; the second, meeting its subscriber busy, is
    stored first and handled after. Its row must not be committed before the first's: after a crash the client
    sends again only what was not acknowledged, and a later MO kept without the earlier one is handled first."""
    a = handset(A, gw=gateway)
    first, second = a.send_together(a.make("submit_sm", ECHO, "first"), a.make("submit_sm", ECHO, "second"))
    ids = [a.response(first).message_id.decode(), a.response(second).message_id.decode()]
    assert [text(p) for p in a.expect_many(2)] == ["first", "second"]
    with sqlite3.connect(f"file:{gateway.gateway.db_path}?mode=ro", uri=True) as db:
        stored = [row[0] for row in db.execute("SELECT id FROM messages WHERE direction = 'mo' ORDER BY seq")]
    assert stored == ids


def test_a_copy_arriving_while_the_first_is_handled_gets_its_id_and_no_reply(gateway, handset):
    a = handset(A, gw=gateway)
    first, copy = a.send_together(  # the client retransmits at once
        a.make("submit_sm", ECHO, "once", user_message_reference=9), a.make("submit_sm", ECHO, "once", user_message_reference=9)
    )
    first_resp, copy_resp = a.response(first), a.response(copy)
    assert first_resp.status == copy_resp.status == ESME_ROK
    assert copy_resp.message_id == first_resp.message_id
    assert a.submit(ECHO, "next").status == ESME_ROK
    # A reply to the copy would come before the next MO's: MOs of one subscriber are handled in order.
    assert [text(p) for p in a.expect_many(2)] == ["once", "next"]
    assert statuses(gateway, [first_resp.message_id]) == [MessageStatus.PROCESSED]


def test_a_copy_of_a_handled_mo_gets_its_id_and_no_reply(gateway, handset):
    a = handset(A, gw=gateway)
    first = a.submit(ECHO, "once", user_message_reference=11)
    assert text(a.expect()) == "once"
    again = a.submit(ECHO, "once", user_message_reference=11)
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)
    assert a.submit(ECHO, "next").status == ESME_ROK
    assert text(a.expect()) == "next"


def test_a_retransmission_on_the_same_bind_gets_the_first_id_and_no_reply(gateway, handset):
    """No user_message_reference: the same sequence number again on the bind is the copy."""
    a = handset(A, gw=gateway)
    pdu = a.make("submit_sm", ECHO, "once")
    first = a.request(pdu)
    assert text(a.expect()) == "once"
    again = a.request(pdu)  # the client never saw the first answer
    assert (again.status, again.message_id) == (ESME_ROK, first.message_id)
    assert a.submit(ECHO, "next").status == ESME_ROK
    assert text(a.expect()) == "next"


def multi_id(link: RawLink, sequence: int) -> str:
    status, body = answer(link, sequence)
    assert status == ESME_ROK
    return multi_resp(body)[0]


def test_a_submit_sm_repeating_a_submit_multi_is_a_copy(gateway, handset):
    """Same bind, sequence number, addresses and text: the same message, however it was sent the first time."""
    a = handset(A, gw=gateway)
    with RawLink(gateway.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(submit_multi(2, A, [ECHO], b"once"))
        first = multi_id(link, 2)
        assert text(a.expect()) == "once"
        link.send(encoded("submit_sm", 2, source_addr=A, destination_addr=ECHO, short_message=b"once"))
        assert answer(link, 2) == (ESME_ROK, first.encode() + b"\0")
    assert a.submit(ECHO, "next").status == ESME_ROK
    assert text(a.expect()) == "next"  # no second "once" before it
    assert stored_replies(gateway, "once") == 1  # nor one stored to go out later


def stored_replies(gw, body: str) -> int:
    with sqlite3.connect(f"file:{gw.gateway.db_path}?mode=ro", uri=True) as db:
        query = "SELECT count(*) FROM messages WHERE direction = 'mt' AND source_addr = ? AND short_message = ?"
        return db.execute(query, (ECHO, body.encode())).fetchone()[0]


def test_a_submit_sm_read_with_a_submit_multi_before_it_is_handled_after_it(gateway, handset):
    a = handset(A, gw=gateway)
    with RawLink(gateway.smpp_port) as link:
        link.bind("handset", command="bind_transmitter")
        link.send(submit_multi(2, A, [ECHO], b"first") + encoded("submit_sm", 3, source_addr=A, destination_addr=ECHO,
                                                                    short_message=b"second"))  # fmt: skip
        replies = {}
        for _ in range(2):
            data = link.read_frame()
            replies[struct.unpack(">L", data[12:16])[0]] = data
        assert set(replies) == {2, 3}
    assert [text(p) for p in a.expect_many(2)] == ["first", "second"]


def test_long_mo_parts_sent_back_to_back_are_answered_once(gateway, handset):
    a = handset(A, gw=gateway)
    data = encode(LONG_CHINESE, 8)
    parts = gsm.make_parts_encoded(data, 134)
    sequences = a.send_together(*(a.make("submit_sm", ECHO, part, data_coding=8, esm_class=ESM_UDHI) for part in parts))
    assert [a.response(s).status for s in sequences] == [ESME_ROK] * len(parts)
    assert reassemble(a.expect_many(2)) == LONG_CHINESE
    assert a.submit(ECHO, "next").status == ESME_ROK
    assert text(a.expect()) == "next"
