"""A phone (or any ESME) for end-to-end tests: a small blocking wrapper around smpplib.

smpplib is an independent SMPP implementation, so what these tests see is
what a third-party client sees, not what our own codec thinks it sent.
Texts are decoded here with Python's codecs and smpplib's GSM table, never
with `gateway.smpp`.

    with Handset(port, "8613800000001") as a:
        a.bind("trx")
        resp = a.submit("8613700000001", "hello")
        receipt = a.expect(predicate=is_receipt)
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from smpplib import consts, exceptions, gsm, smpp
from smpplib.client import Client, SimpleSequenceGenerator

# command_status values the tests talk about (SMPP 3.4 section 5.1.3), spelt out
# here rather than imported from the gateway.
ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RBINDFAIL = 0x0D
ESME_RINVESMCLASS = 0x43
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RCANCELFAIL = 0x11
ESME_RREPLACEFAIL = 0x13
ESME_RMSGQFUL = 0x14
ESME_RINVDLNAME = 0x34
ESME_RTHROTTLED = 0x58
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RQUERYFAIL = 0x67
ESME_RINVOPTPARSTREAM = 0xC0
SMSGW_RNOSUBSCRIPTION = 0x402  # ours, in the range SMPP 3.4 leaves to SMSC vendors

ESM_RECEIPT = 0x04
ESM_UDHI = 0x40

RECEIPT = re.compile(
    r"^id:(?P<id>\S+) sub:(?P<sub>\d{3}) dlvrd:(?P<dlvrd>\d{3}) "
    r"submit date:(?P<submit>\d{10}) done date:(?P<done>\d{10}) "
    r"stat:(?P<stat>[A-Z]{7}) err:(?P<err>\d{3}) text:(?P<text>.*)$",
    re.DOTALL,
)

_BIND = {"tx": "bind_transmitter", "rx": "bind_receiver", "trx": "bind_transceiver"}


class Handset:
    """One SMPP connection from the client side. Close it (or use `with`)."""

    def __init__(
        self, port: int, number: str = "", *, host: str = "127.0.0.1", timeout: float = 5.0, ssl_context=None
    ) -> None:
        self.number = number
        self.client = Client(host, port, timeout=timeout, allow_unknown_opt_params=True, ssl_context=ssl_context)
        self.client.set_message_received_handler(self._on_deliver)
        self.inbox: deque = deque()  # deliver_sm not yet taken by expect()
        self.requests: deque = deque()  # other requests from the gateway (enquire_link, unbind), already answered
        self.answers: deque[int] = deque()  # statuses for the next deliver_sm_resp; empty = ESME_ROK
        self.answering = True  # False: keep deliver_sm unanswered (in `unanswered`) until answer_held()
        self.unanswered: list = []
        self._responses: dict[int, object] = {}
        self.client.connect()

    # ---------------------------------------------------------- session
    def bind(self, mode: str = "trx", system_id: str = "handset", password: str | None = None, address_range: str = ""):
        """Bind and return the bind_*_resp; raises smpplib's PDUError with the status if refused."""
        kwargs = {"system_id": system_id, "password": system_id if password is None else password}
        if address_range:
            kwargs["address_range"] = address_range
        return getattr(self.client, _BIND[mode])(**kwargs)

    def bind_status(self, mode: str = "trx", system_id: str = "handset", password: str | None = None) -> int:
        try:
            self.bind(mode, system_id, password)
        except exceptions.PDUError as refused:
            return refused.args[1]
        return ESME_ROK

    def unbind(self):
        return self.request(smpp.make_pdu("unbind", client=self.client))

    def close(self) -> None:
        """Unbind if still bound (best effort: the gateway may have gone), then close the socket."""
        if self.client._socket is None:
            return
        if self.client.state in (consts.SMPP_CLIENT_STATE_BOUND_TX, consts.SMPP_CLIENT_STATE_BOUND_RX,
                                 consts.SMPP_CLIENT_STATE_BOUND_TRX):  # fmt: skip
            try:
                self.request(smpp.make_pdu("unbind", client=self.client), timeout=1.0)
            except (OSError, TimeoutError, exceptions.ConnectionError, exceptions.PDUError):
                pass
        if self.client._socket is not None:
            self.client._socket.close()
            self.client._socket = None
        self.client.state = consts.SMPP_CLIENT_STATE_CLOSED

    def __enter__(self) -> Handset:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -------------------------------------------------------- requests
    def submit(self, to: str, text: str | bytes, **fields):
        """submit_sm from this handset's number; returns the submit_sm_resp.

        str text goes as GSM 03.38 if it can, else UCS2; bytes go as given
        (data_coding from `fields`, default 0). Any submit_sm field or TLV
        smpplib knows can be passed in `fields`.
        """
        return self.request(self.make("submit_sm", to, text, **fields))

    def data_sm(self, to: str, text: str | bytes, **fields):
        body, fields = _body(text, fields)
        fields.setdefault("source_addr", self.number)
        return self.request(smpp.make_pdu("data_sm", client=self.client, destination_addr=to, message_payload=body, **fields))

    def query(self, message_id: str | bytes, source: str | None = None):
        if isinstance(message_id, bytes):
            message_id = message_id.decode()
        pdu = smpp.make_pdu("query_sm", client=self.client, message_id=message_id,
                            source_addr=self.number if source is None else source)  # fmt: skip
        return self.request(pdu)

    def make(self, command: str, to: str, text: str | bytes, **fields):
        """A submit_sm (or another message PDU) as smpplib builds it, not yet sent."""
        body, fields = _body(text, fields)
        fields.setdefault("source_addr", self.number)
        return smpp.make_pdu(command, client=self.client, destination_addr=to, short_message=body, **fields)

    def send(self, pdu) -> int:
        """Write a PDU without smpplib's client-side state check (to test the gateway's); returns its sequence."""
        self.client._socket.sendall(pdu.generate())
        return pdu.sequence

    def send_together(self, *pdus) -> list[int]:
        """Write several PDUs in one write, as a pipelining client does (the gateway reads them in one go)."""
        self.client._socket.sendall(b"".join(pdu.generate() for pdu in pdus))
        return [pdu.sequence for pdu in pdus]

    def request(self, pdu, timeout: float | None = None):
        return self.response(self.send(pdu), timeout)

    def response(self, sequence: int, timeout: float | None = None):
        """The response with this sequence number; requests arriving meanwhile are answered and kept."""
        deadline = time.monotonic() + (timeout or self.client.timeout)
        while sequence not in self._responses:
            self._read_one(deadline)
        return self._responses.pop(sequence)

    # ---------------------------------------------------------- inbound
    def expect(self, timeout: float = 5.0, predicate: Callable | None = None):
        """The next deliver_sm (matching predicate), waiting up to timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for pdu in self.inbox:
                if predicate is None or predicate(pdu):
                    self.inbox.remove(pdu)
                    return pdu
            try:
                self._read_one(deadline)
            except TimeoutError:
                raise AssertionError(f"no deliver_sm within {timeout}s; inbox holds {[describe(p) for p in self.inbox]}") from None

    def expect_many(self, count: int, timeout: float = 5.0, predicate: Callable | None = None) -> list:
        deadline = time.monotonic() + timeout
        return [self.expect(max(deadline - time.monotonic(), 0.01), predicate) for _ in range(count)]

    def expect_none(self, within: float, predicate: Callable | None = None) -> None:
        """Listen for `within` seconds: no deliver_sm (matching predicate) may arrive."""
        deadline = time.monotonic() + within
        while True:
            unexpected = [p for p in self.inbox if predicate is None or predicate(p)]
            assert not unexpected, f"unexpected deliver_sm: {[describe(p) for p in unexpected]}"
            try:
                self._read_one(deadline)
            except TimeoutError:
                return

    def read(self, timeout: float = 5.0) -> None:
        """Read the next PDU from the gateway (one has come, select() on `client._socket` says): a deliver_sm goes to
        the inbox (answered if `answering`), a response to `response()`, a request is answered and kept."""
        self._read_one(time.monotonic() + timeout)

    def expect_request(self, command: str, timeout: float = 5.0):
        """The next request of this kind from the gateway (e.g. enquire_link, unbind), already answered."""
        deadline = time.monotonic() + timeout
        while True:
            for pdu in self.requests:
                if pdu.command == command:
                    self.requests.remove(pdu)
                    return pdu
            try:
                self._read_one(deadline)
            except TimeoutError:
                raise AssertionError(f"no {command} from the gateway within {timeout}s") from None

    def expect_closed(self, timeout: float = 5.0) -> None:
        """The gateway closes the connection within timeout (anything it sends first is handled)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._read_one(deadline)
            except exceptions.ConnectionError:
                return
            except TimeoutError:
                raise AssertionError(f"the gateway kept the connection open for {timeout}s") from None

    def _read_one(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.client._socket.settimeout(remaining)
        try:
            pdu = self.client.read_pdu()
        except TimeoutError:
            raise TimeoutError from None
        finally:
            if self.client._socket is not None:
                self.client._socket.settimeout(self.client.timeout)
        if pdu.is_response():
            self._responses[pdu.sequence] = pdu
            return
        if pdu.command == "deliver_sm":
            if self.answering:
                self.client._message_received(pdu)  # smpplib answers with _on_deliver's status
            else:
                self.inbox.append(pdu)
                self.unanswered.append(pdu)
            return
        self.requests.append(pdu)
        if pdu.command == "enquire_link":
            self.client._enquire_link_received(pdu)
        elif pdu.command == "unbind":
            resp = smpp.make_pdu("unbind_resp", client=self.client, sequence=pdu.sequence)
            resp.sequence = pdu.sequence
            self.send(resp)

    def answer_held(self, status: int = ESME_ROK) -> None:
        """Send the deliver_sm_resp for every deliver_sm held back while `answering` was False."""
        for pdu in list(self.unanswered):
            self.answer(pdu, status)

    def answer(self, pdu, status: int = ESME_ROK) -> None:
        """Send the deliver_sm_resp for one deliver_sm held back while `answering` was False."""
        resp = smpp.make_pdu("deliver_sm_resp", client=self.client, status=status)
        resp.sequence = pdu.sequence
        self.send(resp)
        self.unanswered.remove(pdu)

    def _on_deliver(self, pdu) -> int:
        self.inbox.append(pdu)
        return self.answers.popleft() if self.answers else ESME_ROK


# ----------------------------------------------------------- message bodies
def _body(text: str | bytes, fields: dict) -> tuple[bytes, dict]:
    fields = dict(fields)
    if isinstance(text, bytes):
        fields.setdefault("data_coding", 0)
        return text, fields
    coding = fields.setdefault("data_coding", _coding_for(text))
    return encode(text, coding), fields


def _coding_for(text: str) -> int:
    try:
        gsm.gsm_encode(text)
        return 0
    except UnicodeError:
        return 8


def encode(text: str, data_coding: int) -> bytes:
    if data_coding == 0:
        return gsm.gsm_encode(text)
    if data_coding == 3:
        return text.encode("latin-1")
    if data_coding == 8:
        return text.encode("utf-16-be")
    raise ValueError(f"no test encoder for data_coding {data_coding}")


def decode(data: bytes, data_coding: int) -> str:
    """Text from octets. For 0 this is smpplib's GSM 03.38 table, which has '`' where GSM has '§'."""
    if data_coding == 8:
        return data.decode("utf-16-be")
    if data_coding == 3:
        return data.decode("latin-1")
    if data_coding == 0:
        table, out, escape = gsm.GSM_CHARACTER_TABLE, [], False
        for octet in data:
            if octet == 0x1B and not escape:
                escape = True
                continue
            out.append(table[octet + 0x80] if escape else table[octet])
            escape = False
        return "".join(out)
    raise ValueError(f"no test decoder for data_coding {data_coding}")


def body(pdu) -> bytes:
    """The user data octets of a deliver_sm: short_message or message_payload, UDH included."""
    return pdu.short_message or getattr(pdu, "message_payload", None) or b""


@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    seqnum: int


def split_udh(pdu) -> tuple[Concat | None, bytes]:
    """(concatenation info, payload) from a UDH (8- or 16-bit reference) or the sar_* TLVs."""
    data = body(pdu)
    if pdu.esm_class & ESM_UDHI:
        header, payload = data[1 : 1 + data[0]], data[1 + data[0] :]
        i = 0
        while i < len(header):
            iei, length = header[i], header[i + 1]
            value = header[i + 2 : i + 2 + length]
            if iei == 0x00:
                return Concat(value[0], value[1], value[2]), payload
            if iei == 0x08:
                return Concat(struct.unpack(">H", value[:2])[0], value[2], value[3]), payload
            i += 2 + length
        return None, payload
    if getattr(pdu, "sar_total_segments", None):
        return Concat(pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum), data
    return None, data


def text(pdu) -> str:
    """The text a handset shows for one deliver_sm (a UDH is not text)."""
    return decode(split_udh(pdu)[1], pdu.data_coding)


def reassemble(pdus: Iterable) -> str:
    """The text of one long message from all of its parts, in any order."""
    parts = [(split_udh(p), p.data_coding) for p in pdus]
    infos = {(info.reference, info.total) for (info, _), _ in parts if info is not None}
    assert len(infos) == 1 and all(info is not None for (info, _), _ in parts), f"not one concatenated set: {parts}"
    total = infos.pop()[1]
    ordered = sorted(parts, key=lambda item: item[0][0].seqnum)
    assert [info.seqnum for (info, _), _ in ordered] == list(range(1, total + 1)), "parts missing or repeated"
    codings = {coding for _, coding in parts}
    assert len(codings) == 1, f"parts in different codings: {codings}"
    return decode(b"".join(payload for (_, payload), _ in ordered), codings.pop())


def udh16_parts(data: bytes, reference: int, part_size: int = 132) -> list[bytes]:
    """Encoded text split with a 16-bit reference UDH (smpplib only makes 8-bit ones)."""
    chunks = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    head = b"\x06\x08\x04" + struct.pack(">H", reference)
    return [head + bytes([len(chunks), n]) + chunk for n, chunk in enumerate(chunks, 1)]


# ------------------------------------------------------------------ receipts
def is_receipt(pdu) -> bool:
    return bool(pdu.esm_class & ESM_RECEIPT)


def receipt_fields(pdu) -> dict[str, str]:
    """The fields of a delivery receipt's text (SMPP 3.4 appendix B); fails if it is not one."""
    assert is_receipt(pdu), f"not a receipt: esm_class=0x{pdu.esm_class:02x}"
    match = RECEIPT.match(text(pdu))
    assert match, f"not a receipt text: {text(pdu)!r}"
    return match.groupdict()


def describe(pdu) -> str:
    try:
        shown = text(pdu)
    except Exception:  # noqa: BLE001 - only for failure messages
        shown = repr(body(pdu))
    return f"{pdu.command}(from={pdu.source_addr!r} to={pdu.destination_addr!r} esm=0x{pdu.esm_class:02x} {shown!r})"


# ---------------------------------------------------------------- raw socket
def frame(command_id: int, sequence: int, body: bytes = b"", status: int = 0, length: int | None = None) -> bytes:
    """A PDU from its parts; `length` overrides command_length (to send broken ones)."""
    return struct.pack(">LLLL", 16 + len(body) if length is None else length, command_id, status, sequence) + body


def encoded(command: str, sequence: int, **fields) -> bytes:
    """A PDU as smpplib encodes it, with the sequence number we choose."""
    pdu = smpp.make_pdu(command, client=SimpleSequenceGenerator(), **fields)
    pdu.sequence = sequence
    return pdu.generate()


REPLACE_SM, CANCEL_SM = 0x00000007, 0x00000008  # (smpplib has neither)


def cstr(value: str) -> bytes:
    return value.encode("latin-1") + b"\0"


def cancel_sm(sequence: int, source: str, message_id: str = "", dest: str = "", service_type: str = "") -> bytes:
    """4.9.1."""
    return frame(CANCEL_SM, sequence, cstr(service_type) + cstr(message_id) + b"\x01\x01" + cstr(source) + b"\x01\x01" + cstr(dest))


def replace_sm(
    sequence: int, source: str, message_id: str, body: bytes, registered_delivery: int = 0, validity: str = "", schedule: str = "",
    source_addr_ton: int = 1, source_addr_npi: int = 1, tlvs: bytes = b"",
) -> bytes:
    """4.10.1."""
    fields = (
        cstr(message_id) + bytes([source_addr_ton, source_addr_npi]) + cstr(source) + cstr(schedule) + cstr(validity)
        + bytes([registered_delivery, 0, len(body)]) + body + tlvs  # sm_default_msg_id 0
    )  # fmt: skip
    return frame(REPLACE_SM, sequence, fields)


def answer(link: RawLink, sequence: int) -> tuple[int, bytes]:
    """The response to `sequence`: (command_status, body)."""
    data = link.read_frame()
    assert data is not None, "the gateway closed the connection"
    _length, command_id, status, got = struct.unpack(">LLLL", data[:16])
    assert command_id & 0x80000000 and got == sequence, f"0x{command_id:08x} seq {got}"
    return status, data[16:]


class RawLink:
    """A bare TCP connection for what smpplib will not send (wrong state, malformed PDUs)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0, receive_buffer: int | None = None) -> None:
        """`receive_buffer`: SO_RCVBUF, set before connecting (it sets the window offered): a small one fills fast
        when the client stops reading."""
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 5.0):
        """The next PDU from the gateway, parsed by smpplib; None if the connection closed."""
        data = self.read_frame(timeout)
        return None if data is None else smpp.parse_pdu(data, client=SimpleSequenceGenerator(), allow_unknown_opt_params=True)

    def read_frame(self, timeout: float = 5.0) -> bytes | None:
        """The next PDU from the gateway as bytes (for what smpplib cannot parse); None if the connection closed."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < 4 or len(self._buffer) < struct.unpack(">L", self._buffer[:4])[0]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no PDU within {timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:  # (the socket's own, when recv outlasts what was left)
                raise AssertionError(f"no PDU within {timeout}s") from None
            if not chunk:
                return None
            self._buffer += chunk
        length = struct.unpack(">L", self._buffer[:4])[0]
        data, self._buffer = self._buffer[:length], self._buffer[length:]
        return data

    def exchange(self, data: bytes, replies: int = 1) -> list:
        self.send(data)
        return [self.read() for _ in range(replies)]

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the gateway closes the connection within timeout (after any PDUs still to read)."""
        try:
            while self.read(timeout) is not None:
                pass
        except AssertionError:
            return False
        except ConnectionResetError:
            return True
        return True

    def bind(self, system_id: str = "handset", password: str | None = None, command: str = "bind_transceiver"):
        resp = self.exchange(encoded(command, 1, system_id=system_id, password=password or system_id))[0]
        assert resp.command == command + "_resp" and resp.status == ESME_ROK, describe_status(resp)
        return resp

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawLink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def raw_exchange(port: int, data: bytes, replies: int = 1) -> list:
    """Send bytes on a fresh connection; the replies, parsed by smpplib (None where it closed)."""
    with RawLink(port) as link:
        return link.exchange(data, replies)


def describe_status(pdu) -> str:
    if pdu is None:
        return "connection closed"
    return f"{pdu.command} status=0x{pdu.status:02x} ({consts.DESCRIPTIONS.get(pdu.status, '?')})"


def texts_from(phone: Handset, source: str, count: int = 1, timeout: float = 5.0) -> list[str]:
    """The next `count` whole texts `phone` gets from `source` (multi-part ones reassembled), in order of completion."""
    deadline = time.monotonic() + timeout
    whole: list[str] = []
    parts: dict[int, list] = {}
    while len(whole) < count:
        pdu = phone.expect(max(deadline - time.monotonic(), 0.01), lambda p: p.source_addr == source.encode())
        concat, _ = split_udh(pdu)
        if concat is None:
            whole.append(text(pdu))
            continue
        parts.setdefault(concat.reference, []).append(pdu)
        if len(parts[concat.reference]) == concat.total:
            whole.append(reassemble(parts.pop(concat.reference)))
    return whole
