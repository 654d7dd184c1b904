"""Text <-> short_message octets for the SMPP data_coding values (sans-IO).

GSM 03.38 text is handled in SMPP's *unpacked* form: one septet per octet,
which is what SMSCs exchange with data_coding 0.  The 7-bit packed form
(used on the air interface and by USSD peers) is available through
`pack_septets` / `unpack_septets`.

Tables are written from 3GPP TS 23.038, section 6.2.1 (default alphabet) and
6.2.1.1 (default alphabet extension table).
"""

from __future__ import annotations

import codecs
from enum import Enum
from itertools import groupby
from operator import itemgetter

from gateway.smpp.constants import DataCoding

__all__ = [
    "Alphabet",
    "UnencodableText",
    "alphabet",
    "choose_coding",
    "decode",
    "decode_parts",
    "encode",
    "is_gsm",
    "pack_septets",
    "septet_length",
    "unpack_septets",
    "units",
]

ESCAPE = 0x1B
_UNDEFINED = "\ufffe"  # "no mapping" marker understood by the charmap codec

# Default alphabet, septets 0x00..0x7F, 16 per row.  0x1B is the escape to
# the extension table, not a character, so it has no mapping of its own.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + _UNDEFINED + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128

# Extension table: the septet that follows an escape.  Every entry costs two
# septets on the wire.
_GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

# charmap decoding table: octets 0x80..0xFF are not septets, so they stay
# undefined (decoded as U+FFFD with errors="replace").
_GSM_DECODE_TABLE = _GSM_BASIC + _UNDEFINED * 128

# charmap encoding map.  CPython only builds its fast C EncodingMap (about
# 1 us for 160 characters, against 5 us for a dict) when the table starts
# with U+0000, so the table is permuted: NUL sits at 0x00 (and is rejected
# afterwards, it is not a GSM character), '@' moves to 0x80 and the
# extension characters get single-octet stand-ins from 0x81 up.  Both are
# put right with bytes.translate / bytes.replace, which cost next to nothing.
_AT_STANDIN = 0x80
_EXT_STANDINS = [(bytes((0x81 + i,)), bytes((ESCAPE, septet))) for i, septet in enumerate(_GSM_EXTENSION)]
_encode_table = list(_GSM_DECODE_TABLE)
_encode_table[0x00] = "\x00"
_encode_table[_AT_STANDIN] = "@"
for _standin, _pair in _EXT_STANDINS:
    _encode_table[_standin[0]] = _GSM_EXTENSION[_pair[1]]
_GSM_ENCODE_MAP = codecs.charmap_build("".join(_encode_table))
_AT_FIX = bytes.maketrans(bytes((_AT_STANDIN,)), b"\x00")

# What an escaped septet decodes to.  TS 23.038: an escape followed by a code
# the receiver does not know is shown as the default-alphabet character of
# that code; escape-escape is reserved for a future table and shown as space.
_GSM_ESCAPED = [_GSM_DECODE_TABLE[b] if _GSM_DECODE_TABLE[b] != _UNDEFINED else "\ufffd" for b in range(256)]
for _septet, _ch in _GSM_EXTENSION.items():
    _GSM_ESCAPED[_septet] = _ch
_GSM_ESCAPED[ESCAPE] = " "

_ESCAPE_BYTE = bytes((ESCAPE,))


class UnencodableText(ValueError):
    """A character of the text has no representation in the requested data_coding."""


class Alphabet(Enum):
    """How the octets of a data_coding are counted against the 140-octet SMS."""

    GSM7 = "gsm7"  # septets; 160 fit in one SMS
    OCTET = "octet"  # one octet per character; 140 fit
    UCS2 = "ucs2"  # UTF-16 code units of two octets; 70 fit


# Python codec for the single-octet data_coding values (SMPP 3.4 section 5.2.19).
_OCTET_CODECS = {
    DataCoding.IA5: "ascii",
    DataCoding.OCTET_UNSPECIFIED: "latin-1",
    DataCoding.LATIN1: "latin-1",
    DataCoding.OCTET_UNSPECIFIED_2: "latin-1",
    DataCoding.CYRILLIC: "iso8859-5",
    DataCoding.HEBREW: "iso8859-8",
    # The East Asian ones, as handsets and SMSCs send them (they were read as Latin-1: 안녕하세요 came out ¾È³çÇÏ¼¼¿ä).
    DataCoding.JIS: "shift_jis",  # JIS X 0208, in the Shift_JIS form Japanese networks use
    0x0A: "iso2022_jp",  # ISO-2022-JP
    0x0E: "euc_kr",  # KS C 5601
    # Reserved in SMPP 3.4; CMPP's Msg_Fmt 15 ("含GB汉字"), which China's SMS gateways (ISMG) carry into SMPP as is:
    # GBK, the superset of GB2312 handsets and SPs use (是 came out as Latin-1 ÊÇ, and declined an order).
    0x0F: "gbk",
}


def alphabet(data_coding: int) -> Alphabet:
    """The alphabet a data_coding value selects (`_alphabet`, looked up for an octet: it runs for every text)."""
    known = _ALPHABETS.get(data_coding)
    return known if known is not None else _alphabet(data_coding)


def _alphabet(data_coding: int) -> Alphabet:
    """The alphabet a data_coding value selects.

    Besides the plain SMPP values this understands the GSM 03.38 coding
    groups SMSCs pass through (0x10-0x1F general data coding with a message
    class, 0x40-0x5F the same marked for automatic deletion, 0xC0-0xEF
    message waiting, 0xF0-0xFF message class, e.g. 0xF0 for flash SMS).
    Anything else is treated as octets (0x20-0x3F, 0x60-0x7F: compressed).
    """
    if data_coding == DataCoding.DEFAULT:
        return Alphabet.GSM7
    if data_coding == DataCoding.UCS2:
        return Alphabet.UCS2
    group = data_coding & 0xF0
    if group in (0x10, 0x40, 0x50):  # GSM 03.38 4: bits 3-2 the alphabet (reserved 11: the default alphabet)
        return (Alphabet.GSM7, Alphabet.OCTET, Alphabet.UCS2, Alphabet.GSM7)[(data_coding >> 2) & 0x03]
    if group in (0xC0, 0xD0):
        return Alphabet.GSM7
    if group == 0xE0:
        return Alphabet.UCS2
    if group == 0xF0:
        return Alphabet.OCTET if data_coding & 0x04 else Alphabet.GSM7
    return Alphabet.OCTET


# An Enum class's attribute read goes through EnumType.__getattr__ (CPython 3.11): each costs more than the dict read.
_ALPHABETS = {data_coding: _alphabet(data_coding) for data_coding in range(256)}
_GSM7_ALPHABET, _UCS2_ALPHABET = Alphabet.GSM7, Alphabet.UCS2


def encode(text: str, data_coding: int) -> bytes:
    """Encode text as short_message octets; raise UnencodableText if it can't be carried."""
    kind = alphabet(data_coding)
    if kind is _GSM7_ALPHABET:
        return _encode_gsm(text)
    if kind is _UCS2_ALPHABET:
        codec = "utf-16-be"
    else:
        codec = _OCTET_CODECS.get(data_coding, "latin-1")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        raise UnencodableText(_unencodable_message(text, exc.start, data_coding)) from None


def decode(data: bytes, data_coding: int) -> str:
    """Decode short_message octets; never raises (bad input becomes U+FFFD)."""
    kind = alphabet(data_coding)
    if kind is _GSM7_ALPHABET:
        return _decode_gsm(data)
    if kind is _UCS2_ALPHABET:
        # "replace" also covers an odd trailing octet and lone surrogates.
        return data.decode("utf-16-be", "replace")
    return data.decode(_OCTET_CODECS.get(data_coding, "latin-1"), "replace")


def decode_parts(parts: list[tuple[bytes, int]]) -> str:
    """The text of a long message from its parts' (octets, data_coding), in order.

    TS 23.040 gives every SMS of a concatenated message its own TP-DCS: parts in different codings are each
    decoded with their own. Consecutive parts in one coding are decoded joined: some senders cut a UCS2
    surrogate pair or a GSM escape between two parts, which decoding each part alone would turn into U+FFFD
    (whatever coding the message's other parts have).
    """
    runs = groupby(parts, key=itemgetter(1))
    return "".join(decode(b"".join(octets for octets, _ in run), coding) for coding, run in runs)


def is_gsm(text: str) -> bool:
    """True if the GSM 03.38 default alphabet (with extension table) can carry text."""
    return _gsm_or_none(text) is not None


# Plain ints: they end up in stored rows, which go to the writer process with
# marshal, and marshal refuses int subclasses such as IntEnum members.
_DEFAULT, _UCS2 = int(DataCoding.DEFAULT), int(DataCoding.UCS2)


def choose_coding(text: str) -> int:
    """The cheapest data_coding for text: GSM 03.38 if possible, else UCS2."""
    return _DEFAULT if is_gsm(text) else _UCS2


def septet_length(text: str) -> int:
    """Septets text costs in GSM 03.38 (extension characters count two)."""
    return len(_encode_gsm(text))


def units(text: str, data_coding: int) -> int:
    """What text costs in data_coding: septets for GSM 03.38, octets otherwise.

    For UCS2 that is two octets per UTF-16 code unit (140 fit one SMS).
    """
    return len(encode(text, data_coding))


def _encode_gsm(text: str) -> bytes:
    raw = _gsm_or_none(text)
    if raw is None:
        pos = next(i for i, ch in enumerate(text) if _gsm_or_none(ch) is None)
        raise UnencodableText(_unencodable_message(text, pos, DataCoding.DEFAULT))
    return raw


def _gsm_or_none(text: str) -> bytes | None:
    """Unpacked GSM septets for text, or None if some character has none."""
    try:
        raw = codecs.charmap_encode(text, "strict", _GSM_ENCODE_MAP)[0]
    except UnicodeEncodeError:
        return None
    if 0 in raw:  # a real NUL in the text
        return None
    if raw.isascii():  # no stand-ins: the common case
        return raw
    raw = raw.translate(_AT_FIX)
    if not raw.isascii():
        for standin, pair in _EXT_STANDINS:
            raw = raw.replace(standin, pair)
    return raw


def _decode_gsm(data: bytes) -> str:
    if ESCAPE not in data:
        return codecs.charmap_decode(data, "replace", _GSM_DECODE_TABLE)[0]
    out: list[str] = []
    start = 0
    end = len(data)
    while True:
        esc = data.find(_ESCAPE_BYTE, start)
        if esc < 0:
            out.append(codecs.charmap_decode(data[start:], "replace", _GSM_DECODE_TABLE)[0])
            break
        out.append(codecs.charmap_decode(data[start:esc], "replace", _GSM_DECODE_TABLE)[0])
        if esc + 1 == end:
            out.append("\ufffd")  # escape with nothing after it
            break
        out.append(_GSM_ESCAPED[data[esc + 1]])
        start = esc + 2
    return "".join(out)


def _unencodable_message(text: str, pos: int, data_coding: int) -> str:
    ch = text[pos]
    return (
        f"character {ch!r} (U+{ord(ch):04X}) at position {pos} "
        f"cannot be encoded with data_coding 0x{data_coding:02X}"
    )


def pack_septets(septets: bytes) -> bytes:
    """Pack unpacked septets (one per octet) into GSM 7-bit form, LSB first.

    When the septets end exactly one bit short of an octet boundary the last
    7 bits are zero, which a reader could take for a trailing '@'; callers
    pass the septet count along (as the SMS user data length does).
    """
    out = bytearray()
    acc = 0
    bits = 0
    for septet in septets:
        if septet > 0x7F:
            raise ValueError(f"0x{septet:02X} is not a septet")
        acc |= septet << bits
        bits += 7
        if bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc)
    return bytes(out)


def unpack_septets(packed: bytes, count: int | None = None) -> bytes:
    """Unpack GSM 7-bit packed octets into one septet per octet.

    count is the number of septets carried (the padding cannot tell); by
    default every full septet in the octets is returned.
    """
    available = len(packed) * 8 // 7
    if count is None:
        count = available
    elif count > available:
        raise ValueError(f"{len(packed)} octets hold at most {available} septets, not {count}")
    out = bytearray(count)
    acc = 0
    bits = 0
    i = 0
    for octet in packed:
        acc |= octet << bits
        bits += 8
        while bits >= 7 and i < count:
            out[i] = acc & 0x7F
            acc >>= 7
            bits -= 7
            i += 1
        if i == count:
            break
    return bytes(out)
