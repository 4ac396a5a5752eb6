"""Asterisk chan_websocket's control messages: a pure model, parsed from and serialized to text.

Asterisk (20.16 / 21.11 / 22.6 / 23.0 and later) dials ``WebSocket/<connection>/c(ulaw)``
by connecting to the connection's URI. Binary frames carry raw media in the dial
string's codec (ulaw: 160 bytes per 20 ms); text frames carry control, in one of two
formats (checked against channels/chan_websocket.c and docs.asterisk.org's
Configuration/Channel-Drivers/WebSocket):

  plain-text   ``EVENT key:value key:value`` on one line; ``MEDIA_MARK_PROCESSED <id>``
               and ``MEDIA_BUFFERING_COMPLETED <id>`` carry a bare id. Commands are
               ``COMMAND`` or ``COMMAND <id>``. The only format before 20.18 / 22.8 / 23.2.
  json         ``{"event": "MEDIA_START", ...}`` (20.18 / 22.8 / 23.2 and later, with
               ``f(json)`` in the dial string or chan_websocket.conf); commands are
               ``{"command": "MARK_MEDIA", "correlation_id": "..."}``. Only JSON carries
               ``channel_variables`` in MEDIA_START.

Events voiced acts on: MEDIA_START (connection_id, channel, channel_id, format,
optimal_frame_size, ptime), DTMF_END (digit), MEDIA_MARK_PROCESSED (the playback echo
of MARK_MEDIA, which arrived with JSON in 20.18 / 22.8 / 23.2), MEDIA_XOFF / MEDIA_XON
(its queue of ~1000 frames is filling / has room again), ERROR. Commands voiced
sends: MARK_MEDIA, FLUSH_MEDIA (barge-in) and HANGUP. No sockets here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Union

from voiced.audio import AudioFormat


class ProtocolError(ValueError):
    """A control message that cannot be understood."""


@dataclass(frozen=True)
class MediaStart:
    connection_id: str
    channel: str
    channel_id: str  # the channel's unique id ("" on 21.x and before 20.17 / 22.7 / 23.1)
    format: str  # Asterisk's format name: ulaw, alaw, slin, slin16...
    optimal_frame_size: int  # bytes of one ptime frame of that format
    ptime: int
    variables: dict[str, str] = field(default_factory=dict)  # JSON only
    json: bool = False  # the control format Asterisk speaks on this socket


@dataclass(frozen=True)
class DtmfEnd:
    digit: str


@dataclass(frozen=True)
class MarkProcessed:
    correlation_id: str


@dataclass(frozen=True)
class FlowControl:
    """MEDIA_XOFF (``paused``): stop sending media; MEDIA_XON: there is room again."""

    paused: bool


@dataclass(frozen=True)
class AsteriskError:
    text: str


@dataclass(frozen=True)
class Notice:
    """An event voiced only logs (STATUS, QUEUE_DRAINED, MEDIA_BUFFERING_COMPLETED, new ones)."""

    event: str
    text: str


Event = Union[MediaStart, DtmfEnd, MarkProcessed, FlowControl, AsteriskError, Notice]

DTMF_DIGITS = frozenset("0123456789*#ABCD")
_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}\Z")
MAX_ID = 256  # a correlation id or connection id longer than this is not Asterisk's

#: Asterisk's format names voiced speaks, as the call's audio. Asterisk's slin* are signed
#: 16-bit in host byte order, which chan_websocket sends as they are: little-endian on
#: the x86-64 and ARM machines Asterisk runs on.
FORMATS = {
    "ulaw": AudioFormat("mulaw", 8000),
    "alaw": AudioFormat("alaw", 8000),
    "slin": AudioFormat("pcm_s16le", 8000),
    "slin16": AudioFormat("pcm_s16le", 16000),
    "slin24": AudioFormat("pcm_s16le", 24000),
}


def audio_format(name: str) -> AudioFormat | None:
    """The call's audio for Asterisk's format ``name``; None when voiced does not speak it."""
    return FORMATS.get(name)


def _text(value: object, what: str, limit: int = MAX_ID) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{what} is not a string")
    if len(value) > limit:
        raise ProtocolError(f"{what} is longer than {limit} characters")
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ProtocolError(f"{what} is not an integer: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        number = int(value)
    else:
        raise ProtocolError(f"{what} is not an integer: {str(value)[:40]!r}")
    if not 0 < number <= 65500:  # Asterisk's largest WebSocket message
        raise ProtocolError(f"{what} is out of range: {number}")
    return number


def _digit(value: object) -> DtmfEnd:
    digit = _text(value, "DTMF_END digit", 1).upper()
    if digit not in DTMF_DIGITS:
        raise ProtocolError(f"DTMF_END digit {digit!r} is not one of 0-9, *, #, A-D")
    return DtmfEnd(digit)


def _variables(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("MEDIA_START channel_variables is not an object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _media_start(fields: dict, is_json: bool) -> MediaStart:
    def need(key: str) -> object:
        if key not in fields:
            raise ProtocolError(f"MEDIA_START lacks {key!r}")
        return fields[key]

    return MediaStart(
        connection_id=_text(need("connection_id"), "MEDIA_START connection_id"),
        channel=_text(fields.get("channel", ""), "MEDIA_START channel"),
        channel_id=_text(fields.get("channel_id", ""), "MEDIA_START channel_id"),
        format=_text(need("format"), "MEDIA_START format", 32),
        optimal_frame_size=_int(need("optimal_frame_size"), "MEDIA_START optimal_frame_size"),
        ptime=_int(fields.get("ptime", 20), "MEDIA_START ptime"),
        variables=_variables(fields.get("channel_variables")) if is_json else {},
        json=is_json,
    )


def _event(name: str, fields: dict, argument: str, is_json: bool) -> Event:
    if name == "MEDIA_START":
        return _media_start(fields, is_json)
    if name == "DTMF_END":
        if "digit" not in fields:
            raise ProtocolError("DTMF_END lacks 'digit'")
        return _digit(fields["digit"])
    if name == "MEDIA_MARK_PROCESSED":
        return MarkProcessed(_text(fields.get("correlation_id", argument), "MEDIA_MARK_PROCESSED correlation_id"))
    if name in ("MEDIA_XOFF", "MEDIA_XON"):
        return FlowControl(name == "MEDIA_XOFF")
    if name == "ERROR":
        return AsteriskError(str(fields.get("error_text", argument))[:200])
    return Notice(name, json.dumps(fields, sort_keys=True)[:200] if is_json else argument[:200])


def _parse_plain(text: str) -> Event:
    if "\n" in text.strip() or "\r" in text.strip():
        raise ProtocolError("a plain-text control message is one line")
    name, _, rest = text.strip().partition(" ")
    if not _EVENT_NAME.match(name):
        raise ProtocolError(f"not a chan_websocket event: {text[:40]!r}")
    rest = rest.strip()
    fields: dict[str, str] = {}
    if name == "ERROR":
        # "ERROR channel_id:<id> error_text:<free text with spaces and colons>"
        _, found, error_text = rest.partition("error_text:")
        return AsteriskError((error_text if found else rest)[:200])
    if name not in ("MEDIA_MARK_PROCESSED", "MEDIA_BUFFERING_COMPLETED"):
        for token in rest.split():
            key, colon, value = token.partition(":")
            if colon:
                fields[key] = value
    return _event(name, fields, rest, False)


def _parse_json(text: str) -> Event:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("control message is not a JSON object")
    name = message.get("event")
    if not isinstance(name, str) or not _EVENT_NAME.match(name):
        raise ProtocolError("control message has no 'event'")
    return _event(name, message, "", True)


def parse_event(text: str | bytes) -> Event:
    """One text frame from Asterisk, in either control format. Raises ProtocolError only."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("control message is not UTF-8") from None
    stripped = text.lstrip()
    if not stripped:
        raise ProtocolError("empty control message")
    return _parse_json(stripped) if stripped[0] == "{" else _parse_plain(stripped)


# ---- commands -------------------------------------------------------------------------------
ANSWER = "ANSWER"
HANGUP = "HANGUP"
FLUSH_MEDIA = "FLUSH_MEDIA"
MARK_MEDIA = "MARK_MEDIA"
GET_STATUS = "GET_STATUS"


def command(name: str, as_json: bool, correlation_id: str | None = None) -> str:
    """A command in the socket's control format (Asterisk takes only the one it speaks)."""
    if as_json:
        message = {"command": name}
        if correlation_id is not None:
            message["correlation_id"] = correlation_id
        return json.dumps(message, separators=(",", ":"))
    if correlation_id is None:
        return name
    if not correlation_id or any(c.isspace() for c in correlation_id):
        # Asterisk takes everything after the first space as the id and strips its ends.
        raise ValueError(f"a plain-text correlation id is one word, not {correlation_id!r}")
    return f"{name} {correlation_id}"
