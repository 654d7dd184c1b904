"""Bytes <-> PDUs. Pure functions; no state, no I/O.

`decode_pdu` takes one whole PDU (header included) and raises `PduError`
carrying the command_status the peer should get; `encode_pdu` returns the
wire bytes. Framing (splitting a byte stream into PDUs) is `split_frames`.

Each PDU class is read and written by a function generated from its FIELDS
table at import (codegen.py says why and how); the table-driven
`_decode_fields` / `_encode_fields` below define what those functions do, and
still handle a response whose body stops early.
"""

from __future__ import annotations

from struct import Struct
from typing import Callable

from . import codegen
from .constants import HEADER_LENGTH, CommandId, CommandStatus
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
from .tlv import TlvError, TlvValue, decode_tlvs, encode_tlvs

S = CommandStatus
HEADER = Struct(">IIII")
COMMAND_LENGTH = Struct(">I")
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


def split_frames(buffer: bytearray, max_length: int = MAX_PDU_LENGTH) -> list[bytes]:
    """Remove every complete PDU from the front of `buffer` and return them.

    Raises FramingError when a command_length is impossible (below 16 or above
    `max_length`); the stream cannot be resynchronised after that, and the bad
    header stays in `buffer`. A header is judged only once all 16 octets are
    there, so the generic_nack can carry its sequence number however the
    stream was cut.
    """
    frames: list[bytes] = []
    pos = 0
    size = len(buffer)
    error: FramingError | None = None
    # Frames are copied out through a memoryview: one copy each (a bytearray
    # slice and then bytes() would be two). It must be released before the
    # buffer is resized.
    with memoryview(buffer) as view:
        while size - pos >= HEADER_LENGTH:
            (length,) = COMMAND_LENGTH.unpack_from(buffer, pos)
            if length < HEADER_LENGTH or length > max_length:
                _length, command_id, _status, sequence = HEADER.unpack_from(buffer, pos)
                error = FramingError(S.ESME_RINVCMDLEN, f"command_length {length} out of range", command_id, sequence)
                error.frames = frames
                break
            if size - pos < length:
                break
            frames.append(view[pos : pos + length].tobytes())
            pos += length
    if pos:
        del buffer[:pos]
    if error is not None:
        raise error
    return frames


def decode_pdu(frame: bytes) -> Pdu:
    if len(frame) < HEADER_LENGTH:
        raise PduError(S.ESME_RINVCMDLEN, "PDU shorter than its header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(S.ESME_RINVCMDLEN, f"command_length {length} != {len(frame)}", command_id, sequence)
    decoder = _DECODERS.get(command_id)
    if decoder is None:
        raise PduError(S.ESME_RINVCMDID, f"unknown command_id 0x{command_id:08X}", command_id, sequence)
    try:
        pdu = decoder(frame, length, sequence, status)
        if pdu is None:  # a response whose body stops early: the fields it has, defaults for the rest
            cls = PDU_CLASSES[command_id]
            pdu = cls(sequence_number=sequence, command_status=status, **_decode_fields(cls, frame, command_id, status))
    except PduError as exc:
        exc.command_id, exc.sequence_number = command_id, sequence
        raise
    return pdu


def fields_before_fault(frame: bytes) -> Pdu | None:
    """A request `decode_pdu` refused, as far as it could be read: the fields before the fault, defaults for the rest
    (None if its command is unknown). For the line logged about it (a submit_sm's addresses): only on that path, as
    it reads the PDU again."""
    if len(frame) < HEADER_LENGTH:
        return None
    _length, command_id, status, sequence = HEADER.unpack_from(frame)
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        return None
    values: dict = {}
    try:
        _decode_fields(cls, frame, command_id, status, values)
    except PduError:
        pass  # what was read before the fault is in `values`
    return cls(sequence_number=sequence, command_status=status, **values)


def _decode_fields(cls: type[Pdu], body: bytes, command_id: int, status: int, values: dict | None = None) -> dict:
    """The fields of `body` as a dict, into `values` if given: what was read before a PduError is there then."""
    end = len(body)
    pos = HEADER_LENGTH
    if values is None:
        values = {}
    is_response = command_id & 0x80000000
    for name, kind, size, err in cls.FIELDS:
        if pos >= end and is_response:
            # Error responses (and some peers' OK responses) omit the body.
            break
        if kind == CSTR and is_response:
            values[name], pos = _response_cstr(body, pos, end)
        elif kind == CSTR:
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
            if sm_length > size:
                raise PduError(err, f"sm_length {sm_length} is over {size}")
            if pos + sm_length > end:
                raise PduError(err, f"sm_length {sm_length} runs past the PDU")
            values[name] = body[pos : pos + sm_length]
            pos += sm_length
        elif kind == DESTS:
            values[name], pos = _decode_dests(body, pos, end)
        elif kind == UNSUCC:
            values[name], pos = _decode_unsuccess(body, pos, end)
    if pos < end:
        values["tlvs"] = _tlvs(body, pos, end, request=not is_response)
    return values


def _cstr(body: bytes, pos: int, size: int, err: int, name: str) -> tuple[str, int]:
    nul = body.find(b"\0", pos, pos + size)
    if nul < 0:
        raise _unterminated(body, pos, size, err, name)
    return body[pos:nul].decode("latin-1"), nul + 1


def _response_cstr(body: bytes, pos: int, end: int) -> tuple[str, int]:
    """A C-string of a response, read up to its NUL however long (or to the body's end without one). A response
    is not refused (generic_nack) for its fields, as for its TLVs (see _tlvs): a deliver_sm_resp with a 65-octet
    message_id, which SMPP 3.4 says is unused, left its deliver_sm unanswered, and the handset got it twice."""
    nul = body.find(b"\0", pos, end)
    if nul < 0:
        return body[pos:end].decode("latin-1"), end
    return body[pos:nul].decode("latin-1"), nul + 1


def _unterminated(body: bytes, pos: int, size: int, err: int, name: str) -> PduError:
    """The error for a C-string with no NUL within its size: cut short by the PDU's end, or too long."""
    if len(body) - pos < size:
        return PduError(S.ESME_RINVCMDLEN, f"PDU ends inside {name}")
    return PduError(err, f"{name}: no terminating NUL within {size} octets")


def _missing(names: tuple[str, ...], available: int) -> PduError:
    """The error for a run of 1-octet fields of which only `available` are in the PDU."""
    return PduError(S.ESME_RINVCMDLEN, f"PDU ends before {names[available]}")


def _tlvs(body: bytes, pos: int, end: int, request: bool = True) -> dict[int, TlvValue]:
    """A request with TLVs that cannot be read is refused. A response is not: refusing it (generic_nack) would
    leave its request unanswered, to be sent again (a deliver_sm the handset already has); it is taken with
    a repeated standard tag's last value, and without its TLVs when they cannot be read."""
    try:
        return decode_tlvs(body, pos, end, request)
    except TlvError as exc:
        if not request:
            return {}
        raise PduError(exc.status, str(exc)) from None


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
    if pdu.command_status and pdu.command_id in BODYLESS_ON_ERROR and not getattr(pdu, BODYLESS_ON_ERROR[pdu.command_id]) and not pdu.tlvs:
        body = b""
    else:
        encoder = _ENCODERS.get(type(pdu))
        body = encoder(pdu) if encoder is not None else _encode_fields(pdu)
        if pdu.tlvs:
            body += encode_tlvs(pdu.tlvs)
    return HEADER.pack(HEADER_LENGTH + len(body), pdu.command_id, pdu.command_status, pdu.sequence_number) + body


_MESSAGE_ID_RESPONSES = frozenset({CommandId.SUBMIT_SM_RESP, CommandId.DATA_SM_RESP, CommandId.DELIVER_SM_RESP})


def encode_message_id_resp(command_id: int, sequence_number: int, message_id: str = "", command_status: int = 0) -> bytes:
    """`encode_pdu(SubmitSmResp(...))` (or DataSmResp / DeliverSmResp, no TLVs) without building the PDU.

    The answer to every submitted message, so it skips the object: same bytes,
    same ValueError for a message_id longer than SMPP allows.
    """
    if command_id not in _MESSAGE_ID_RESPONSES:
        raise ValueError(f"command_id 0x{command_id:08X} is not a message_id response")
    if command_status and not message_id:
        body = b""  # error responses carry no body (BODYLESS_ON_ERROR)
    else:
        raw = message_id.encode("latin-1")
        if len(raw) >= 65:
            raise _too_long("message_id", raw, 65)
        body = raw + b"\0"
    return HEADER.pack(HEADER_LENGTH + len(body), command_id, command_status, sequence_number) + body


def _encode_fields(pdu: Pdu) -> bytes:
    out = bytearray()
    for name, kind, size, _err in pdu.FIELDS:
        value = getattr(pdu, name)
        if kind == CSTR:
            raw = value.encode("latin-1")
            if len(raw) >= size:
                raise _too_long(name, raw, size)
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
            out += _encode_dests(value)
        elif kind == UNSUCC:
            out += _encode_unsuccess(value)
    return bytes(out)


def _too_long(name: str, raw: bytes, size: int) -> ValueError:
    return ValueError(f"{name} is {len(raw)} octets; SMPP allows {size - 1}")


def _encode_dests(dests: list[MultiDest]) -> bytes:
    out = bytearray()
    out.append(len(dests))
    for dest in dests:
        out.append(dest.dest_flag)
        if dest.dest_flag == 1:
            out += bytes((dest.dest_addr_ton, dest.dest_addr_npi))
            out += dest.destination_addr.encode("latin-1") + b"\0"
        else:
            out += dest.dl_name.encode("latin-1") + b"\0"
    return bytes(out)


def _encode_unsuccess(smes: list[UnsuccessSme]) -> bytes:
    out = bytearray()
    out.append(len(smes))
    for sme in smes:
        out += bytes((sme.dest_addr_ton, sme.dest_addr_npi))
        out += sme.destination_addr.encode("latin-1") + b"\0"
        out += sme.error_status_code.to_bytes(4, "big")
    return bytes(out)


# --------------------------------------------------------- generated code
def _compile(source: str, name: str) -> Callable:
    namespace = dict(_GENERATED_GLOBALS)
    exec(compile(source, f"<smpp codec: {name}>", "exec"), namespace)
    return namespace[name]


_GENERATED_GLOBALS = {
    "PduError": PduError,
    "S": S,
    "_new": object.__new__,
    "_missing": _missing,
    "_unterminated": _unterminated,
    "_response_cstr": _response_cstr,
    "_tlvs": _tlvs,
    "_decode_dests": _decode_dests,
    "_decode_unsuccess": _decode_unsuccess,
    "_too_long": _too_long,
    "_encode_dests": _encode_dests,
    "_encode_unsuccess": _encode_unsuccess,
    **{cls.__name__: cls for cls in PDU_CLASSES.values()},
}
# command_id -> decode_<name>(frame, length, sequence, status); PDU class -> encode_<name>(pdu) (the body).
_DECODERS: dict[int, Callable] = {
    command_id: _compile(codegen.decoder_source(cls), f"decode_{codegen.function_name(cls)}")
    for command_id, cls in PDU_CLASSES.items()
}
_ENCODERS: dict[type, Callable] = {
    cls: _compile(codegen.encoder_source(cls), f"encode_{codegen.function_name(cls)}")
    for cls in PDU_CLASSES.values()
}
