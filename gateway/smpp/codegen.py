"""Straight-line decoders and encoders for each PDU class, written from its FIELDS table.

Why: the table-driven codec (codec.py `_decode_fields` / `_encode_fields`)
pays, for every field of every PDU, a loop step, a dispatch on the field kind,
a dict store and finally a keyword-argument call with ~20 names; a submit_sm
cost ~7 us to decode, more than everything else the null server does with it.
A function that reads the same fields in the same order, with the offsets and
checks spelled out, does the same work in a fraction of that. Writing those
functions by hand for 27 PDU classes would be a second copy of the tables to
keep in step; so codec.py generates them once, at import, from the tables.
The table-driven functions stay as the reference (tests compare the two) and
for responses whose body stops early.

The generated code is meant to be read: `python -m gateway.smpp.codegen
submit_sm` prints the decoder and encoder of one PDU.

Behaviour is the table-driven codec's, exactly: the same fields in the same
order, the same PduError statuses and messages, the same ValueErrors when
encoding a field that does not fit.
"""

from __future__ import annotations

import sys
from dataclasses import fields

from .constants import RESPONSE_BIT, CommandId, CommandStatus
from .pdu import CSTR, DESTS, PDU_CLASSES, SM, U8, UNSUCC, Pdu

# The generated functions' globals (codec.py provides them):
#   PduError, S (CommandStatus), _new (object.__new__), each PDU class by name,
#   _missing, _unterminated, _response_cstr, _tlvs, _decode_dests, _decode_unsuccess,
#   _too_long, _encode_dests, _encode_unsuccess.


def function_name(cls: type[Pdu]) -> str:
    return CommandId(cls.command_id).name.lower()


def _status(value: int) -> str:
    return f"S.{CommandStatus(value).name}"


def _u8_runs(cls: type[Pdu]) -> list[list[tuple]]:
    """FIELDS split into runs: consecutive 1-octet integers together, every other field alone.

    A response may stop after any field, so its fields are never grouped.
    """
    runs: list[list[tuple]] = []
    grouping = not cls.command_id & RESPONSE_BIT
    for entry in cls.FIELDS:
        if grouping and entry[1] == U8 and runs and runs[-1][0][1] == U8:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


# ------------------------------------------------------------------ decoder
def decoder_source(cls: type[Pdu]) -> str:
    """`decode_<name>(body, end, sequence, status)`: the PDU from a whole frame (header included).

    Returns None for a response whose body stops before its last field:
    decode_pdu then lets the table-driven decoder fill in the defaults.
    """
    _check_fields_cover_dataclass(cls)
    is_response = bool(cls.command_id & RESPONSE_BIT)
    out = [f"def decode_{function_name(cls)}(body, end, sequence, status):", "    pos = 16"]
    for run in _u8_runs(cls):
        if is_response:
            out += ["    if pos >= end:", "        return None  # body stops early (e.g. an error response)"]
        name, kind, size, err = run[0]
        if kind == U8 and is_response:
            out += [f"    f_{name} = body[pos]", "    pos += 1"]  # one octet: pos < end was just checked
        elif kind == U8:
            out += _decode_u8_run(run)
        elif kind == CSTR and is_response:  # read however long, even unterminated: see _response_cstr
            out.append(f"    f_{name}, pos = _response_cstr(body, pos, end)")
        elif kind == CSTR:
            # An empty one (most service_type and time fields) is its NUL alone: read without a call to find.
            out += [
                "    if pos < end and not body[pos]:",
                f'        f_{name} = ""',
                "        pos += 1",
                "    else:",
                f'        nul = body.find(b"\\0", pos, pos + {size})',
                "        if nul < 0:",
                f'            raise _unterminated(body, pos, {size}, {_status(err)}, "{name}")',
                f'        f_{name} = body[pos:nul].decode("latin-1")',
                "        pos = nul + 1",
            ]
        elif kind == SM:
            out += [
                "    if pos >= end:",
                '        raise PduError(S.ESME_RINVCMDLEN, "PDU ends before sm_length")',
                "    sm_length = body[pos]",
                "    pos += 1",
                f"    if sm_length > {size}:",
                f'        raise PduError({_status(err)}, f"sm_length {{sm_length}} is over {size}")',
                "    if pos + sm_length > end:",
                f'        raise PduError({_status(err)}, f"sm_length {{sm_length}} runs past the PDU")',
                f"    f_{name} = body[pos : pos + sm_length]",
                "    pos += sm_length",
            ]
        elif kind == DESTS:
            out.append(f"    f_{name}, pos = _decode_dests(body, pos, end)")
        elif kind == UNSUCC:
            out.append(f"    f_{name}, pos = _decode_unsuccess(body, pos, end)")
        else:
            raise ValueError(f"{cls.__name__}.{name}: unknown field kind {kind}")
    out += [
        # A response is not refused for its TLVs (see _tlvs): that would leave its request unanswered, sent again.
        f"    tlvs = _tlvs(body, pos, end{', False' if is_response else ''}) if pos < end else {{}}",
        "    # Every field is set here, so the dataclass __init__ (a keyword call) is not needed.",
        f"    pdu = _new({cls.__name__})",
        "    pdu.sequence_number = sequence",
        "    pdu.command_status = status",
    ]
    out += [f"    pdu.{name} = f_{name}" for name, *_ in cls.FIELDS]
    out += ["    pdu.tlvs = tlvs", "    return pdu"]
    return "\n".join(out) + "\n"


def _decode_u8_run(run: list[tuple]) -> list[str]:
    names = tuple(name for name, *_ in run)
    out = [f"    if end - pos < {len(run)}:", f"        raise _missing({names!r}, end - pos)"]
    for i, name in enumerate(names):
        out.append(f"    f_{name} = body[pos + {i}]" if i else f"    f_{name} = body[pos]")
    out.append(f"    pos += {len(run)}")
    return out


def _check_fields_cover_dataclass(cls: type[Pdu]) -> None:
    """The decoder sets attributes without __init__: it must set every one, and nothing may hide in __post_init__."""
    declared = {f.name for f in fields(cls)}
    decoded = {name for name, *_ in cls.FIELDS} | {"sequence_number", "command_status", "tlvs"}
    if declared != decoded or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: FIELDS {sorted(decoded)} do not match the dataclass {sorted(declared)}")


# ------------------------------------------------------------------ encoder
def encoder_source(cls: type[Pdu]) -> str:
    """`encode_<name>(pdu)`: the body (mandatory fields only; codec.py adds the header and TLVs)."""
    out = [f"def encode_{function_name(cls)}(pdu):"]
    parts: list[str] = []
    for run in _u8_runs(cls):
        name, kind, size, _err = run[0]
        if kind == U8:
            # Each run of 1-octet fields becomes one bytes object, built where the
            # table-driven encoder reached it (so the first bad field raises first).
            # bytes() refuses a value outside 0..255 with ValueError, as bytearray.append did.
            values = ", ".join(f"pdu.{n}" for n, *_ in run)
            octets = f"octets{sum(p.startswith('octets') for p in parts) + 1}"
            out.append(f"    {octets} = bytes(({values}{',' if len(run) == 1 else ''}))")
            parts.append(octets)
        elif kind == CSTR:
            out += [
                f'    f_{name} = pdu.{name}.encode("latin-1")',
                f"    if len(f_{name}) >= {size}:",
                f'        raise _too_long("{name}", f_{name}, {size})',
            ]
            parts += [f"f_{name}", 'b"\\0"']
        elif kind == SM:
            out += [
                f"    f_{name} = pdu.{name}",
                f"    if len(f_{name}) > {size}:",
                f'        raise ValueError(f"short_message is {{len(f_{name})}} octets; use message_payload beyond {size}")',
            ]
            parts += [f"bytes((len(f_{name}),))", f"f_{name}"]
        elif kind == DESTS:
            out.append(f"    f_{name} = _encode_dests(pdu.{name})")
            parts.append(f"f_{name}")
        elif kind == UNSUCC:
            out.append(f"    f_{name} = _encode_unsuccess(pdu.{name})")
            parts.append(f"f_{name}")
        else:
            raise ValueError(f"{cls.__name__}.{name}: unknown field kind {kind}")
    if not parts:
        out.append('    return b""')
    elif len(parts) == 1:
        out.append(f"    return {parts[0]}")
    else:
        out.append("    return b\"\".join((")
        out += [f"        {part}," for part in parts]
        out.append("    ))")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    wanted = {name.lower() for name in argv} or None
    for cls in PDU_CLASSES.values():
        if wanted is None or function_name(cls) in wanted:
            print(decoder_source(cls))
            print(encoder_source(cls))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
