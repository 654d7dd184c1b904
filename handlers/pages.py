"""Texts cut into pages at natural boundaries, each page marked "(i/N)".

Operators send some long notices as separate SMS, each marked "(1/2)",
"(2/2)" and cut between items, rather than as one concatenated message (the
"(1/2)中国移动温馨提示…" reminder of SPEC 3.2). USSD screens page the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.smpp.text import is_gsm, septet_length

SMS_GSM_CHARACTERS = 160
SMS_UCS2_CHARACTERS = 70


def fits_one_sms(text: str) -> bool:
    if is_gsm(text):
        return septet_length(text) <= SMS_GSM_CHARACTERS
    return len(text.encode("utf-16-be")) // 2 <= SMS_UCS2_CHARACTERS


def paginate(pieces: Sequence[str], marker: Callable[[int, int], str]) -> list[str]:
    """Join pieces into as few pages as fit, never cutting a piece; mark them when there are several.

    A piece too long for a page alone gets a page of its own (the gateway then
    sends that page as a concatenated message).
    """
    widest = marker(len(pieces), len(pieces))
    pages: list[str] = []
    current = ""
    for piece in pieces:
        if current and not fits_one_sms(widest + current + piece):
            pages.append(current)
            current = piece
        else:
            current += piece
    if current:
        pages.append(current)
    if len(pages) == 1:
        return pages
    return [marker(i, len(pages)) + page for i, page in enumerate(pages, 1)]
