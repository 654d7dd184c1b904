"""Optional parameters (TLVs): the standard tags' value types and their codec.

Integer TLVs decode to int, C-string TLVs to str, everything else to bytes.
Unknown (vendor) tags stay raw bytes so they pass through byte for byte.

A tag may come more than once only where that has a meaning: an unknown tag
(SMPP 3.4 says nothing of what a vendor's tag carries, so a list of values
must arrive as sent) and the callback number TLVs (5.3.2.36-38: a TDMA
handset takes several callback numbers). Such a tag holds a list of its values
in the order they came. Any other standard tag twice is refused: which value
was meant cannot be told, and keeping one would drop the other unseen.
"""

from __future__ import annotations

from .constants import CommandStatus, Tag

INT, CSTR, OCTETS = 0, 1, 2

# tag -> (kind, min length, max length); INT lengths are exact.
SPEC: dict[int, tuple[int, int, int]] = {
    Tag.DEST_ADDR_SUBUNIT: (INT, 1, 1),
    Tag.DEST_NETWORK_TYPE: (INT, 1, 1),
    Tag.DEST_BEARER_TYPE: (INT, 1, 1),
    Tag.DEST_TELEMATICS_ID: (INT, 2, 2),
    Tag.SOURCE_ADDR_SUBUNIT: (INT, 1, 1),
    Tag.SOURCE_NETWORK_TYPE: (INT, 1, 1),
    Tag.SOURCE_BEARER_TYPE: (INT, 1, 1),
    Tag.SOURCE_TELEMATICS_ID: (INT, 1, 1),
    Tag.QOS_TIME_TO_LIVE: (INT, 4, 4),
    Tag.PAYLOAD_TYPE: (INT, 1, 1),
    Tag.ADDITIONAL_STATUS_INFO_TEXT: (CSTR, 1, 256),
    Tag.RECEIPTED_MESSAGE_ID: (CSTR, 1, 65),
    Tag.MS_MSG_WAIT_FACILITIES: (INT, 1, 1),
    Tag.PRIVACY_INDICATOR: (INT, 1, 1),
    Tag.SOURCE_SUBADDRESS: (OCTETS, 2, 23),
    Tag.DEST_SUBADDRESS: (OCTETS, 2, 23),
    Tag.USER_MESSAGE_REFERENCE: (INT, 2, 2),
    Tag.USER_RESPONSE_CODE: (INT, 1, 1),
    Tag.SOURCE_PORT: (INT, 2, 2),
    Tag.DESTINATION_PORT: (INT, 2, 2),
    Tag.SAR_MSG_REF_NUM: (INT, 2, 2),
    Tag.LANGUAGE_INDICATOR: (INT, 1, 1),
    Tag.SAR_TOTAL_SEGMENTS: (INT, 1, 1),
    Tag.SAR_SEGMENT_SEQNUM: (INT, 1, 1),
    Tag.SC_INTERFACE_VERSION: (INT, 1, 1),
    Tag.CALLBACK_NUM_PRES_IND: (INT, 1, 1),
    Tag.CALLBACK_NUM_ATAG: (OCTETS, 0, 65),
    Tag.NUMBER_OF_MESSAGES: (INT, 1, 1),
    Tag.CALLBACK_NUM: (OCTETS, 4, 19),
    Tag.DPF_RESULT: (INT, 1, 1),
    Tag.SET_DPF: (INT, 1, 1),
    Tag.MS_AVAILABILITY_STATUS: (INT, 1, 1),
    Tag.NETWORK_ERROR_CODE: (OCTETS, 3, 3),
    Tag.MESSAGE_PAYLOAD: (OCTETS, 0, 65535),
    Tag.DELIVERY_FAILURE_REASON: (INT, 1, 1),
    Tag.MORE_MESSAGES_TO_SEND: (INT, 1, 1),
    Tag.MESSAGE_STATE: (INT, 1, 1),
    Tag.USSD_SERVICE_OP: (INT, 1, 1),
    Tag.DISPLAY_TIME: (INT, 1, 1),
    Tag.SMS_SIGNAL: (INT, 2, 2),
    Tag.MS_VALIDITY: (INT, 1, 1),
    Tag.ALERT_ON_MESSAGE_DELIVERY: (OCTETS, 0, 0),
    Tag.ITS_REPLY_TYPE: (INT, 1, 1),
    Tag.ITS_SESSION_INFO: (INT, 2, 2),
}


# The standard tags that may repeat (see above); every unknown tag may too.
REPEATABLE = frozenset({Tag.CALLBACK_NUM, Tag.CALLBACK_NUM_PRES_IND, Tag.CALLBACK_NUM_ATAG})

# The most optional parameters read from one PDU: a request with more is refused, a response taken without them.
# SMPP 3.4 defines 44 tags (SPEC), and clients send a handful. Each costs Python work wherever the message's TLVs
# are read (intake, its MO's handling, its deliver_sm): 16,000 empty ones in a 64 KB submit_sm held the event loop
# ~18 ms, and one bind sending 100 a second made every other bind's enquire_link wait 150 ms.
MAX_TLVS = 128
# `most` for the TLVs of a stored message, read back: they were checked when it came, and a row stored before the
# cap (a stuffed PDU an earlier version took) must still go out, or end, rather than fail where it is read.
STORED = 1 << 62

TlvValue = int | str | bytes | list  # list: the values of a tag that came more than once, in order


class TlvError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_tlvs(body: bytes, pos: int, end: int, refuse_repeats: bool = True, most: int = MAX_TLVS) -> dict[int, TlvValue]:
    """Read TLVs from body[pos:end]. `refuse_repeats` False (a response): a standard tag that may not repeat
    keeps its last value, where a request with it is refused. More than `most` are refused (TlvError)."""
    tlvs: dict[int, TlvValue] = {}
    spec = SPEC
    left = most
    while pos < end:
        if not left:
            raise TlvError(CommandStatus.ESME_RINVOPTPARSTREAM, f"more than {MAX_TLVS} TLVs")
        left -= 1
        if end - pos < 4:
            raise TlvError(CommandStatus.ESME_RINVOPTPARSTREAM, "truncated TLV header")
        tag = (body[pos] << 8) | body[pos + 1]
        length = (body[pos + 2] << 8) | body[pos + 3]
        pos += 4
        if pos + length > end:
            raise TlvError(CommandStatus.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} length {length} runs past the PDU")
        # Octet values, unknown tags, and C-strings without their NUL stay raw so they re-encode unchanged.
        value: int | str | bytes = body[pos : pos + length]
        pos += length
        kind_span = spec.get(tag)
        if kind_span is not None:
            kind, lo, hi = kind_span
            if not lo <= length <= hi:
                raise TlvError(CommandStatus.ESME_RINVPARLEN, f"TLV 0x{tag:04X} has length {length}, expected {lo}..{hi}")
            if kind == INT:
                value = int.from_bytes(value, "big")
            elif kind == CSTR and value[-1:] == b"\0" and b"\0" not in value[:-1]:
                value = value[:-1].decode("latin-1")
        if tag in tlvs:
            _repeated(tlvs, tag, value, refuse_repeats)
        else:
            tlvs[tag] = value
    return tlvs


def _repeated(tlvs: dict[int, TlvValue], tag: int, value: int | str | bytes, refuse: bool) -> None:
    """A tag seen before in the same PDU: its values become a list, or the PDU is refused (see the top)."""
    if tag in SPEC and tag not in REPEATABLE:
        if refuse:
            raise TlvError(CommandStatus.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} appears more than once; SMPP 3.4 gives it one value")
        tlvs[tag] = value
        return
    earlier = tlvs[tag]
    if isinstance(earlier, list):
        earlier.append(value)
    else:
        tlvs[tag] = [earlier, value]


def encode_tlvs(tlvs: dict[int, TlvValue]) -> bytes:
    out = bytearray()
    for tag, value in tlvs.items():
        if isinstance(value, int):
            spec = SPEC.get(tag)
            size = spec[1] if spec is not None and spec[0] == INT else _int_size(value)
            raw = value.to_bytes(size, "big")
        elif isinstance(value, str):
            raw = value.encode("latin-1") + b"\0"
        elif isinstance(value, list):  # a tag that came more than once goes out as often, in the same order
            out += b"".join(encode_tlvs({tag: one}) for one in value)
            continue
        else:
            raw = bytes(value)
        out += tag.to_bytes(2, "big") + len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def _int_size(value: int) -> int:
    return 1 if value < 0x100 else 2 if value < 0x10000 else 4
