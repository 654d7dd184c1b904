"""Bytes <-> PDUs. Pure functions; no state, no I/O.

`decode_pdu` takes one whole PDU (header included) and raises `PduError`
carrying the command_status the peer should get; `encode_pdu` returns the
wire bytes. Framing (splitting a byte stream into PDUs) is `split_frames`.
"""

from __future__ import annotations

from struct import Struct

from .constants import HEADER_LENGTH, CommandStatus
from .pdu import (
    BODYLESS_ON_ERROR,
    CSTR,
    DESTS,
    PDU_CLASSES,
    SM,
    U8,
    UNSUCC,
    MultiDest,
    Pdu,
    UnsuccessSme,
)
from .tlv import TlvError, decode_tlvs, encode_tlvs

S = CommandStatus
HEADER = Struct(">IIII")
# Big enough for a 64 KiB message_payload plus the mandatory fields.
MAX_PDU_LENGTH = 70_000


class PduError(ValueError):
    """A PDU that cannot be accepted; `status` is what the peer is told."""

    def __init__(self, status: int, message: str, command_id: int = 0, sequence_number: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.command_id = command_id
        self.sequence_number = sequence_number


class FramingError(PduError):
    """The stream cannot be split into PDUs any more (bad command_length): close the connection.

    `frames` holds the complete PDUs that preceded the bad header (already
    removed from the buffer); they still need handling.
    """

    frames: list[bytes] = []


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove every complete PDU from the front of `buffer` and return them.

    Raises FramingError when a command_length is impossible; the stream cannot
    be resynchronised after that. A header is judged only once all 16 octets
    are there, so the generic_nack can carry its sequence number however the
    stream was cut.
    """
    frames: list[bytes] = []
    pos = 0
    size = len(buffer)
    while size - pos >= HEADER_LENGTH:
        length = int.from_bytes(buffer[pos : pos + 4], "big")
        if length < HEADER_LENGTH or length > MAX_PDU_LENGTH:
            sequence = int.from_bytes(buffer[pos + 12 : pos + 16], "big")
            command_id = int.from_bytes(buffer[pos + 4 : pos + 8], "big")
            del buffer[:pos]
            error = FramingError(S.ESME_RINVCMDLEN, f"command_length {length} out of range", command_id, sequence)
            error.frames = frames
            raise error
        if size - pos < length:
            break
        frames.append(bytes(buffer[pos : pos + length]))
        pos += length
    if pos:
        del buffer[:pos]
    return frames


def decode_pdu(frame: bytes) -> Pdu:
    if len(frame) < HEADER_LENGTH:
        raise PduError(S.ESME_RINVCMDLEN, "PDU shorter than its header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(S.ESME_RINVCMDLEN, f"command_length {length} != {len(frame)}", command_id, sequence)
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise PduError(S.ESME_RINVCMDID, f"unknown command_id 0x{command_id:08X}", command_id, sequence)
    try:
        values = _decode_fields(cls, frame, command_id, status)
    except PduError as exc:
        exc.command_id, exc.sequence_number = command_id, sequence
        raise
    pdu = cls(sequence_number=sequence, command_status=status, **values)
    return pdu


def _decode_fields(cls: type[Pdu], body: bytes, command_id: int, status: int) -> dict:
    end = len(body)
    pos = HEADER_LENGTH
    values: dict = {}
    is_response = command_id & 0x80000000
    for name, kind, size, err in cls.FIELDS:
        if pos >= end and is_response:
            # Error responses (and some peers' OK responses) omit the body.
            break
        if kind == CSTR:
            values[name], pos = _cstr(body, pos, size, err, name)
        elif kind == U8:
            if pos >= end:
                raise PduError(S.ESME_RINVCMDLEN, f"PDU ends before {name}")
            values[name] = body[pos]
            pos += 1
        elif kind == SM:
            if pos >= end:
                raise PduError(S.ESME_RINVCMDLEN, "PDU ends before sm_length")
            sm_length = body[pos]
            pos += 1
            if pos + sm_length > end:
                raise PduError(err, f"sm_length {sm_length} runs past the PDU")
            values[name] = body[pos : pos + sm_length]
            pos += sm_length
        elif kind == DESTS:
            values[name], pos = _decode_dests(body, pos, end)
        elif kind == UNSUCC:
            values[name], pos = _decode_unsuccess(body, pos, end)
    if pos < end:
        try:
            values["tlvs"] = decode_tlvs(body, pos, end)
        except TlvError as exc:
            raise PduError(exc.status, str(exc)) from None
    return values


def _cstr(body: bytes, pos: int, size: int, err: int, name: str) -> tuple[str, int]:
    nul = body.find(b"\0", pos, pos + size)
    if nul < 0:
        if len(body) - pos < size:
            raise PduError(S.ESME_RINVCMDLEN, f"PDU ends inside {name}")
        raise PduError(err, f"{name}: no terminating NUL within {size} octets")
    return body[pos:nul].decode("latin-1"), nul + 1


def _decode_dests(body: bytes, pos: int, end: int) -> tuple[list[MultiDest], int]:
    if pos >= end:
        raise PduError(S.ESME_RINVCMDLEN, "PDU ends before number_of_dests")
    count = body[pos]
    pos += 1
    if not 1 <= count <= 254:
        raise PduError(S.ESME_RINVNUMDESTS, f"number_of_dests {count}")
    dests = []
    for _ in range(count):
        if pos >= end:
            raise PduError(S.ESME_RINVCMDLEN, "PDU ends inside dest_address list")
        flag = body[pos]
        pos += 1
        if flag == 1:
            if pos + 2 > end:
                raise PduError(S.ESME_RINVCMDLEN, "PDU ends inside dest_address")
            ton, npi = body[pos], body[pos + 1]
            addr, pos = _cstr(body, pos + 2, 21, S.ESME_RINVDSTADR, "destination_addr")
            dests.append(MultiDest(dest_flag=1, dest_addr_ton=ton, dest_addr_npi=npi, destination_addr=addr))
        elif flag == 2:
            name, pos = _cstr(body, pos, 21, S.ESME_RINVDLNAME, "dl_name")
            dests.append(MultiDest(dest_flag=2, dl_name=name))
        else:
            raise PduError(S.ESME_RINVDESTFLAG, f"dest_flag {flag}")
    return dests, pos


def _decode_unsuccess(body: bytes, pos: int, end: int) -> tuple[list[UnsuccessSme], int]:
    if pos >= end:
        return [], pos
    count = body[pos]
    pos += 1
    smes = []
    for _ in range(count):
        if pos + 2 > end:
            raise PduError(S.ESME_RINVCMDLEN, "PDU ends inside unsuccess_sme")
        ton, npi = body[pos], body[pos + 1]
        addr, pos = _cstr(body, pos + 2, 21, S.ESME_RINVDSTADR, "destination_addr")
        if pos + 4 > end:
            raise PduError(S.ESME_RINVCMDLEN, "PDU ends inside unsuccess_sme")
        code = int.from_bytes(body[pos : pos + 4], "big")
        pos += 4
        smes.append(UnsuccessSme(dest_addr_ton=ton, dest_addr_npi=npi, destination_addr=addr, error_status_code=code))
    return smes, pos


# ------------------------------------------------------------------ encode
def encode_pdu(pdu: Pdu) -> bytes:
    """Wire bytes of `pdu`. Raises ValueError when a field does not fit its SMPP size."""
    if pdu.command_status and pdu.command_id in BODYLESS_ON_ERROR and not pdu.message_id and not pdu.tlvs:
        body = b""
    else:
        body = _encode_fields(pdu)
        if pdu.tlvs:
            body += encode_tlvs(pdu.tlvs)
    return HEADER.pack(HEADER_LENGTH + len(body), pdu.command_id, pdu.command_status, pdu.sequence_number) + body


def _encode_fields(pdu: Pdu) -> bytes:
    out = bytearray()
    for name, kind, size, _err in pdu.FIELDS:
        value = getattr(pdu, name)
        if kind == CSTR:
            raw = value.encode("latin-1")
            if len(raw) >= size:
                raise ValueError(f"{name} is {len(raw)} octets; SMPP allows {size - 1}")
            out += raw
            out.append(0)
        elif kind == U8:
            out.append(value)
        elif kind == SM:
            if len(value) > size:
                raise ValueError(f"short_message is {len(value)} octets; use message_payload beyond {size}")
            out.append(len(value))
            out += value
        elif kind == DESTS:
            out.append(len(value))
            for dest in value:
                out.append(dest.dest_flag)
                if dest.dest_flag == 1:
                    out += bytes((dest.dest_addr_ton, dest.dest_addr_npi))
                    out += dest.destination_addr.encode("latin-1") + b"\0"
                else:
                    out += dest.dl_name.encode("latin-1") + b"\0"
        elif kind == UNSUCC:
            out.append(len(value))
            for sme in value:
                out += bytes((sme.dest_addr_ton, sme.dest_addr_npi))
                out += sme.destination_addr.encode("latin-1") + b"\0"
                out += sme.error_status_code.to_bytes(4, "big")
    return bytes(out)
