"""A faster ``json.loads`` for the JSON carriers' media messages (Twilio, Telnyx, Exotel,
Plivo): fifty of them a call-second, each one JSON object with no surrounding whitespace."""

from __future__ import annotations

import json

# The C scanner json.loads ends in, without its two Python layers and two whitespace
# regex matches: ~1.3 µs of a ~3 µs parse of one media message.
_scan_once = json.JSONDecoder().scan_once


def loads(text: str | bytes) -> object:
    """``json.loads(text)``, the same value or the same exception, faster on a str that is
    one JSON value with no surrounding whitespace (every media message)."""
    if type(text) is bytes and text[:1] == b"{" and text[1:2] not in (b"", b"\0"):
        # What json.loads does with bytes that open with "{" and a second non-NUL byte
        # (json.detect_encoding says UTF-8), errors included.
        text = text.decode("utf-8", "surrogatepass")
    if type(text) is str:
        try:
            value, end = _scan_once(text, 0)
        except Exception:  # StopIteration (whitespace, a BOM, nothing), JSONDecodeError, RecursionError
            pass  # json.loads below raises its own exception for it
        else:
            if end == len(text):
                return value
    return json.loads(text)  # bytes, whitespace, trailing data: its own checks and messages
