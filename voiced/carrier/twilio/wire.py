"""Twilio Media Streams messages: a pure model, parsed from and serialized to JSON text.

Grammar (one JSON object per WebSocket text frame):
  inbound   connected | start | media | dtmf | mark | stop
  outbound  media{payload} | mark{name} | clear
``sequenceNumber`` counts every inbound message after ``connected`` from "1";
``chunk`` counts media messages from "1". Payloads are base64 raw 8 kHz mu-law.
No sockets here: the protocol module feeds text in and sends text out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Union
from xml.sax.saxutils import escape

from voiced.carrier.jsonwire import loads


class ProtocolError(ValueError):
    """An inbound message that cannot be understood (bad JSON, missing fields)."""


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    sequence_number: int | None
    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    encoding: str
    sample_rate: int
    channels: int


@dataclass(slots=True)
class Media:
    """One 20 ms (or longer) piece of the caller's audio. Not frozen, unlike the other
    messages: fifty are built per call-second, and a frozen dataclass's ``__init__``
    costs three times as much."""

    sequence_number: int | None
    stream_sid: str
    track: str
    chunk: int | None
    timestamp_ms: int | None
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Dtmf:
    sequence_number: int | None
    stream_sid: str
    digit: str


@dataclass(frozen=True)
class Mark:
    sequence_number: int | None
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Stop:
    sequence_number: int | None
    stream_sid: str
    call_sid: str


@dataclass(frozen=True)
class Unknown:
    event: str


InboundMessage = Union[Connected, Start, Media, Dtmf, Mark, Stop, Unknown]


def _int_or_none(value: object, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # Twilio sends numbers as strings
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        raise ProtocolError(f"{what} is not an integer: {value!r}") from None


def _require(obj: object, key: str, what: str) -> object:
    if not isinstance(obj, dict) or key not in obj:
        raise ProtocolError(f"{what} lacks {key!r}")
    return obj[key]


def _object(obj: object, key: str, what: str, required: bool = True) -> dict:
    value = _require(obj, key, what) if required else (obj.get(key) if isinstance(obj, dict) else None) or {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}.{key} is not an object")
    return value


def parse_message(text: str | bytes) -> InboundMessage:
    """Parse one inbound text frame. Raises ProtocolError on malformed input."""
    try:
        msg = loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if not isinstance(event, str):
        raise ProtocolError("message has no 'event'")
    seq = _int_or_none(msg.get("sequenceNumber"), "sequenceNumber")
    if event == "connected":
        return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
    if event == "media":
        media = msg.get("media")
        if not isinstance(media, dict):
            raise ProtocolError("media message lacks 'media'" if media is None else "media message.media is not an object")
        payload = media.get("payload")
        if payload is None:
            raise ProtocolError("media lacks 'payload'")
        try:
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, TypeError, ValueError):
            raise ProtocolError("media payload is not base64") from None
        chunk = media.get("chunk")
        timestamp = media.get("timestamp")
        stream_sid = msg.get("streamSid", "")
        track = media.get("track", "inbound")
        return Media(
            seq,
            stream_sid if type(stream_sid) is str else str(stream_sid),
            track if type(track) is str else str(track),
            None if chunk is None else _int_or_none(chunk, "chunk"),
            None if timestamp is None else _int_or_none(timestamp, "timestamp"),
            audio,
        )
    if event == "start":
        start = _object(msg, "start", "start message")
        fmt = _object(start, "mediaFormat", "start", required=False)
        params = _object(start, "customParameters", "start", required=False)
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list):
            raise ProtocolError("start.tracks is not a list")
        return Start(
            seq,
            str(start.get("streamSid") or msg.get("streamSid") or ""),
            str(start.get("accountSid", "")),
            str(_require(start, "callSid", "start")),
            tuple(str(t) for t in tracks),
            {str(k): str(v) for k, v in params.items()},
            str(fmt.get("encoding", "audio/x-mulaw")),
            _int_or_none(fmt.get("sampleRate", 8000), "sampleRate") or 0,
            _int_or_none(fmt.get("channels", 1), "channels") or 0,
        )
    if event == "mark":
        mark = _object(msg, "mark", "mark message")
        return Mark(seq, str(msg.get("streamSid", "")), str(_require(mark, "name", "mark")))
    if event == "dtmf":
        dtmf = _object(msg, "dtmf", "dtmf message")
        return Dtmf(seq, str(msg.get("streamSid", "")), str(_require(dtmf, "digit", "dtmf")))
    if event == "stop":
        stop = _object(msg, "stop", "stop message", required=False)
        return Stop(seq, str(msg.get("streamSid", "")), str(stop.get("callSid", "")))
    return Unknown(event)


# Outbound messages. ``separators`` keeps frames small; order is irrelevant to Twilio.
def media_message(stream_sid: str, ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}, separators=(",", ":"))


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}, separators=(",", ":"))


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid}, separators=(",", ":"))


@dataclass
class SequenceTracker:
    """Detects gaps and reordering in ``sequenceNumber`` and media ``chunk`` counters.

    Returns human-readable problems for the caller to log; it never raises, since
    a lost frame is a network fact to record, not a reason to end a call.
    """

    last_sequence: int = 0
    last_chunk: int = 0
    gaps: int = 0
    reordered: int = 0

    def observe(self, message: InboundMessage) -> list[str]:
        if type(message) is Media and message.sequence_number == self.last_sequence + 1 \
                and message.chunk == self.last_chunk + 1:  # the common case, 50 times a second
            self.last_sequence += 1
            self.last_chunk += 1
            return []
        problems: list[str] = []
        seq = getattr(message, "sequence_number", None)
        if seq is not None:
            problems += self._check("sequenceNumber", self.last_sequence, seq)
            self.last_sequence = max(self.last_sequence, seq)
        if isinstance(message, Media) and message.chunk is not None:
            problems += self._check("chunk", self.last_chunk, message.chunk)
            self.last_chunk = max(self.last_chunk, message.chunk)
        return problems

    def _check(self, what: str, last: int, current: int) -> list[str]:
        if current == last + 1:
            return []
        if current <= last:
            self.reordered += 1
            return [f"{what} {current} arrived after {last} (reordered or duplicated)"]
        self.gaps += 1
        return [f"{what} jumped from {last} to {current} ({current - last - 1} missing)"]


def twiml_connect_stream(stream_url: str, parameters: dict[str, str]) -> str:
    """TwiML that connects the call to ``stream_url`` and hangs up when the stream ends."""
    def attr(value: str) -> str:
        return '"' + escape(value, {'"': "&quot;"}) + '"'

    params = "".join(
        f"<Parameter name={attr(k[:500])} value={attr(v[:500])}/>" for k, v in parameters.items() if v
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={attr(stream_url)}>{params}</Stream></Connect><Hangup/></Response>"
    )
