"""gateway.smpp.text: GSM 03.38 and the other data_coding values."""

from __future__ import annotations

import time

import pytest
import smpplib.gsm
from hypothesis import given
from hypothesis import strategies as st

from gateway.smpp.constants import DataCoding
from gateway.smpp.text import (
    UnencodableText,
    choose_coding,
    decode,
    encode,
    is_gsm,
    pack_septets,
    septet_length,
    units,
    unpack_septets,
)

# The default alphabet once more, written out independently of the module
# from 3GPP TS 23.038 6.2.1 (rows of 16 septets; None = escape).
SPEC_BASIC = [
    *"@£$¥èéùìòÇ\nØø\rÅå",
    *"Δ_ΦΓΛΩΠΨΣΘΞ", None, *"ÆæßÉ",
    *" !\"#¤%&'()*+,-./",
    *"0123456789:;<=>?",
    *"¡ABCDEFGHIJKLMNO",
    *"PQRSTUVWXYZÄÖÑÜ§",
    *"¿abcdefghijklmno",
    *"pqrstuvwxyzäöñüà",
]  # fmt: skip
SPEC_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
GSM_CHARS = "".join(ch for ch in SPEC_BASIC if ch is not None) + "".join(SPEC_EXTENSION)

gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS))
# Any text a UTF-16 encoder accepts: everything but lone surrogates.
unicode_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@pytest.mark.parametrize(
    ("char", "septets"),
    [
        ("@", "00"),
        ("£", "01"),
        ("è", "04"),
        ("Δ", "10"),
        ("ß", "1E"),
        ("¤", "24"),
        ("§", "5F"),
        ("¿", "60"),
        ("à", "7F"),
        ("€", "1B 65"),
        ("{", "1B 28"),
        ("}", "1B 29"),
        ("[", "1B 3C"),
        ("~", "1B 3D"),
        ("]", "1B 3E"),
        ("|", "1B 40"),
        ("^", "1B 14"),
        ("\\", "1B 2F"),
        ("\f", "1B 0A"),
    ],
)
def test_gsm_known_vectors(char: str, septets: str) -> None:
    assert encode(char, 0) == bytes.fromhex(septets)
    assert decode(bytes.fromhex(septets), 0) == char


def test_gsm_whole_table_against_spec() -> None:
    for septet, char in enumerate(SPEC_BASIC):
        if char is not None:
            assert encode(char, 0) == bytes([septet]), char
            assert decode(bytes([septet]), 0) == char
    for char, septet in SPEC_EXTENSION.items():
        assert encode(char, 0) == bytes([0x1B, septet])
        assert septet_length(char) == 2


def test_at_sign_is_septet_zero_and_round_trips_at_start() -> None:
    assert encode("@home @", 0) == b"\x00home \x00"
    assert decode(b"\x00home", 0) == "@home"
    assert decode(encode("@", 0), 0) == "@"


@pytest.mark.parametrize("text", ["`", "中", "\x00", "\x1b", "ç", "Ω\u2126", "a\tb"])
def test_gsm_unencodable(text: str) -> None:
    with pytest.raises(UnencodableText, match="cannot be encoded"):
        encode(text, 0)
    assert not is_gsm(text)
    assert choose_coding(text) == DataCoding.UCS2


def test_unencodable_message_names_character_and_position() -> None:
    with pytest.raises(UnencodableText, match=r"'中' \(U\+4E2D\) at position 3"):
        encode("abc中", 0)
    assert issubclass(UnencodableText, ValueError)


def test_gsm_decode_is_lenient() -> None:
    assert decode(b"\x80A\xff", 0) == "\ufffdA\ufffd"  # not septets
    assert decode(b"A\x1b", 0) == "A\ufffd"  # escape with nothing after it
    assert decode(b"\x1b\x41", 0) == "A"  # unknown extension: default-alphabet char
    assert decode(b"\x1b\x1bA", 0) == " A"  # escape-escape shows as space
    assert decode(b"\x1b\x80", 0) == "\ufffd"


def test_ucs2() -> None:
    assert encode("中国", 8) == bytes.fromhex("4E2D56FD")
    assert encode("😀", 8) == bytes.fromhex("D83DDE00")
    assert decode(bytes.fromhex("D83DDE00"), 8) == "😀"
    assert decode(b"\x00A\x00", 8) == "A\ufffd"  # odd trailing octet
    assert decode(bytes.fromhex("D8000041"), 8) == "\ufffdA"  # lone surrogate
    with pytest.raises(UnencodableText):
        encode("\ud800", 8)


def test_octet_codings() -> None:
    assert encode("café", DataCoding.LATIN1) == b"caf\xe9"
    assert encode("café", DataCoding.OCTET_UNSPECIFIED) == b"caf\xe9"
    assert encode("café", DataCoding.OCTET_UNSPECIFIED_2) == b"caf\xe9"
    assert encode("abc", DataCoding.IA5) == b"abc"
    with pytest.raises(UnencodableText):
        encode("café", DataCoding.IA5)
    with pytest.raises(UnencodableText):
        encode("€", DataCoding.LATIN1)
    assert decode(b"caf\xe9", DataCoding.LATIN1) == "café"
    assert decode(b"a\xe9", DataCoding.IA5) == "a\ufffd"
    assert decode(b"caf\xe9", 0x09) == "café"  # unknown (pictogram encoding): latin-1
    assert decode("こんにちは".encode("shift_jis"), DataCoding.JIS) == "こんにちは"


def test_gsm_coding_groups() -> None:
    # 0xF0-0xFF message class group: bit 2 picks 8-bit over the default alphabet.
    assert encode("@", 0xF0) == b"\x00"
    assert decode(b"\x00", 0xF1) == "@"
    assert decode(b"\x00", 0xF4) == "\x00"


def test_choose_coding() -> None:
    assert choose_coding("Hello {world} €5") == DataCoding.DEFAULT
    assert choose_coding("") == DataCoding.DEFAULT
    assert choose_coding("Привет") == DataCoding.UCS2


def test_lengths() -> None:
    assert septet_length("hello") == 5
    assert septet_length("€[]") == 6
    assert units("€[]", 0) == 6
    assert units("中国", 8) == 4  # octets
    assert units("😀", 8) == 4
    assert units("café", DataCoding.LATIN1) == 4
    with pytest.raises(UnencodableText):
        septet_length("中")


def test_pack_known_vectors() -> None:
    assert pack_septets(b"hello") == bytes.fromhex("E8329BFD06")
    assert pack_septets(b"hellohello") == bytes.fromhex("E8329BFD4697D9EC37")
    assert unpack_septets(bytes.fromhex("E8329BFD06"), 5) == b"hello"
    assert unpack_septets(bytes.fromhex("E8329BFD4697D9EC37")) == b"hellohello"


def test_pack_seven_septets_needs_count() -> None:
    packed = pack_septets(b"1234567")
    assert len(packed) == 7
    assert unpack_septets(packed) == b"1234567\x00"  # the padding looks like '@'
    assert unpack_septets(packed, 7) == b"1234567"


def test_pack_rejects_non_septets() -> None:
    with pytest.raises(ValueError):
        pack_septets(b"\x80")
    with pytest.raises(ValueError):
        unpack_septets(b"\x00", 2)


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    data = encode(text, 0)
    assert decode(data, 0) == text
    assert septet_length(text) == len(data) == len(text) + sum(text.count(c) for c in SPEC_EXTENSION)
    assert choose_coding(text) == DataCoding.DEFAULT


@given(unicode_text)
def test_ucs2_round_trip(text: str) -> None:
    assert decode(encode(text, 8), 8) == text


@given(st.text(alphabet=st.characters(max_codepoint=0xFF)))
def test_latin1_round_trip(text: str) -> None:
    assert decode(encode(text, 3), 3) == text


@given(st.binary(), st.integers(0, 255))
def test_decode_never_raises(data: bytes, data_coding: int) -> None:
    assert isinstance(decode(data, data_coding), str)


@given(st.binary().map(lambda b: bytes(x & 0x7F for x in b)))
def test_pack_round_trip(septets: bytes) -> None:
    packed = pack_septets(septets)
    assert len(packed) == (len(septets) * 7 + 7) // 8
    assert unpack_septets(packed, len(septets)) == septets


@given(gsm_text)
def test_pack_then_decode(text: str) -> None:
    septets = encode(text, 0)
    assert decode(unpack_septets(pack_septets(septets), len(septets)), 0) == text


# smpplib's table is vendor-specific ('`' in place of '§', no form feed), so
# compare only where it can encode the character and the tables agree.
SMPPLIB_DIFFERS = {"§", "\f"}


def test_agrees_with_smpplib_on_basic_characters() -> None:
    compared = 0
    for char in GSM_CHARS:
        if char in SMPPLIB_DIFFERS:
            continue
        assert smpplib.gsm.gsm_encode(char) == encode(char, 0), char
        compared += 1
    assert compared == len(GSM_CHARS) - len(SMPPLIB_DIFFERS)


@given(st.text(alphabet=st.sampled_from([c for c in GSM_CHARS if c not in SMPPLIB_DIFFERS])))
def test_agrees_with_smpplib_on_text(text: str) -> None:
    assert smpplib.gsm.gsm_encode(text) == encode(text, 0)


def test_fast_enough() -> None:
    # The gateway encodes and decodes every message; this only catches an
    # accidental per-character Python loop (the real figure is ~2 us).
    text = ("Hello world, {this} is a test message €1 " * 4)[:160]
    data = encode(text, 0)
    start = time.perf_counter()
    for _ in range(1000):
        encode(text, 0)
        decode(data, 0)
    assert time.perf_counter() - start < 0.2


def test_a_character_cut_between_two_parts_of_one_coding_survives_another_coding_elsewhere() -> None:
    """Parts of one message in different codings are decoded each in its own; a surrogate pair or a GSM escape a
    sender cut between two consecutive parts of one coding was turned into U+FFFD once any other part differed."""
    from gateway.smpp.text import decode_parts

    pair = "😀".encode("utf-16-be")
    ucs2 = 8
    assert decode_parts([(b"Hi ", 0), ("a".encode("utf-16-be") + pair[:2], ucs2), (pair[2:] + "b".encode("utf-16-be"), ucs2)]) == "Hi a😀b"
    assert decode_parts([(b"x\x1b", 0), (b"\x65y", 0), ("世".encode("utf-16-be"), ucs2)]) == "x€y世"
    assert decode_parts([(b"Hello ", 0), ("世界".encode("utf-16-be"), ucs2)]) == "Hello 世界"
