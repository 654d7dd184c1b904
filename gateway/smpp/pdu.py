"""SMPP 3.4 PDUs as small dataclasses.

Each class names its command id and lists its mandatory fields in wire order
(`FIELDS`). The codec (`codec.py`) reads and writes any PDU from that table;
nothing here knows about bytes beyond the field kinds.

Optional parameters live in `tlvs`, keyed by tag: standard integer TLVs as
int, C-string TLVs as str, everything else (and unknown/vendor tags) as the
raw value bytes, so they pass through unchanged; a tag that may come more than
once and did holds the list of its values (see tlv.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .constants import CommandId, CommandStatus
from .tlv import TlvValue

S = CommandStatus

# Field kinds
CSTR = 0  # C-Octet String; size is the maximum length including the NUL
U8 = 1  # 1-octet integer
SM = 2  # sm_length + short_message (0..254 octets)
DESTS = 3  # submit_multi: number_of_dests + dest_address list
UNSUCC = 4  # submit_multi_resp: no_unsuccess + unsuccess_sme list

# (name, kind, size, status when the field is malformed)
Field = tuple[str, int, int, int]


@dataclass(slots=True, kw_only=True)
class Pdu:
    command_id: ClassVar[int]
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    sequence_number: int = 0
    command_status: int = 0
    tlvs: dict[int, TlvValue] = field(default_factory=dict)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & 0x80000000)

    @property
    def name(self) -> str:
        return CommandId(self.command_id).name.lower()


@dataclass(slots=True, kw_only=True)
class MultiDest:
    """One dest_address of submit_multi: an SME address (flag 1) or a distribution list (flag 2)."""

    dest_flag: int = 1
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    dl_name: str = ""


@dataclass(slots=True, kw_only=True)
class UnsuccessSme:
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


# ----------------------------------------------------------------- bind
_BIND_FIELDS: tuple[Field, ...] = (
    ("system_id", CSTR, 16, S.ESME_RINVSYSID),
    ("password", CSTR, 9, S.ESME_RINVPASWD),
    ("system_type", CSTR, 13, S.ESME_RINVSYSTYP),
    ("interface_version", U8, 1, S.ESME_RBINDFAIL),
    ("addr_ton", U8, 1, S.ESME_RBINDFAIL),
    ("addr_npi", U8, 1, S.ESME_RBINDFAIL),
    ("address_range", CSTR, 41, S.ESME_RBINDFAIL),
)
_BIND_RESP_FIELDS: tuple[Field, ...] = (("system_id", CSTR, 16, S.ESME_RINVSYSID),)


@dataclass(slots=True, kw_only=True)
class _Bind(Pdu):
    FIELDS = _BIND_FIELDS
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True, kw_only=True)
class _BindResp(Pdu):
    FIELDS = _BIND_RESP_FIELDS
    system_id: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(slots=True, kw_only=True)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(slots=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True, kw_only=True)
class Outbind(Pdu):
    command_id = CommandId.OUTBIND
    FIELDS = (("system_id", CSTR, 16, S.ESME_RINVSYSID), ("password", CSTR, 9, S.ESME_RINVPASWD))
    system_id: str = ""
    password: str = ""


# ------------------------------------------------------- header-only PDUs
@dataclass(slots=True, kw_only=True)
class Unbind(Pdu):
    command_id = CommandId.UNBIND


@dataclass(slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id = CommandId.UNBIND_RESP


@dataclass(slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id = CommandId.ENQUIRE_LINK


@dataclass(slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id = CommandId.GENERIC_NACK


@dataclass(slots=True, kw_only=True)
class CancelSmResp(Pdu):
    command_id = CommandId.CANCEL_SM_RESP


@dataclass(slots=True, kw_only=True)
class ReplaceSmResp(Pdu):
    command_id = CommandId.REPLACE_SM_RESP


# ------------------------------------------------------------ messages
_SM_FIELDS: tuple[Field, ...] = (
    ("service_type", CSTR, 6, S.ESME_RINVSERTYP),
    ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
    ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
    ("source_addr", CSTR, 21, S.ESME_RINVSRCADR),
    ("dest_addr_ton", U8, 1, S.ESME_RINVDSTTON),
    ("dest_addr_npi", U8, 1, S.ESME_RINVDSTNPI),
    ("destination_addr", CSTR, 21, S.ESME_RINVDSTADR),
    ("esm_class", U8, 1, S.ESME_RINVESMCLASS),
    ("protocol_id", U8, 1, S.ESME_RINVCMDLEN),
    ("priority_flag", U8, 1, S.ESME_RINVPRTFLG),
    ("schedule_delivery_time", CSTR, 17, S.ESME_RINVSCHED),
    ("validity_period", CSTR, 17, S.ESME_RINVEXPIRY),
    ("registered_delivery", U8, 1, S.ESME_RINVREGDLVFLG),
    ("replace_if_present_flag", U8, 1, S.ESME_RINVREPFLAG),
    ("data_coding", U8, 1, S.ESME_RINVCMDLEN),
    ("sm_default_msg_id", U8, 1, S.ESME_RINVDFTMSGID),
    ("short_message", SM, 254, S.ESME_RINVMSGLEN),
)


@dataclass(slots=True, kw_only=True)
class _ShortMessage(Pdu):
    FIELDS = _SM_FIELDS
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitSm(_ShortMessage):
    command_id = CommandId.SUBMIT_SM


@dataclass(slots=True, kw_only=True)
class DeliverSm(_ShortMessage):
    command_id = CommandId.DELIVER_SM


_MESSAGE_ID_FIELDS: tuple[Field, ...] = (("message_id", CSTR, 65, S.ESME_RINVMSGID),)


@dataclass(slots=True, kw_only=True)
class _MessageIdResp(Pdu):
    FIELDS = _MESSAGE_ID_FIELDS
    message_id: str = ""


@dataclass(slots=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


@dataclass(slots=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


@dataclass(slots=True, kw_only=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(slots=True, kw_only=True)
class DataSm(Pdu):
    command_id = CommandId.DATA_SM
    FIELDS = (
        ("service_type", CSTR, 6, S.ESME_RINVSERTYP),
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 65, S.ESME_RINVSRCADR),
        ("dest_addr_ton", U8, 1, S.ESME_RINVDSTTON),
        ("dest_addr_npi", U8, 1, S.ESME_RINVDSTNPI),
        ("destination_addr", CSTR, 65, S.ESME_RINVDSTADR),
        ("esm_class", U8, 1, S.ESME_RINVESMCLASS),
        ("registered_delivery", U8, 1, S.ESME_RINVREGDLVFLG),
        ("data_coding", U8, 1, S.ESME_RINVCMDLEN),
    )
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


@dataclass(slots=True, kw_only=True)
class QuerySm(Pdu):
    command_id = CommandId.QUERY_SM
    FIELDS = (
        ("message_id", CSTR, 65, S.ESME_RINVMSGID),
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 21, S.ESME_RINVSRCADR),
    )
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(slots=True, kw_only=True)
class QuerySmResp(Pdu):
    command_id = CommandId.QUERY_SM_RESP
    FIELDS = (
        ("message_id", CSTR, 65, S.ESME_RINVMSGID),
        ("final_date", CSTR, 17, S.ESME_RINVCMDLEN),
        ("message_state", U8, 1, S.ESME_RINVCMDLEN),
        ("error_code", U8, 1, S.ESME_RINVCMDLEN),
    )
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True, kw_only=True)
class CancelSm(Pdu):
    command_id = CommandId.CANCEL_SM
    FIELDS = (
        ("service_type", CSTR, 6, S.ESME_RINVSERTYP),
        ("message_id", CSTR, 65, S.ESME_RINVMSGID),
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 21, S.ESME_RINVSRCADR),
        ("dest_addr_ton", U8, 1, S.ESME_RINVDSTTON),
        ("dest_addr_npi", U8, 1, S.ESME_RINVDSTNPI),
        ("destination_addr", CSTR, 21, S.ESME_RINVDSTADR),
    )
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(slots=True, kw_only=True)
class ReplaceSm(Pdu):
    command_id = CommandId.REPLACE_SM
    FIELDS = (
        ("message_id", CSTR, 65, S.ESME_RINVMSGID),
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 21, S.ESME_RINVSRCADR),
        ("schedule_delivery_time", CSTR, 17, S.ESME_RINVSCHED),
        ("validity_period", CSTR, 17, S.ESME_RINVEXPIRY),
        ("registered_delivery", U8, 1, S.ESME_RINVREGDLVFLG),
        ("sm_default_msg_id", U8, 1, S.ESME_RINVDFTMSGID),
        ("short_message", SM, 254, S.ESME_RINVMSGLEN),
    )
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitMulti(Pdu):
    command_id = CommandId.SUBMIT_MULTI
    FIELDS = (
        ("service_type", CSTR, 6, S.ESME_RINVSERTYP),
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 21, S.ESME_RINVSRCADR),
        ("dest_addresses", DESTS, 255, S.ESME_RINVNUMDESTS),
    ) + _SM_FIELDS[7:]
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: list[MultiDest] = field(default_factory=list)
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitMultiResp(Pdu):
    command_id = CommandId.SUBMIT_MULTI_RESP
    FIELDS = (
        ("message_id", CSTR, 65, S.ESME_RINVMSGID),
        ("unsuccess_smes", UNSUCC, 255, S.ESME_RINVCMDLEN),
    )
    message_id: str = ""
    unsuccess_smes: list[UnsuccessSme] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class AlertNotification(Pdu):
    command_id = CommandId.ALERT_NOTIFICATION
    FIELDS = (
        ("source_addr_ton", U8, 1, S.ESME_RINVSRCTON),
        ("source_addr_npi", U8, 1, S.ESME_RINVSRCNPI),
        ("source_addr", CSTR, 65, S.ESME_RINVSRCADR),
        ("esme_addr_ton", U8, 1, S.ESME_RINVDSTTON),
        ("esme_addr_npi", U8, 1, S.ESME_RINVDSTNPI),
        ("esme_addr", CSTR, 65, S.ESME_RINVDSTADR),
    )
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        BindTransmitter, BindTransmitterResp, BindReceiver, BindReceiverResp,
        BindTransceiver, BindTransceiverResp, Outbind, Unbind, UnbindResp,
        EnquireLink, EnquireLinkResp, GenericNack, SubmitSm, SubmitSmResp,
        DeliverSm, DeliverSmResp, DataSm, DataSmResp, QuerySm, QuerySmResp,
        CancelSm, CancelSmResp, ReplaceSm, ReplaceSmResp, SubmitMulti,
        SubmitMultiResp, AlertNotification,
    )
}  # fmt: skip

# The response class for each request (alert_notification and outbind have none).
RESPONSE_OF: dict[int, type[Pdu]] = {
    cid: PDU_CLASSES[cid | 0x80000000]
    for cid in PDU_CLASSES
    if not cid & 0x80000000 and (cid | 0x80000000) in PDU_CLASSES
}

# Responses whose body "is not returned if the command_status field contains a non-zero value" (4.1.2, 4.1.4,
# 4.1.6, 4.4.2, 4.6.2, 4.7.2, 4.8.2), by the one field that, left empty, lets the body go.
BODYLESS_ON_ERROR: dict[int, str] = {
    CommandId.SUBMIT_SM_RESP: "message_id",
    CommandId.DELIVER_SM_RESP: "message_id",
    CommandId.DATA_SM_RESP: "message_id",
    CommandId.QUERY_SM_RESP: "message_id",
    CommandId.BIND_TRANSMITTER_RESP: "system_id",
    CommandId.BIND_RECEIVER_RESP: "system_id",
    CommandId.BIND_TRANSCEIVER_RESP: "system_id",
}


def response_to(request: Pdu, status: int = 0, **fields: object) -> Pdu:
    """The response PDU for `request`, same sequence number."""
    cls = RESPONSE_OF.get(request.command_id, GenericNack)
    return cls(sequence_number=request.sequence_number, command_status=status, **fields)
