"""Telnyx media streaming messages: a pure model, parsed from and serialized to JSON text.

Grammar (one JSON object per WebSocket text frame; Telnyx's AsyncAPI "Stream call media
over WebSocket" and its ``streaming_start`` / TeXML ``<Stream>`` pages):
  inbound   connected | start | media | dtmf | mark | stop | error
  outbound  media{payload} | mark{name} | clear
``stream_id`` sits at the top level of every message (not inside ``start``);
``start.call_control_id`` names the call (a TeXML call's CallSid is the same id), and
``start.media_format`` its audio: ``encoding`` PCMU (the default), PCMA or L16 (RTP's
16-bit linear PCM, network byte order as RFC 3551 defines it and Pipecat's Telnyx
serializer reads it), ``sample_rate``, ``channels``. Numbers (``sequence_number``,
``media.chunk``, ``media.timestamp``) arrive as strings or integers. Media frames may
arrive out of order (Telnyx says so): ``ChunkOrder`` puts them back in order.
No sockets here: the protocol module feeds text in and sends text out.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass, field
from typing import Union
from xml.sax.saxutils import escape

from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.jsonwire import loads

#: Telnyx's codec names for what voiced speaks; G722, OPUS and AMR-WB are refused (4001).
ENCODINGS = {"PCMU": "mulaw", "PCMA": "alaw", "L16": "pcm_s16be"}
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MAX_FIELD = 200  # ids and names kept from a message: a hostile peer's megabyte stays out of logs


class ProtocolError(ValueError):
    """An inbound message that cannot be understood (bad JSON, missing or mistyped fields)."""


@dataclass(frozen=True)
class Connected:
    version: str


@dataclass(frozen=True)
class Start:
    sequence_number: int | None
    stream_id: str
    call_control_id: str
    from_number: str
    to_number: str
    custom_parameters: dict[str, str]
    encoding: str  # as Telnyx names it: PCMU, PCMA, L16, ...
    sample_rate: int
    channels: int

    def audio_format(self) -> AudioFormat:
        """The call's format; ``UnsupportedAudio`` for a codec or rate voiced does not speak."""
        encoding = ENCODINGS.get(self.encoding.upper())
        if encoding is None or self.channels != 1:
            raise UnsupportedAudio(f"unsupported media format {self.encoding}/{self.sample_rate}/{self.channels}")
        return AudioFormat(encoding, self.sample_rate)


@dataclass(slots=True)
class Media:
    """One RTP payload of the call's audio (20 ms on most calls). Not frozen: fifty are built
    per call-second, and a frozen dataclass's ``__init__`` costs three times as much."""

    sequence_number: int | None
    stream_id: str
    track: str
    chunk: int | None
    timestamp_ms: int | None
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Dtmf:
    sequence_number: int | None
    stream_id: str
    digit: str


@dataclass(frozen=True)
class Mark:
    sequence_number: int | None
    stream_id: str
    name: str


@dataclass(frozen=True)
class Stop:
    sequence_number: int | None
    stream_id: str
    call_control_id: str


@dataclass(frozen=True)
class Error:
    """Telnyx refused something voiced sent (a malformed frame, bad media)."""

    sequence_number: int | None
    stream_id: str
    code: str
    title: str
    detail: str


@dataclass(frozen=True)
class Unknown:
    event: str


InboundMessage = Union[Connected, Start, Media, Dtmf, Mark, Stop, Error, Unknown]


def _int_or_none(value: object, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, (int, str)):
        raise ProtocolError(f"{what} is not an integer: {str(value)[:40]!r}")
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(f"{what} is not an integer: {str(value)[:40]!r}") from None


def _text(value: object) -> str:
    """A string field as text, bounded; absent or null is ""."""
    if value is None:
        return ""
    return (value if type(value) is str else str(value))[:_MAX_FIELD]


def _object(msg: dict, key: str, what: str, required: bool = True) -> dict:
    value = msg.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} lacks {key!r}" if value is None else f"{what}.{key} is not an object")
    return value


def _custom_parameters(value: object) -> dict[str, str]:
    """``custom_parameters`` as an object; a list of {name, value} (Call Control's request
    shape) is accepted too, in case it is handed back that way."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return {_text(p.get("name")): _text(p.get("value")) for p in value}
    raise ProtocolError("start.custom_parameters is neither an object nor a list of {name, value}")


def parse_message(text: str | bytes) -> InboundMessage:
    """Parse one inbound text frame. Raises ProtocolError (only) on malformed input."""
    try:
        msg = loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if type(event) is not str:
        raise ProtocolError("message has no 'event'")
    seq = _int_or_none(msg.get("sequence_number"), "sequence_number")
    stream_id = msg.get("stream_id", "")
    if type(stream_id) is not str:
        stream_id = _text(stream_id)
    if event == "media":
        media = msg.get("media")
        if not isinstance(media, dict):
            raise ProtocolError("media message lacks 'media'" if media is None else "media message.media is not an object")
        payload = media.get("payload")
        if type(payload) is not str:
            raise ProtocolError("media lacks 'payload'" if payload is None else "media payload is not a string")
        try:
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media payload is not base64") from None
        track = media.get("track", "inbound")
        chunk = media.get("chunk")
        timestamp = media.get("timestamp")
        return Media(seq, stream_id, track if type(track) is str else _text(track),
                     None if chunk is None else _int_or_none(chunk, "media.chunk"),
                     None if timestamp is None else _int_or_none(timestamp, "media.timestamp"), audio)
    if event == "start":
        start = _object(msg, "start", "start message")
        fmt = _object(start, "media_format", "start", required=False)
        call_control_id = _text(start.get("call_control_id"))
        if not call_control_id:
            raise ProtocolError("start lacks 'call_control_id'")
        encoding = fmt.get("encoding", "PCMU")
        if type(encoding) is not str:
            raise ProtocolError("start.media_format.encoding is not a string")
        return Start(
            seq, stream_id or _text(start.get("stream_id")), call_control_id,
            _text(start.get("from")), _text(start.get("to")),
            _custom_parameters(start.get("custom_parameters")), encoding[:40],
            _int_or_none(fmt.get("sample_rate", 8000), "start.media_format.sample_rate") or 0,
            _int_or_none(fmt.get("channels", 1), "start.media_format.channels") or 0,
        )
    if event == "mark":
        name = _object(msg, "mark", "mark message").get("name")
        if type(name) is not str:
            raise ProtocolError("mark lacks 'name'")
        return Mark(seq, stream_id, name[:_MAX_FIELD])
    if event == "dtmf":
        digit = _object(msg, "dtmf", "dtmf message").get("digit")
        if type(digit) is not str or digit.upper() not in DTMF_DIGITS:
            raise ProtocolError(f"dtmf digit is not one of 0-9, *, #, A-D: {_text(digit)[:10]!r}")
        return Dtmf(seq, stream_id, digit.upper())
    if event == "stop":
        stop = _object(msg, "stop", "stop message", required=False)
        return Stop(seq, stream_id, _text(stop.get("call_control_id")))
    if event == "error":
        error = msg.get("payload")
        if not isinstance(error, dict):
            error = msg.get("error") if isinstance(msg.get("error"), dict) else {}
        return Error(seq, stream_id, _text(error.get("code")), _text(error.get("title")), _text(error.get("detail")))
    if event == "connected":
        return Connected(_text(msg.get("version")))
    return Unknown(event[:_MAX_FIELD])


# Outbound messages. Telnyx needs no stream id on them: the socket is the stream.
_MEDIA_HEAD = '{"event":"media","media":{"payload":"'
_MEDIA_TAIL = '"}}'
CLEAR_MESSAGE = '{"event":"clear"}'


def media_message(payload: bytes) -> str:
    """The bot's audio in the call's codec, as one RTP payload (20 ms to 30 s of it)."""
    # base64 needs no JSON escaping: the message is built without json.dumps, at a fifth of the cost.
    return _MEDIA_HEAD + binascii.b2a_base64(payload, newline=False).decode("ascii") + _MEDIA_TAIL


def mark_message(name: str) -> str:
    return json.dumps({"event": "mark", "mark": {"name": name}}, separators=(",", ":"))


def clear_message() -> str:
    return CLEAR_MESSAGE


class ChunkOrder:
    """Media chunks back in order, for a carrier that does not promise it.

    A chunk after the one expected is held until the missing ones arrive, at most
    ``window`` of them (60 ms of audio): then the gap is given up for lost and the held
    chunks go on in order. A chunk older than the expected one (late, or a repeat) is
    dropped: the call has moved on. The common case, the expected chunk with nothing
    held, costs one comparison. Counts what it drops and skips; never raises.
    """

    __slots__ = ("window", "expected", "held", "late", "lost")

    def __init__(self, window: int = 3) -> None:
        self.window = window
        self.expected: int | None = None  # the first chunk seen sets the count going
        self.held: dict[int, bytes] = {}
        self.late = 0  # chunks dropped as late or repeated
        self.lost = 0  # chunk numbers given up on

    def push(self, chunk: int, payload: bytes) -> list[bytes]:
        """The payloads that may go on now, in order (often ``[payload]``, sometimes none)."""
        expected = self.expected
        if (chunk == expected or expected is None) and not self.held:
            self.expected = chunk + 1
            return [payload]
        if chunk < expected or chunk in self.held:  # type: ignore[operator]  # expected is set when held is not empty
            self.late += 1
            return []
        self.held[chunk] = payload
        ready = self._release()
        if len(self.held) > self.window:
            first = min(self.held)
            self.lost += first - self.expected  # type: ignore[operator]
            self.expected = first
            ready += self._release()
        return ready

    def _release(self) -> list[bytes]:
        ready = []
        held = self.held
        while self.expected in held:
            ready.append(held.pop(self.expected))  # type: ignore[arg-type]
            self.expected += 1  # type: ignore[operator]
        return ready


def texml_connect_stream(stream_url: str, parameters: dict[str, str]) -> str:
    """TeXML that connects the call to ``stream_url`` in bidirectional RTP mode and hangs up
    when the stream ends. ``codec`` and ``bidirectionalCodec`` are both PCMU: voiced hears
    and speaks one format per call, the one ``start.media_format`` names (an A-law call is
    transcoded by Telnyx, the only transcoding it offers); PCMU at 8 kHz is also what the
    core works in, so nothing is converted on the frame path."""
    def attr(value: str) -> str:
        return '"' + escape(value, {'"': "&quot;"}) + '"'

    params = "".join(
        f"<Parameter name={attr(k[:500])} value={attr(v[:500])}/>" for k, v in parameters.items() if v
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Connect><Stream url={attr(stream_url)} track="inbound_track" codec="PCMU" '
        f'bidirectionalMode="rtp" bidirectionalCodec="PCMU">{params}</Stream></Connect><Hangup/></Response>'
    )
