"""The Vonage Voice API WebSocket: a pure model of its messages, and the NCCO that opens it.

Grammar, as Vonage's WebSockets guide documents it (developer.vonage.com, "WebSockets in
the Vonage Voice API"), on the socket Vonage opens to the NCCO ``connect`` endpoint's uri:
  inbound  text    {"event":"websocket:connected","content-type":"audio/l16;rate=16000", ...}
                   first; the NCCO endpoint's ``headers`` are flattened into it, top level
           binary  16-bit little-endian linear PCM, mono, one 20 ms frame a message:
                   320 bytes at 8 kHz, 640 at 16 kHz, 960 at 24 kHz (24 kHz since 2026)
           text    {"event":"websocket:dtmf","digit":"5","duration":260}
                   {"event":"websocket:notify","payload":{...}}  our notify's payload, once
                   the audio queued before it has played
                   {"event":"websocket:cleared"}                  the answer to a clear
  outbound binary  the same PCM frames, exactly one 20 ms frame a message
           text    {"action":"clear"}  {"action":"notify","payload":{"name":"r1.s0"}}

Sources differ on the DTMF event: Vonage's guide puts ``digit`` at the top level; Pipecat's
VonageFrameSerializer also looks in a nested ``dtmf.digit``. The guide's shape is read first,
the nested one accepted too (it costs nothing and matches what Pipecat has seen).
No sockets here: the protocol feeds messages in and sends what these functions make.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

from voiced.audio import SAMPLE_RATES, AudioFormat

EVENT_CONNECTED = "websocket:connected"
EVENT_DTMF = "websocket:dtmf"
EVENT_NOTIFY = "websocket:notify"
EVENT_CLEARED = "websocket:cleared"

DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: Header fields kept from ``websocket:connected`` (ours are five; the rest is the operator's NCCO).
MAX_HEADER_FIELDS = 32
MAX_HEADER_VALUE = 500
_COMPACT = (",", ":")
_CONTENT_TYPE = re.compile(r"\s*audio/l16\s*;\s*rate\s*=\s*(\d{4,5})\s*", re.IGNORECASE)


class ProtocolError(ValueError):
    """An inbound text message that cannot be understood (bad JSON, missing or wrong fields)."""


@dataclass(frozen=True)
class Connected:
    content_type: str  # "" when Vonage sent none
    headers: dict[str, str] = field(default_factory=dict)  # the NCCO endpoint's headers, as text


@dataclass(frozen=True)
class Dtmf:
    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True)
class Notify:
    name: str  # the playback marker our notify carried


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class Unknown:
    event: str


InboundMessage = Union[Connected, Dtmf, Notify, Cleared, Unknown]


#: The header naming the dial of a call voiced placed (voiced.outbound.vonage_dial).
DIAL_HEADER = "voiced_dial"


def content_type(sample_rate: int) -> str:
    return f"audio/l16;rate={sample_rate}"


def audio_format(text: str) -> AudioFormat | None:
    """The call's audio for a ``content-type`` (``audio/l16;rate=16000``); None when voiced cannot take it."""
    match = _CONTENT_TYPE.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) not in SAMPLE_RATES:
        return None
    return AudioFormat("pcm_s16le", int(match.group(1)))


def _text(value: Any) -> str:
    """A header value as text: strings as they are, anything else (numbers, the nested
    objects Vonage's guide allows in headers) as compact JSON."""
    text = value if isinstance(value, str) else json.dumps(value, separators=_COMPACT, ensure_ascii=False)
    return text[:MAX_HEADER_VALUE]


def _object(text: str | bytes) -> dict:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


def _digit(message: dict) -> str:
    digit = message.get("digit")
    if digit is None and isinstance(message.get("dtmf"), dict):
        digit = message["dtmf"].get("digit")
    if isinstance(digit, int) and not isinstance(digit, bool) and 0 <= digit <= 9:
        digit = str(digit)
    if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS or len(digit) != 1:
        raise ProtocolError(f"websocket:dtmf digit is not one key: {str(digit)[:20]!r}")
    return digit.upper()


def parse_text(text: str | bytes) -> InboundMessage:
    """One inbound text message. Raises ProtocolError (and nothing else) on malformed input."""
    message = _object(text)
    event = message.get("event")
    if not isinstance(event, str):
        raise ProtocolError("message has no 'event'")
    if event == EVENT_DTMF:
        duration = message.get("duration")
        ms = duration if isinstance(duration, int) and not isinstance(duration, bool) else None
        return Dtmf(_digit(message), ms)
    if event == EVENT_NOTIFY:
        payload = message.get("payload")
        name = payload.get("name") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not name:
            raise ProtocolError("websocket:notify payload has no marker 'name'")
        return Notify(name)
    if event == EVENT_CONNECTED:
        kind = message.get("content-type", "")
        headers: dict[str, str] = {}
        for key, value in message.items():
            if key in ("event", "content-type") or value is None:
                continue
            if len(headers) == MAX_HEADER_FIELDS:
                break
            headers[key[:100]] = _text(value)
        return Connected(kind if isinstance(kind, str) else "", headers)
    if event == EVENT_CLEARED:
        return Cleared()
    return Unknown(event[:100])


# Outbound. Compact JSON keeps each control frame small.
CLEAR_MESSAGE = '{"action":"clear"}'


def notify_message(name: str) -> str:
    return json.dumps({"action": "notify", "payload": {"name": name}}, separators=_COMPACT)


def connect_ncco(uri: str, sample_rate: int, headers: dict[str, str], signed_upgrade: bool) -> list[dict]:
    """The NCCO that connects the call to voiced's WebSocket and nothing else: when the
    socket closes, the connect action ends and, with no action after it, so does the call.

    ``headers`` come back in ``websocket:connected``. ``signed_upgrade`` asks Vonage to sign
    the upgrade with the same JWT as its signed webhooks (``authorization: {"type":
    "vonage"}``, in Vonage's SDKs since March 2026)."""
    endpoint: dict[str, Any] = {"type": "websocket", "uri": uri, "content-type": content_type(sample_rate),
                                "headers": headers}
    if signed_upgrade:
        endpoint["authorization"] = {"type": "vonage"}
    return [{"action": "connect", "endpoint": [endpoint]}]


def header_bytes(headers: dict[str, str]) -> int:
    """The size Vonage counts against its limit on an endpoint's headers (512 bytes in its guide)."""
    return len(json.dumps(headers, separators=_COMPACT, ensure_ascii=False).encode("utf-8"))
