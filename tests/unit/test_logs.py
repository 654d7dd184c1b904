"""Console log lines: a traceback's control characters (an exception's message may quote a peer's bytes)."""

from __future__ import annotations

from gateway.logs import escape_control_characters


def test_a_traceback_on_a_terminal_keeps_its_lines_and_has_its_other_control_characters_escaped() -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad \x1b[2J\x9b\t\r\nÉ 短信\n'
    event = escape_control_characters(None, "error", {"event": "handler failed", "exception": traceback})
    assert event["exception"] == 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad \\x1b[2J\\x9b\\t\\r\nÉ 短信\n'
