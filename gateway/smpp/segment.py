"""Splitting long text into SMS parts and putting received parts back together (sans-IO).

Concatenation is signalled either in a User Data Header (3GPP TS 23.040
section 9.2.3.24.1 for 8-bit references, 9.2.3.24.8 for 16-bit ones) with
esm_class UDHI set, or with the SMPP sar_* TLVs (SMPP 3.4 section 5.3.2.22-24),
or not at all by sending everything in one message_payload TLV.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from gateway.smpp.constants import DataCoding, EsmClass, Tag
from gateway.smpp.text import Alphabet, alphabet, choose_coding, encode

__all__ = [
    "Concat",
    "ConcatScheme",
    "Part",
    "Reassembler",
    "TextTooLong",
    "concat_info",
    "parse_udh",
    "segment_text",
    "sms_on_air",
    "with_tlvs_in_udh",
]

SMS_OCTETS = 140  # user data of one SMS
MAX_PARTS = 255  # the total-parts field is one octet in both UDH and SAR
MAX_PAYLOAD = 0xFFFF  # message_payload length is a 16-bit TLV length


class TextTooLong(ValueError):
    """A text no SMS can carry: more than MAX_PARTS parts (or MAX_PAYLOAD octets in one message_payload)."""


IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08
IEI_PORTS_8 = 0x04  # application port addressing, 8-bit ports (TS 23.040 9.2.3.24.3)
IEI_PORTS_16 = 0x05  # application port addressing, 16-bit ports (TS 23.040 9.2.3.24.4)


class ConcatScheme(Enum):
    UDH8 = "udh8"  # UDH IEI 0x00, 8-bit reference
    UDH16 = "udh16"  # UDH IEI 0x08, 16-bit reference
    SAR = "sar"  # sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs
    PAYLOAD = "payload"  # the whole text in one message_payload TLV


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm / deliver_sm worth of message: the fields that carry the text."""

    short_message: bytes
    esm_class: int
    data_coding: int
    tlvs: dict[int, int | bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Concat:
    """Where a part belongs: set reference, number of parts, this part's 1-based number, and where the reference
    came from. An 8-bit reference, a 16-bit one and a sar_msg_ref_num are three separate numberings (a handset
    may use 5 in two of them for two texts at once), so callers keep parts apart by `scheme` too."""

    reference: int
    total: int
    seqnum: int
    scheme: ConcatScheme = ConcatScheme.UDH8


# Octets of concatenation header each part leaves room for. A sar_* part carries none itself, but the SMSC puts
# the same 8-bit reference UDH on the air (6 octets), so it is cut as small as a UDH8 part: 153 septets,
# 134 octets, 67 UCS2 characters (a 160-septet sar_* part does not fit one SMS).
_UDH_LENGTH = {ConcatScheme.UDH8: 6, ConcatScheme.UDH16: 7, ConcatScheme.SAR: 6}


def segment_text(
    text: str,
    *,
    data_coding: int | None = None,
    reference: int = 0,
    scheme: ConcatScheme = ConcatScheme.UDH8,
) -> list[Part]:
    """Encode text and split it into as many parts as it needs.

    Text that fits one SMS (160 GSM septets, 140 octets, 70 UCS2 code units)
    is always a single plain part, whatever the scheme.  reference is
    reduced modulo 256 for UDH8 and 65536 for UDH16 / SAR, so callers can
    pass a running counter.  Raises UnencodableText if data_coding can't
    carry the text, TextTooLong if it needs more than 255 parts (or more
    than 65535 octets for PAYLOAD).
    """
    if data_coding is None:
        data_coding = choose_coding(text)
    data = encode(text, data_coding)
    kind = alphabet(data_coding)

    if len(data) <= _capacity(kind, 0):
        return [Part(data, 0, data_coding)]

    if scheme is ConcatScheme.PAYLOAD:
        if len(data) > MAX_PAYLOAD:
            raise TextTooLong(f"{len(data)} octets do not fit a message_payload TLV")
        return [Part(b"", 0, data_coding, {Tag.MESSAGE_PAYLOAD: data})]

    chunks = _split(data, kind, _capacity(kind, _UDH_LENGTH[scheme]))
    total = len(chunks)
    if total > MAX_PARTS:
        raise TextTooLong(f"text needs {total} parts, at most {MAX_PARTS} are possible")

    if scheme is ConcatScheme.SAR:
        ref = reference & 0xFFFF
        return [
            Part(
                chunk,
                0,
                data_coding,
                {Tag.SAR_MSG_REF_NUM: ref, Tag.SAR_TOTAL_SEGMENTS: total, Tag.SAR_SEGMENT_SEQNUM: seq},
            )
            for seq, chunk in enumerate(chunks, 1)
        ]

    sixteen_bit = scheme is ConcatScheme.UDH16
    element = _concat_element(reference & (0xFFFF if sixteen_bit else 0xFF), total, sixteen_bit)
    head = bytes((len(element) + 1,)) + element  # the UDH's length counts each part's seqnum octet, added below
    return [Part(head + bytes((seq,)) + chunk, int(EsmClass.UDHI), data_coding) for seq, chunk in enumerate(chunks, 1)]


def _concat_element(reference: int, total: int, sixteen_bit: bool) -> bytes:
    """A concatenation IE without its last octet (the part's seqnum)."""
    if not sixteen_bit:
        return bytes((IEI_CONCAT_8, 3, reference, total))
    return bytes((IEI_CONCAT_16, 4, reference >> 8, reference & 0xFF, total))


def with_tlvs_in_udh(short_message: bytes, esm_class: int, tlvs: dict[int, int | bytes]) -> bytes:
    """short_message with what its sar_* and source_port/destination_port TLVs say in its UDH (one added, or the
    elements joined to the one it has), as the SMSC puts it on the air, for a receiver that takes no optional
    parameters (SMPP 3.3); as it is when they say nothing its UDH does not. The caller sets UDHI.

    The concatenation element is the 8-bit one, with the reference's low octet when it is above 255: parts are cut
    for it (_UDH_LENGTH), so a full part has no room for the 16-bit one, and every part of a text must carry the
    same element and reference (each part is converted on its own, not knowing how long the others are)."""
    head, text, present = b"", short_message, frozenset[int]()
    if esm_class & _UDHI and short_message:
        udh_end = 1 + short_message[0]
        elements = _elements(short_message[1:udh_end]) if udh_end <= len(short_message) else None
        if elements is None:  # a UDH that does not add up: left as it came
            return short_message
        head, text, present = short_message[1:udh_end], short_message[udh_end:], frozenset(iei for iei, _ in elements)
    added = b""
    if Tag.DESTINATION_PORT in tlvs and not present & {IEI_PORTS_8, IEI_PORTS_16}:
        ports = (_as_int(tlvs[Tag.DESTINATION_PORT]), _as_int(tlvs.get(Tag.SOURCE_PORT, 0)))
        added = bytes((IEI_PORTS_16, 4)) + b"".join(port.to_bytes(2, "big") for port in ports)
    concat = None if present & {IEI_CONCAT_8, IEI_CONCAT_16} else concat_info(0, b"", tlvs)[0]
    if concat is not None:
        added = _concat_element(concat.reference & 0xFF, concat.total, False) + bytes((concat.seqnum,)) + added
    if not added:
        return short_message
    head += added
    return bytes((len(head),)) + head + text


def _elements(header: bytes) -> list[tuple[int, bytes]] | None:
    """The information elements of a UDH (without its length octet); None when their lengths do not add up."""
    elements = []
    pos = 0
    while pos < len(header):
        if pos + 2 > len(header):
            return None
        iei, length = header[pos], header[pos + 1]
        pos += 2 + length
        if pos > len(header):
            return None
        elements.append((iei, header[pos - length : pos]))
    return elements


def _capacity(kind: Alphabet, udh_octets: int) -> int:
    """Octets of encoded text (septets for GSM, in SMPP's unpacked form) one part holds."""
    free = SMS_OCTETS - udh_octets
    if kind is Alphabet.GSM7:
        # The UDH is padded to a septet boundary, so whole septets only.
        return free * 8 // 7
    if kind is Alphabet.UCS2:
        return free - free % 2
    return free


def _split(data: bytes, kind: Alphabet, size: int) -> list[bytes]:
    """Cut data into chunks of at most size octets, never inside a character."""
    chunks = []
    start = 0
    end_of_data = len(data)
    while start < end_of_data:
        end = min(start + size, end_of_data)
        if end < end_of_data:
            if kind is Alphabet.GSM7 and data[end - 1] == 0x1B:
                # An escape whose extension septet would land in the next part.
                # (0x1B is never an extension septet, so this is always a lead.)
                end -= 1
            elif kind is Alphabet.UCS2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2  # high surrogate: keep the pair together
        chunks.append(data[start:end])
        start = end
    return chunks


_UDHI = int(EsmClass.UDHI)  # a plain int: IntFlag `&` runs Python code, and every MO is looked at
# Read from the module, not the Enum classes: each class attribute read goes through EnumType.__getattr__ (CPython 3.11).
_UDH8, _UDH16, _SAR = ConcatScheme.UDH8, ConcatScheme.UDH16, ConcatScheme.SAR
_MESSAGE_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)
_SAR_REF, _SAR_TOTAL, _SAR_SEQNUM = int(Tag.SAR_MSG_REF_NUM), int(Tag.SAR_TOTAL_SEGMENTS), int(Tag.SAR_SEGMENT_SEQNUM)
_SAR_TAGS = frozenset((_SAR_REF, _SAR_TOTAL, _SAR_SEQNUM))


def parse_udh(esm_class: int, short_message: bytes) -> tuple[Concat | None, bytes]:
    """Split a UDH off short_message and find its concatenation IE.

    Without UDHI the message is returned as is.  A UDH that does not add up
    (lengths running past the end) gives (None, short_message): better to
    show the raw octets than to drop the message.  A concatenation IE with
    impossible numbers is ignored, as TS 23.040 9.2.3.24.1 asks.
    """
    if not esm_class & _UDHI or not short_message:
        return None, short_message
    udh_end = 1 + short_message[0]
    if udh_end > len(short_message):
        return None, short_message
    concat = None
    pos = 1
    while pos < udh_end:  # (as _elements does, without its list: this runs for every part received)
        if pos + 2 > udh_end:
            return None, short_message
        iei, length = short_message[pos], short_message[pos + 1]
        value = short_message[pos + 2 : pos + 2 + length]
        pos += 2 + length
        if pos > udh_end:
            return None, short_message
        # A repeated IE: the last one counts (TS 23.040 9.2.3.24).
        if iei == IEI_CONCAT_8 and length == 3:
            concat = _valid(value[0], value[1], value[2], _UDH8) or concat
        elif iei == IEI_CONCAT_16 and length == 4:
            concat = _valid((value[0] << 8) | value[1], value[2], value[3], _UDH16) or concat
    return concat, short_message[udh_end:]


def concat_info(esm_class: int, short_message: bytes, tlvs: dict[int, int | bytes]) -> tuple[Concat | None, bytes]:
    """Concatenation data from a UDH or, failing that, the sar_* TLVs, and the body.

    When short_message is empty and a message_payload TLV is present, the
    payload is the message (SMPP 3.4 5.2.22) and is what gets parsed.
    TLV values may be ints or the raw big-endian octets.
    """
    payload = tlvs.get(_MESSAGE_PAYLOAD)
    if not short_message and isinstance(payload, bytes):
        short_message = payload
    concat, body = parse_udh(esm_class, short_message)
    if concat is not None:
        return concat, body
    if not tlvs.keys() >= _SAR_TAGS:  # all three (asked: a KeyError caught cost more, and most MOs have no TLV at all)
        return None, body
    return _valid(_as_int(tlvs[_SAR_REF]), _as_int(tlvs[_SAR_TOTAL]), _as_int(tlvs[_SAR_SEQNUM]), _SAR), body


def _as_int(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _valid(reference: int, total: int, seqnum: int, scheme: ConcatScheme) -> Concat | None:
    if total < 1 or not 1 <= seqnum <= total:
        return None
    return Concat(reference, total, seqnum, scheme)


Body = TypeVar("Body")  # what the caller keeps of a part: its octets, or with its data_coding too


@dataclass(slots=True)
class _PartialSet(Generic[Body]):
    started: float
    total: int
    bodies: dict[int, Body]
    owner: Hashable = None  # who sent it (add's `owner`), for max_per_owner
    octets: int = 0  # in its bodies (the Reassembler's `octets`)


class Reassembler(Generic[Body]):
    """Collects the parts of concatenated messages until each set is complete.

    Sans-IO: the caller passes the current time (use time.monotonic()) and
    calls expire() now and then.  A set is identified by the caller's key
    (e.g. the source and destination addresses, and the part's Concat.scheme:
    its numbering of references), the reference and the
    total number of parts; a reused reference with a different total starts
    a separate set rather than mixing parts of two messages. Room is kept
    per owner too (`max_per_owner` sets), so that one sender starting sets
    it never ends pushes out only its own, not everyone's; and when all
    `max_sets` are taken, a new set ends the oldest of an owner with the most
    (a sender starting sets from many numbers ends theirs, not the others'),
    the oldest of all when none has more than one. So does a part that takes
    the octets held in all sets over `max_octets`, as often as it takes: a
    sender of parts 60,000 octets long, within the count, held 120 MB per
    subscriber (the longest real text, 255 SMS, is under 41,000 octets).
    """

    def __init__(
        self, timeout: float = 60.0, max_sets: int = 10000,
        on_evict: Callable[[Hashable, int, dict[int, Body]], None] | None = None, max_per_owner: int = 8,
        max_octets: int = 64 << 20, octets: Callable[[Body], int] = len,  # type: ignore[assignment]
    ) -> None:  # fmt: skip
        """`on_evict(key, reference, {seqnum: body})`: told of each incomplete set dropped for room, as expire()
        reports the ones that timed out. `octets(body)`: what a part counts against `max_octets`."""
        self.timeout = timeout
        self.max_sets = max_sets
        self.max_per_owner = max_per_owner
        self.max_octets = max_octets
        self._octets_of = octets
        self.octets = 0  # in the bodies of all sets
        self._owned: dict[Hashable, list[tuple[Hashable, int, int]]] = {}  # owner -> its sets, oldest first
        self._owners_with: dict[int, dict[Hashable, None]] = {}  # n -> the owners with n sets, first to reach n first
        self._most = 0  # the most sets an owner has
        self.on_evict = on_evict
        # Ordered by the arrival of each set's first part, so expire() and
        # eviction only ever look at the oldest end.  OrderedDict rather than
        # dict: taking its first item stays O(1) after many deletions.
        self._sets: OrderedDict[tuple[Hashable, int, int], _PartialSet[Body]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, key: Hashable, concat: Concat, body: Body, now: float, owner: Hashable = None) -> list[Body] | None:
        """Store one part; return all bodies in order once the set is complete, else None.

        A second copy of a part already held replaces it (a sender's retransmission: one part, kept once).
        """
        if concat.total < 1 or not 1 <= concat.seqnum <= concat.total:
            raise ValueError(f"invalid concatenation data {concat}")
        if concat.total == 1:
            return [body]
        set_id = (key, concat.reference, concat.total)
        partial = self._sets.get(set_id)
        if partial is None:
            owned = self._owned.get(owner, ())
            if len(owned) >= self.max_per_owner:
                self._evict(owned[0])  # the owner's oldest
            elif len(self._sets) >= self.max_sets:
                self._evict(self._victim())
            partial = self._sets[set_id] = _PartialSet(now, concat.total, {}, owner)
            if owner is not None:
                owned = self._owned.setdefault(owner, [])
                owned.append(set_id)
                self._recount(owner, len(owned) - 1, len(owned))
        earlier = partial.bodies.get(concat.seqnum)
        octets = self._octets_of(body) - (0 if earlier is None else self._octets_of(earlier))
        partial.bodies[concat.seqnum] = body
        partial.octets += octets
        self.octets += octets
        if len(partial.bodies) < partial.total:
            while self.octets > self.max_octets:  # (this very set, if it is the victim: its part is held no more)
                self._evict(self._victim())
            return None
        self._remove(set_id)
        return [partial.bodies[seq] for seq in range(1, partial.total + 1)]

    def incomplete(self, key: Hashable) -> list[tuple[int, int, list[int]]]:
        """(reference, total, seqnums held) of each incomplete set of `key`, oldest first. It looks at every set: for a
        receiver that gave up waiting for a message, not for each part."""
        return [(reference, partial.total, sorted(partial.bodies))
                for (k, reference, _total), partial in self._sets.items() if k == key]  # fmt: skip

    def take_timed_out(self, key: Hashable, concat: Concat, now: float) -> dict[int, Body] | None:
        """The parts held of the set this part belongs to, removed, if that set timed out by `now`; else None.

        For a part that comes after its set's timeout but before expire() ran (it runs now and then; a simulated
        clock may have jumped on since): ask before add(), and the part begins a new set instead of joining
        one already given up on, as it would have had expire() just run.
        """
        set_id = (key, concat.reference, concat.total)
        partial = self._sets.get(set_id)
        if partial is None or now - partial.started <= self.timeout:
            return None
        return self._remove(set_id).bodies

    def _victim(self) -> tuple[Hashable, int, int]:
        """The set to end for room: the oldest of an owner with the most; of all, if none has more than one."""
        greedy = next(iter(self._owners_with[self._most])) if self._most > 1 else None
        return self._owned[greedy][0] if greedy is not None else next(iter(self._sets))

    def _evict(self, set_id: tuple[Hashable, int, int]) -> None:
        dropped = self._remove(set_id)
        if self.on_evict is not None:
            key, reference, _total = set_id
            self.on_evict(key, reference, dropped.bodies)

    def _remove(self, set_id: tuple[Hashable, int, int]) -> _PartialSet[Body]:
        partial = self._sets.pop(set_id)
        self.octets -= partial.octets
        if partial.owner is not None:
            owned = self._owned[partial.owner]
            owned.remove(set_id)  # at most max_per_owner long
            self._recount(partial.owner, len(owned) + 1, len(owned))
            if not owned:
                del self._owned[partial.owner]
        return partial

    def _recount(self, owner: Hashable, before: int, after: int) -> None:
        """`owner` has `after` sets instead of `before` (one more or one fewer)."""
        if before:
            owners = self._owners_with[before]
            del owners[owner]
            if not owners:
                del self._owners_with[before]
                if self._most == before:
                    self._most = after  # (one fewer: this owner has that many now, or nobody has any)
        if after:
            self._owners_with.setdefault(after, {})[owner] = None
            self._most = max(self._most, after)

    def expire(self, now: float) -> list[tuple[Hashable, int, dict[int, Body]]]:
        """Drop the incomplete sets whose first part came more than timeout ago.

        Returns (key, reference, {seqnum: body}) for each, so the caller can
        log them or deliver what arrived. A set begun later than `now` (a
        simulated clock set back since) counts as begun now: it held up the
        expiry of every set begun after it.
        """
        expired = []
        while self._sets:
            set_id, partial = next(iter(self._sets.items()))
            if partial.started > now:
                partial.started = now
                self._sets.move_to_end(set_id)  # the order by start holds again
                continue
            if now - partial.started <= self.timeout:
                break  # the rest started later still
            self._remove(set_id)
            key, reference, _total = set_id
            expired.append((key, reference, partial.bodies))
        return expired


def sms_filled(body_with_udh: bytes, data_coding: int) -> int:
    """How many SMS a body that begins with its own UDH fills on the air. One if its text fits after the UDH (GSM
    septets packed after it: 6 octets and 153 septets, a part as cut for an 8-bit reference, are one SMS); else
    as many as its text needs with that UDH in every one, plus an 8-bit concatenation element if it has none
    (5 octets): never fewer than the same text without a UDH (parts_needed)."""
    kind = _counted_as(data_coding)
    udh = 1 + body_with_udh[0] if body_with_udh else 0
    elements = _elements(body_with_udh[1:udh]) if udh <= len(body_with_udh) else None
    if elements is None:  # a UDH that does not add up: all of it counts as text
        return parts_needed(len(body_with_udh), data_coding)
    text = len(body_with_udh) - udh
    if text <= _capacity(kind, udh):
        return 1
    concatenated = any(iei in (IEI_CONCAT_8, IEI_CONCAT_16) for iei, _ in elements)
    room = _capacity(kind, udh if concatenated else udh + _UDH_LENGTH[ConcatScheme.UDH8] - 1)
    return -(-text // room) if room > 0 else parts_needed(len(body_with_udh), data_coding)  # (a UDH filling the SMS)


def sms_on_air(body: bytes, esm_class: int, data_coding: int, tlvs: dict[int, int | bytes] | None) -> int:
    """How many SMS a message fills on the air: with the UDH it has, and what its sar_* and port TLVs say put in it
    as the SMSC does (with_tlvs_in_udh), counted as any part with its own UDH (sms_filled): a sar_* part of 154-160
    GSM septets, or 135-140 octets, is two SMS, as it is with that UDH written by the client."""
    if tlvs:
        with_udh = with_tlvs_in_udh(body, esm_class, tlvs)
        if with_udh is not body:
            return sms_filled(with_udh, data_coding)
    if esm_class & _UDHI:
        return sms_filled(body, data_coding)
    return parts_needed(len(body), data_coding)


def _counted_as(data_coding: int) -> Alphabet:
    """The alphabet that counts an SMS's room for this data_coding: IA5 (0x01) is 7-bit, sent as GSM septets
    (160 characters to an SMS), though read and written as ASCII here (text.alphabet)."""
    return Alphabet.GSM7 if data_coding == DataCoding.IA5 else alphabet(data_coding)


def parts_needed(encoded_length: int, data_coding: int) -> int:
    """How many SMS an encoded body of this length costs (UDH8 concatenation beyond one)."""
    kind = _counted_as(data_coding)
    single = _capacity(kind, 0)
    if encoded_length <= single:
        return 1
    per_part = _capacity(kind, 6)
    return -(-encoded_length // per_part)
