"""gateway.smpp.segment: splitting into parts, UDH/SAR parsing, reassembly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.constants import DataCoding, EsmClass, Tag
from gateway.smpp.segment import (
    Concat,
    ConcatScheme,
    Part,
    Reassembler,
    concat_info,
    parse_udh,
    segment_text,
    with_tlvs_in_udh,
)
from gateway.smpp.text import decode, encode

GSM_CHARS = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
GSM_EXTENSION = "\f^{}\\[~]|€"
UDH_SCHEMES = [ConcatScheme.UDH8, ConcatScheme.UDH16]


def bodies(parts: list[Part]) -> list[bytes]:
    return [parse_udh(p.esm_class, p.short_message)[1] for p in parts]


# --- segment_text: sizes --------------------------------------------------


def test_short_text_is_one_plain_part() -> None:
    (part,) = segment_text("hello")
    assert part == Part(b"hello", 0, DataCoding.DEFAULT, {})


def test_empty_text() -> None:
    assert segment_text("") == [Part(b"", 0, 0, {})]


@pytest.mark.parametrize("scheme", list(ConcatScheme))
def test_160_gsm_is_one_part_whatever_the_scheme(scheme: ConcatScheme) -> None:
    assert segment_text("a" * 160, scheme=scheme) == [Part(b"a" * 160, 0, 0, {})]
    assert len(segment_text("€" * 80, scheme=scheme)) == 1


def test_161_gsm_is_153_plus_8() -> None:
    parts = segment_text("a" * 161)
    assert [len(b) for b in bodies(parts)] == [153, 8]
    assert all(p.esm_class == EsmClass.UDHI for p in parts)
    assert len(segment_text("€" * 80 + "a")) == 2


def test_udh16_gsm_parts_are_152() -> None:
    assert [len(b) for b in bodies(segment_text("a" * 161, scheme=ConcatScheme.UDH16))] == [152, 9]


def test_sar_parts_leave_room_for_the_udh_an_smsc_adds() -> None:
    # The SMSC turns the sar_* TLVs into a 6-octet concatenation UDH on the air: a part cut at 160 septets
    # (or 70 UCS2 characters, 140 octets) would not fit one SMS with it.
    parts = segment_text("a" * 161, scheme=ConcatScheme.SAR)
    assert [p.short_message for p in parts] == [b"a" * 153, b"a" * 8]
    assert all(p.esm_class == 0 for p in parts)
    latin1 = segment_text("é" * 141, data_coding=DataCoding.LATIN1, scheme=ConcatScheme.SAR)
    assert [len(p.short_message) for p in latin1] == [134, 7]


def test_ucs2_70_vs_71() -> None:
    assert len(segment_text("中" * 70)) == 1
    parts = segment_text("中" * 71)
    assert [len(b) // 2 for b in bodies(parts)] == [67, 4]
    assert all(p.data_coding == DataCoding.UCS2 for p in parts)
    assert [len(b) // 2 for b in bodies(segment_text("中" * 71, scheme=ConcatScheme.UDH16))] == [66, 5]
    assert [len(p.short_message) // 2 for p in segment_text("中" * 71, scheme=ConcatScheme.SAR)] == [67, 4]


def test_latin1_140_vs_141() -> None:
    assert len(segment_text("é" * 140, data_coding=DataCoding.LATIN1)) == 1
    parts = segment_text("é" * 141, data_coding=DataCoding.LATIN1)
    assert [len(b) for b in bodies(parts)] == [134, 7]
    assert [len(b) for b in bodies(segment_text("é" * 141, data_coding=3, scheme=ConcatScheme.UDH16))] == [133, 8]


def test_choose_coding_when_none() -> None:
    assert segment_text("hello €")[0].data_coding == DataCoding.DEFAULT
    assert segment_text("hello 😀")[0].data_coding == DataCoding.UCS2
    assert segment_text("hello", data_coding=DataCoding.UCS2)[0].short_message == "hello".encode("utf-16-be")


# --- segment_text: never inside a character --------------------------------


@pytest.mark.parametrize(("scheme", "size"), [(ConcatScheme.UDH8, 153), (ConcatScheme.UDH16, 152), (ConcatScheme.SAR, 153)])
def test_escape_not_split_at_gsm_boundary(scheme: ConcatScheme, size: int) -> None:
    # The escape would be the last septet of part 1, its '€' the first of part 2.
    parts = segment_text("a" * (size - 1) + "€" + "b" * 10, scheme=scheme)
    first, second = bodies(parts)
    assert first == b"a" * (size - 1)
    assert second == b"\x1b\x65" + b"b" * 10


def test_escape_that_fits_is_kept() -> None:
    first, second = bodies(segment_text("a" * 151 + "€" + "b" * 10))
    assert first == b"a" * 151 + b"\x1b\x65"
    assert second == b"b" * 10


@pytest.mark.parametrize(("scheme", "units"), [(ConcatScheme.UDH8, 67), (ConcatScheme.UDH16, 66), (ConcatScheme.SAR, 67)])
def test_surrogate_pair_not_split_at_ucs2_boundary(scheme: ConcatScheme, units: int) -> None:
    parts = segment_text("中" * (units - 1) + "😀" + "x" * 10, scheme=scheme)
    first, second = bodies(parts)
    assert first == encode("中" * (units - 1), 8)
    assert second[:4] == bytes.fromhex("D83DDE00")
    assert decode(second, 8) == "😀" + "x" * 10


# --- segment_text: headers and TLVs -----------------------------------------


def test_udh8_bytes() -> None:
    parts = segment_text("a" * 200, reference=0x42)
    assert [p.short_message[:6] for p in parts] == [bytes.fromhex("050003420201"), bytes.fromhex("050003420202")]
    assert all(p.tlvs == {} for p in parts)


def test_udh16_bytes() -> None:
    parts = segment_text("a" * 400, reference=0x1234, scheme=ConcatScheme.UDH16)
    assert [p.short_message[:7] for p in parts] == [bytes.fromhex("060804123403%02X" % i) for i in (1, 2, 3)]


def test_reference_wraps_to_field_size() -> None:
    assert segment_text("a" * 200, reference=0x142)[0].short_message[:6] == bytes.fromhex("050003420201")
    parts = segment_text("a" * 200, reference=0x11234, scheme=ConcatScheme.SAR)
    assert parts[0].tlvs[Tag.SAR_MSG_REF_NUM] == 0x1234


def test_sar_tlvs() -> None:
    parts = segment_text("a" * 400, reference=0xBEEF, scheme=ConcatScheme.SAR)
    assert [p.tlvs for p in parts] == [
        {Tag.SAR_MSG_REF_NUM: 0xBEEF, Tag.SAR_TOTAL_SEGMENTS: 3, Tag.SAR_SEGMENT_SEQNUM: seq} for seq in (1, 2, 3)
    ]


def test_payload() -> None:
    text = "中" * 500
    (part,) = segment_text(text, scheme=ConcatScheme.PAYLOAD)
    assert part == Part(b"", 0, DataCoding.UCS2, {Tag.MESSAGE_PAYLOAD: encode(text, 8)})


def test_too_long() -> None:
    assert len(segment_text("a" * 153 * 255)) == 255
    with pytest.raises(ValueError, match="255"):
        segment_text("a" * (153 * 255 + 1))
    with pytest.raises(ValueError):
        segment_text("a" * 70000, scheme=ConcatScheme.PAYLOAD)


def test_part_is_frozen() -> None:
    part = segment_text("hi")[0]
    with pytest.raises(AttributeError):
        part.short_message = b"x"  # type: ignore[misc]


# --- parse_udh / concat_info ------------------------------------------------


def test_parse_udh_without_udhi() -> None:
    assert parse_udh(0, b"\x05\x00\x03\x01\x02\x01hi") == (None, b"\x05\x00\x03\x01\x02\x01hi")


def test_parse_udh8_and_udh16() -> None:
    assert parse_udh(0x40, bytes.fromhex("0500034202016869")) == (Concat(0x42, 2, 1), b"hi")
    assert parse_udh(0x40, bytes.fromhex("060804123403026869")) == (Concat(0x1234, 3, 2, ConcatScheme.UDH16), b"hi")
    # other esm_class bits do not matter
    assert parse_udh(0x43, bytes.fromhex("0500034202016869"))[0] == Concat(0x42, 2, 1)


def test_parse_udh_skips_unknown_ies() -> None:
    # application port addressing (IEI 0x05, 4 octets) before the concat IE
    sm = bytes.fromhex("0B" "050400000000" "0003070302") + b"body"
    assert parse_udh(0x40, sm) == (Concat(7, 3, 2), b"body")


def test_parse_udh_without_concat_ie_strips_header() -> None:
    assert parse_udh(0x40, bytes.fromhex("06050400000000") + b"body") == (None, b"body")
    assert parse_udh(0x40, b"\x00body") == (None, b"body")


def test_parse_udh_ignores_impossible_concat() -> None:
    assert parse_udh(0x40, bytes.fromhex("050003420200") + b"x") == (None, b"x")  # seq 0
    assert parse_udh(0x40, bytes.fromhex("050003420203") + b"x") == (None, b"x")  # seq > total
    assert parse_udh(0x40, bytes.fromhex("050003420000") + b"x") == (None, b"x")  # total 0
    assert parse_udh(0x40, bytes.fromhex("0400024202") + b"x") == (None, b"x")  # wrong IE length


def test_parse_udh_last_concat_ie_wins() -> None:
    sm = bytes.fromhex("0A" "0003010201" "0003020302") + b"x"
    assert parse_udh(0x40, sm) == (Concat(2, 3, 2), b"x")


@pytest.mark.parametrize(
    "sm",
    [
        b"",
        bytes.fromhex("05"),  # header length past the end
        bytes.fromhex("050003420201"[:-2]),
        bytes.fromhex("0300034202") + b"x",  # IE runs past the header
        bytes.fromhex("0100"),  # IE with no length octet
    ],
)
def test_parse_udh_malformed(sm: bytes) -> None:
    assert parse_udh(0x40, sm) == (None, sm)


@given(st.integers(0, 255), st.binary(max_size=40))
def test_parse_udh_never_raises(esm_class: int, sm: bytes) -> None:
    concat, body = parse_udh(esm_class, sm)
    assert sm.endswith(body)
    if concat is not None:
        assert 1 <= concat.seqnum <= concat.total


def test_concat_info_prefers_udh_then_sar() -> None:
    sar = {Tag.SAR_MSG_REF_NUM: 9, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 2}
    assert concat_info(0, b"body", sar) == (Concat(9, 2, 2, ConcatScheme.SAR), b"body")
    assert concat_info(0x40, bytes.fromhex("0500034202016869"), sar) == (Concat(0x42, 2, 1), b"hi")
    assert concat_info(0, b"body", {}) == (None, b"body")
    assert concat_info(0, b"body", {Tag.SAR_MSG_REF_NUM: 9}) == (None, b"body")


def test_concat_info_raw_tlv_octets() -> None:
    raw = {Tag.SAR_MSG_REF_NUM: b"\x12\x34", Tag.SAR_TOTAL_SEGMENTS: b"\x03", Tag.SAR_SEGMENT_SEQNUM: b"\x01"}
    assert concat_info(0, b"body", raw) == (Concat(0x1234, 3, 1, ConcatScheme.SAR), b"body")
    bad = {Tag.SAR_MSG_REF_NUM: 1, Tag.SAR_TOTAL_SEGMENTS: 3, Tag.SAR_SEGMENT_SEQNUM: 4}
    assert concat_info(0, b"body", bad) == (None, b"body")


def test_concat_info_reads_message_payload() -> None:
    tlvs = {Tag.MESSAGE_PAYLOAD: bytes.fromhex("0500034202016869")}
    assert concat_info(0x40, b"", tlvs) == (Concat(0x42, 2, 1), b"hi")
    assert concat_info(0, b"", {Tag.MESSAGE_PAYLOAD: b"long"}) == (None, b"long")


# --- Reassembler ------------------------------------------------------------


def test_reassembler_any_order() -> None:
    r = Reassembler()
    assert r.add("k", Concat(1, 3, 3), b"c", now=0) is None
    assert r.add("k", Concat(1, 3, 1), b"a", now=1) is None
    assert len(r) == 1
    assert r.add("k", Concat(1, 3, 2), b"b", now=2) == [b"a", b"b", b"c"]
    assert len(r) == 0


def test_reassembler_single_part_set() -> None:
    r = Reassembler()
    assert r.add("k", Concat(1, 1, 1), b"only", now=0) == [b"only"]
    assert len(r) == 0


def test_reassembler_keeps_the_last_copy_of_a_part() -> None:
    r = Reassembler()
    assert r.add("k", Concat(1, 2, 1), b"first", now=0) is None
    assert r.add("k", Concat(1, 2, 1), b"again", now=0) is None
    assert r.add("k", Concat(1, 2, 2), b"second", now=0) == [b"again", b"second"]
    # a late duplicate after completion just starts a new set
    assert r.add("k", Concat(1, 2, 2), b"second", now=0) is None
    assert len(r) == 1


def test_reassembler_sets_are_separate() -> None:
    r = Reassembler()
    assert r.add("alice", Concat(1, 2, 1), b"a1", now=0) is None
    assert r.add("bob", Concat(1, 2, 2), b"b2", now=0) is None
    assert r.add("alice", Concat(2, 2, 2), b"x", now=0) is None
    assert r.add("alice", Concat(1, 3, 2), b"other total", now=0) is None
    assert len(r) == 4
    assert r.add("alice", Concat(1, 2, 2), b"a2", now=0) == [b"a1", b"a2"]
    assert r.add("bob", Concat(1, 2, 1), b"b1", now=0) == [b"b1", b"b2"]


def test_reassembler_expire() -> None:
    r = Reassembler(timeout=60)
    r.add("k", Concat(1, 3, 1), b"a", now=100)
    r.add("k", Concat(1, 3, 3), b"c", now=110)
    r.add("j", Concat(5, 2, 2), b"y", now=130)
    assert r.expire(now=160) == []
    assert r.expire(now=161) == [("k", 1, {1: b"a", 3: b"c"})]
    assert len(r) == 1
    assert r.expire(now=1000) == [("j", 5, {2: b"y"})]
    assert len(r) == 0
    # a part arriving after its set expired starts over
    assert r.add("k", Concat(1, 3, 2), b"b", now=1001) is None


def test_a_set_begun_later_than_the_clock_holds_up_no_other_sets_expiry() -> None:
    """A simulated clock set back: the set begun at 1000 was the oldest in arrival order, and expire() stopped at
    it, so no set begun after it timed out until the clock passed 1060."""
    r = Reassembler(timeout=60)
    r.add("early", Concat(1, 2, 1), b"a", now=1000)
    assert r.expire(now=400) == []  # set back to 400: the set counts as begun at 400
    r.add("k", Concat(2, 2, 1), b"b", now=400)
    assert r.expire(now=461) == [("early", 1, {1: b"a"}), ("k", 2, {1: b"b"})]


def test_a_set_timed_out_before_expire_ran_is_taken_for_the_part_that_comes_late() -> None:
    r = Reassembler(timeout=60)
    r.add("k", Concat(1, 3, 1), b"a", now=0)
    r.add("k", Concat(1, 2, 1), b"x", now=30)
    assert r.take_timed_out("k", Concat(1, 3, 2), now=60) is None  # on time: it joins
    assert r.take_timed_out("k", Concat(1, 3, 3), now=61) == {1: b"a"}
    assert r.add("k", Concat(1, 3, 3), b"c", now=61) is None  # a new set of its own
    assert r.take_timed_out("k", Concat(1, 2, 2), now=61) is None  # another total: another set, not timed out
    assert r.expire(now=121) == [("k", 1, {1: b"x"})]  # x's set; the new one, begun at 61, waits
    assert len(r) == 1


def test_reassembler_max_sets_evicts_oldest() -> None:
    dropped: list[tuple] = []
    r = Reassembler(max_sets=2, on_evict=lambda key, reference, bodies: dropped.append((key, reference, bodies)))
    r.add("k", Concat(1, 2, 1), b"a", now=0)
    r.add("k", Concat(2, 2, 1), b"b", now=1)
    r.add("k", Concat(3, 2, 1), b"c", now=2)
    assert len(r) == 2
    assert dropped == [("k", 1, {1: b"a"})]  # the caller hears of it, as of an expired set
    assert r.add("k", Concat(1, 2, 2), b"a2", now=3) is None  # set 1 was dropped
    assert dropped[-1] == ("k", 2, {1: b"b"})  # ... and the new set 1 took set 2's place
    assert r.add("k", Concat(3, 2, 2), b"c2", now=3) == [b"c", b"c2"]


def test_the_octets_held_are_bounded_as_the_sets_are() -> None:
    """Parts that take the octets held over max_octets end the oldest set of the owner with the most, as a set too
    many does; a copy sent again counts once, and a set that ends, whole or not, counts no more."""
    evicted = []
    r = Reassembler(max_octets=10, on_evict=lambda key, reference, bodies: evicted.append((key, reference)))
    assert r.add("victim", Concat(9, 2, 1), b"vv", now=0, owner="v") is None
    assert r.add("g", Concat(1, 2, 1), b"gggg", now=0, owner="g") is None
    assert r.add("g", Concat(1, 2, 1), b"ggg", now=0, owner="g") is None  # (in place of the first copy)
    assert r.octets == 5 and not evicted
    assert r.add("g", Concat(2, 3, 1), b"hhh", now=0, owner="g") is None
    assert r.add("g", Concat(2, 3, 2), b"hhh", now=0, owner="g") is None  # 11: g's oldest goes
    assert evicted == [("g", 1)] and r.octets == 8
    assert r.add("victim", Concat(9, 2, 2), b"w", now=0, owner="v") == [b"vv", b"w"]
    assert r.octets == 6
    assert r.add("g", Concat(2, 3, 3), b"x" * 20, now=0, owner="g") == [b"hhh", b"hhh", b"x" * 20]  # whole: none held
    assert r.add("g", Concat(3, 2, 1), b"x" * 20, now=0, owner="g") is None  # more than all: itself goes
    assert evicted == [("g", 1), ("g", 3)] and r.octets == 0 and len(r) == 0



def test_as_many_sets_end_as_it_takes_to_hold_max_octets_again() -> None:
    """A part larger than what the set ended first held ends the next one too, until the octets held are within
    max_octets: three small incomplete texts and a part of 9 octets (12 held, 10 allowed) end two of them."""
    evicted = []
    r = Reassembler(max_octets=10, on_evict=lambda key, reference, bodies: evicted.append((key, reference)))
    for reference, owner in enumerate("abc", 1):
        assert r.add(owner, Concat(reference, 2, 1), b"x", now=0, owner=owner) is None
    assert r.add("d", Concat(9, 2, 1), b"y" * 9, now=0, owner="d") is None
    assert evicted == [("a", 1), ("b", 2)]  # (the oldest first: none has more than one)
    assert r.octets == 10 and len(r) == 2

def test_reassembler_rejects_impossible_concat() -> None:
    with pytest.raises(ValueError):
        Reassembler().add("k", Concat(1, 2, 3), b"", now=0)


# --- the whole way round ----------------------------------------------------

any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=600)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS + GSM_EXTENSION * 3), max_size=1200)
latin1_text = st.text(alphabet=st.characters(max_codepoint=0xFF, blacklist_categories=("Cs",)), max_size=800)


def receive(parts: list[Part], rnd: random.Random) -> bytes:
    """What a receiver does: parse each part, feed the reassembler in any order."""
    if len(parts) == 1:
        concat, body = concat_info(parts[0].esm_class, parts[0].short_message, parts[0].tlvs)
        assert concat is None
        return body
    arrivals = parts + rnd.sample(parts, k=2)  # some duplicates too
    rnd.shuffle(arrivals)
    r = Reassembler()
    for part in arrivals:
        concat, body = concat_info(part.esm_class, part.short_message, part.tlvs)
        assert concat is not None
        result = r.add(("src", "dst"), concat, body, now=0)
        if result is not None:
            # (duplicates still to come would start a new set; not our concern here)
            return b"".join(result)
    raise AssertionError("set never completed")


@pytest.mark.parametrize("scheme", list(ConcatScheme))
@given(text=st.one_of(any_text, gsm_text), reference=st.integers(0, 0xFFFF), rnd=st.randoms(use_true_random=False))
def test_round_trip_auto_coding(scheme: ConcatScheme, text: str, reference: int, rnd: random.Random) -> None:
    parts = segment_text(text, reference=reference, scheme=scheme)
    assert decode(receive(parts, rnd), parts[0].data_coding) == text


@pytest.mark.parametrize("scheme", list(ConcatScheme))
@given(text=latin1_text, rnd=st.randoms(use_true_random=False))
def test_round_trip_latin1(scheme: ConcatScheme, text: str, rnd: random.Random) -> None:
    parts = segment_text(text, data_coding=DataCoding.LATIN1, scheme=scheme)
    assert decode(receive(parts, rnd), DataCoding.LATIN1) == text


@pytest.mark.parametrize("scheme", UDH_SCHEMES + [ConcatScheme.SAR])
@given(text=st.one_of(any_text, gsm_text))
def test_parts_never_cut_a_character(scheme: ConcatScheme, text: str) -> None:
    parts = segment_text(text, scheme=scheme)
    data_coding = parts[0].data_coding
    for part in parts:
        body = concat_info(part.esm_class, part.short_message, part.tlvs)[1]
        # A cut character would decode to U+FFFD and not encode back the same.
        assert encode(decode(body, data_coding), data_coding) == body
    assert "".join(decode(body, data_coding) for body in bodies(parts)) == text


def test_an_owner_starting_sets_it_never_ends_pushes_out_only_its_own() -> None:
    evicted = []
    r = Reassembler(max_sets=5, max_per_owner=2, on_evict=lambda key, reference, bodies: evicted.append((key, reference)))
    assert r.add("victim", Concat(9, 2, 1), b"v", now=0, owner="v") is None
    for reference in range(10):
        assert r.add("greedy", Concat(reference, 2, 1), b"g", now=0, owner="g") is None
    assert evicted == [("greedy", n) for n in range(8)]  # its oldest each time: never the victim's
    assert len(r) == 3
    assert r.add("victim", Concat(9, 2, 2), b"w", now=0, owner="v") == [b"v", b"w"]


def test_when_every_set_is_taken_a_new_one_ends_the_oldest_of_the_owner_with_the_most() -> None:
    """All 10000 sets taken by first parts from many numbers (8 each) ended the oldest of anyone's: another
    subscriber's one long text waiting for its last part."""
    evicted = []
    r = Reassembler(max_sets=6, max_per_owner=3, on_evict=lambda key, reference, bodies: evicted.append((key, reference)))
    assert r.add("victim", Concat(9, 2, 1), b"v", now=0, owner="v") is None
    for owner in ("a", "b"):
        for reference in range(2):
            assert r.add(owner, Concat(reference, 2, 1), b"s", now=0, owner=owner) is None
    assert r.add("c", Concat(0, 2, 1), b"s", now=0, owner="c") is None  # all 6 taken
    assert r.add("d", Concat(0, 2, 1), b"s", now=0, owner="d") is None
    assert r.add("e", Concat(0, 2, 1), b"s", now=0, owner="e") is None
    assert evicted == [("a", 0), ("b", 0)] and len(r) == 6  # a and b had two each; then b had two, a one
    assert r.add("victim", Concat(9, 2, 2), b"w", now=0, owner="v") == [b"v", b"w"]
    assert r.add("a", Concat(1, 2, 2), b"t", now=0, owner="a") == [b"s", b"t"]  # a's other one still waited
    evicted.clear()
    ties = Reassembler(max_sets=3, max_per_owner=3, on_evict=r.on_evict)  # one each: the oldest of all, whoever had more before
    for owner, reference, now in (("y", 1, 0), ("y", 2, 1), ("x", 1, 2)):
        ties.add(owner, Concat(reference, 2, 1), b"s", now=now, owner=owner)
    assert ties.add("y", Concat(2, 2, 2), b"t", now=3, owner="y") == [b"s", b"t"]  # y back to one: its is the oldest
    for owner, now in (("z", 4), ("w", 5)):
        ties.add(owner, Concat(1, 2, 1), b"s", now=now, owner=owner)
    assert evicted == [("y", 1)] and ties.add("x", Concat(1, 2, 2), b"t", now=6, owner="x") == [b"s", b"t"]  # y's ended
    evicted.clear()
    unowned = Reassembler(max_sets=1, on_evict=r.on_evict)  # (no owners: the oldest of all)
    assert unowned.add("k", Concat(1, 2, 1), b"x", now=0) is None and unowned.add("k", Concat(2, 2, 1), b"y", now=0) is None
    assert evicted == [("k", 1)]


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3), st.integers(1, 2), st.integers(0, 9)), max_size=60))
def test_room_is_taken_from_an_owner_with_the_most_whatever_the_order(parts) -> None:
    counts_at_eviction: list[tuple[int, int]] = []
    r: Reassembler = Reassembler(timeout=5, max_sets=5, max_per_owner=3)

    def owned() -> dict:
        return {owner: len(sets) for owner, sets in r._owned.items()}

    r.on_evict = lambda key, reference, bodies: counts_at_eviction.append((before[key], max(before.values())))
    for owner, reference, seqnum, now in sorted(parts, key=lambda part: part[3]):
        r.expire(now)
        before = owned()
        r.add(owner, Concat(reference, 2, seqnum), b"x", now=now, owner=owner)
        assert r._most == max(owned().values(), default=0) and len(r) <= 5
    assert all(count in (most, 3) or most == 1 for count, most in counts_at_eviction)  # own at 3, else the most's


# --- sar_* and port TLVs into a UDH, for a receiver of SMPP 3.3 ----------------------------------------------

SAR_300_OF_2_1 = {Tag.SAR_MSG_REF_NUM: 300, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 1}


@pytest.mark.parametrize("septets", [152, 153, 1])
def test_a_reference_above_255_goes_in_the_8_bit_element_whatever_the_parts_length(septets):
    """A full part (153 septets, cut for the 8-bit element) has no room for the 16-bit one, a shorter part did:
    the parts of one text got references 44 and 300, two texts to the receiver, neither whole."""
    body = b"a" * septets
    assert with_tlvs_in_udh(body, 0, SAR_300_OF_2_1) == bytes.fromhex("05 00 03 2c 02 01") + body


def test_tlvs_a_udh_already_says_are_not_added_again_and_nothing_new_leaves_the_text_as_it_is():
    udhi = int(EsmClass.UDHI)
    concatenated = bytes.fromhex("05 00 03 07 02 01") + b"text"
    assert with_tlvs_in_udh(concatenated, udhi, SAR_300_OF_2_1) is concatenated
    with_ports = bytes.fromhex("06 05 04 0b84 23f0") + b"push"
    assert with_tlvs_in_udh(with_ports, udhi, {Tag.DESTINATION_PORT: 80}) is with_ports
    assert with_tlvs_in_udh(b"plain", 0, {Tag.USER_MESSAGE_REFERENCE: 5}) == b"plain"
    broken = bytes.fromhex("09 00 03") + b"x"  # its length runs past the text: left as it came
    assert with_tlvs_in_udh(broken, udhi, {Tag.DESTINATION_PORT: 80}) is broken
