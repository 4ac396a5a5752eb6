"""Plivo Audio Streams messages and XML: a pure model, parsed from and serialized to text.

Grammar (one JSON object per WebSocket text frame), as Plivo's "Stream Event Protocol"
page (plivo.com/docs/voice/audio-streaming) and its own stream SDKs
(plivo-stream-sdk-python ``types.py``, plivo-stream-sdk-java ``event/``) give it:
  inbound   start{callId, streamId, accountId, tracks, mediaFormat{encoding, sampleRate}}
            | media{track, chunk, timestamp, payload} | dtmf{digit, track} | playedStream{name}
            | clearedAudio | stop{reason}
  outbound  playAudio{media{contentType, sampleRate, payload}} | checkpoint{name} | clearAudio
Every inbound message but ``start`` names its stream in a top-level ``streamId``;
``sequenceNumber`` counts from 1 and ``chunk`` counts media (numbers, but a string is
taken too: the Python SDK says playedStream's may be one). Payloads are base64 raw audio.
Where the sources disagree this module takes both: ``playedStream`` is the checkpoint's
answer in the docs and both SDKs, ``played`` in a support article; ``stop`` is in the Java
SDK and the guide's list of events but not on the protocol page; ``extra_headers`` is
"k=v,k=v" (XML reference), "k=v;k=v" (protocol page) or a JSON string (Python SDK).
No sockets here: the protocol module feeds text in and sends text out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Callable, Union
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from voiced.transfer import check_transfer_target, is_sip_uri
from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.jsonwire import loads

#: The ``contentType`` values a bidirectional <Stream> takes (Plivo's XML reference).
CONTENT_TYPES = ("audio/x-mulaw;rate=8000", "audio/x-l16;rate=8000", "audio/x-l16;rate=16000")
DEFAULT_CONTENT_TYPE = "audio/x-mulaw;rate=8000"
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MAX_FIELD = 200  # ids, names and headers are short; a longer one is cut, never kept whole
_MAX_EXTRA_HEADERS = 32


class ProtocolError(ValueError):
    """An inbound message that cannot be understood (bad JSON, missing fields)."""


@dataclass(frozen=True)
class Start:
    sequence_number: int | None
    call_id: str
    stream_id: str
    account_id: str
    tracks: tuple[str, ...]
    encoding: str  # "" when the start names none: the answer's contentType applies
    sample_rate: int
    extra_headers: dict[str, str]


@dataclass(slots=True)
class Media:
    """A piece of the caller's audio. Not frozen: fifty are built per call-second."""

    sequence_number: int | None
    stream_id: str
    track: str
    chunk: int | None
    timestamp: int | None
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Dtmf:
    sequence_number: int | None
    stream_id: str
    digit: str


@dataclass(frozen=True)
class PlayedStream:
    """The audio sent before checkpoint ``name`` has played."""

    sequence_number: int | None
    stream_id: str
    name: str


@dataclass(frozen=True)
class ClearedAudio:
    sequence_number: int | None
    stream_id: str


@dataclass(frozen=True)
class Stop:
    sequence_number: int | None
    stream_id: str
    reason: str


@dataclass(frozen=True)
class Unknown:
    event: str


InboundMessage = Union[Start, Media, Dtmf, PlayedStream, ClearedAudio, Stop, Unknown]


def _int_or_none(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if type(value) is int:
        return value
    if isinstance(value, (str, float)) and not isinstance(value, bool):
        try:
            return int(value)
        except (ValueError, OverflowError):  # OverflowError: JSON's Infinity
            pass
    raise ProtocolError(f"{what} is not an integer: {str(value)[:40]!r}")


def _text(value: object, what: str, required: bool = False) -> str:
    if value is None:
        if required:
            raise ProtocolError(f"message lacks {what!r}")
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ProtocolError(f"{what} is not a string")
    return str(value)[:_MAX_FIELD]


def _object(msg: dict, key: str) -> dict:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{msg.get('event')} message lacks {key!r}" if value is None
                            else f"{msg.get('event')} message.{key} is not an object")
    return value


def parse_extra_headers(value: object) -> dict[str, str]:
    """The start's ``extra_headers`` as a dict, whichever of its documented shapes it has."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        parsed: object = None
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = None
        if isinstance(parsed, dict):
            items = list(parsed.items())
        else:
            pairs = text.replace(";", ",").split(",")
            items = [tuple(p.split("=", 1)) for p in pairs if "=" in p]  # type: ignore[misc]
    else:
        return {}
    headers: dict[str, str] = {}
    for key, item in items[:_MAX_EXTRA_HEADERS]:
        name = str(key).strip()[:64]
        if name and isinstance(item, (str, int, float)) and not isinstance(item, bool):
            headers[name] = str(item).strip()[:_MAX_FIELD]
    return headers


def audio_format(encoding: str, sample_rate: int) -> AudioFormat:
    """The AudioFormat of a Plivo encoding and rate; ``UnsupportedAudio`` for any other.

    audio/x-l16 is taken as little-endian: Plivo does not say, and its own demo
    (plivo-stream-sdk-python examples/demo/server.py) streams ElevenLabs' little-endian
    ``pcm_16000`` out as audio/x-l16 and Plivo's inbound audio/x-l16 into Deepgram as
    little-endian ``linear16``, unconverted both ways.
    """
    base = encoding.split(";")[0].strip().lower()
    if base == "audio/x-mulaw" and sample_rate == 8000:
        return AudioFormat("mulaw", 8000)
    if base == "audio/x-l16" and sample_rate in (8000, 16000):
        return AudioFormat("pcm_s16le", sample_rate)
    raise UnsupportedAudio(f"unsupported media format {encoding[:40]}/{sample_rate}")


def split_content_type(content_type: str) -> tuple[str, int]:
    """``"audio/x-l16;rate=16000"`` -> ``("audio/x-l16", 16000)``."""
    base, _, params = content_type.partition(";")
    rate = 8000
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "rate" and value.strip().isdigit():
            rate = int(value.strip())
    return base.strip(), rate


def parse_message(text: str | bytes) -> InboundMessage:
    """Parse one inbound text frame. Raises ProtocolError (only) on malformed input."""
    try:
        msg = loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if type(msg) is not dict:
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if type(event) is not str:
        raise ProtocolError("message has no 'event'")
    # Fifty media messages a call-second: the common types are taken as they come, and
    # only anything else goes through the checking converters.
    seq = msg.get("sequenceNumber")
    if type(seq) is not int:
        seq = _int_or_none(seq, "sequenceNumber")
    stream_id = msg.get("streamId", "")
    if type(stream_id) is not str or len(stream_id) > _MAX_FIELD:
        stream_id = _text(stream_id, "streamId")
    if event == "media":
        media = msg.get("media")
        if type(media) is not dict:
            media = _object(msg, "media")
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
        return Media(seq, stream_id, track if type(track) is str else _text(track, "track"),
                     chunk if type(chunk) is int else _int_or_none(chunk, "chunk"),
                     timestamp if type(timestamp) is int else _int_or_none(timestamp, "timestamp"), audio)
    if event == "start":
        start = _object(msg, "start")
        fmt = start.get("mediaFormat") or {}
        if not isinstance(fmt, dict):
            raise ProtocolError("start.mediaFormat is not an object")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list):
            raise ProtocolError("start.tracks is not a list")
        headers = parse_extra_headers(msg.get("extra_headers"))
        custom = start.get("customParameters")  # the Java SDK models it; Plivo's docs do not
        if isinstance(custom, dict):
            headers.update(parse_extra_headers(custom))
        return Start(
            seq,
            _text(start.get("callId"), "start.callId", required=True),
            _text(start.get("streamId") or msg.get("streamId"), "start.streamId", required=True),
            _text(start.get("accountId"), "start.accountId"),
            tuple(str(t)[:20] for t in tracks[:4]),
            _text(fmt.get("encoding"), "mediaFormat.encoding"),
            _int_or_none(fmt.get("sampleRate"), "mediaFormat.sampleRate") or 0,
            headers,
        )
    if event in ("playedStream", "played"):
        return PlayedStream(seq, stream_id, _text(msg.get("name"), "name", required=True))
    if event == "dtmf":
        dtmf = _object(msg, "dtmf")
        digit = _text(dtmf.get("digit"), "dtmf.digit", required=True).upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ProtocolError(f"dtmf digit {digit[:8]!r} is not one of 0-9, *, #, A-D")
        return Dtmf(seq, stream_id, digit)
    if event == "clearedAudio":
        return ClearedAudio(seq, stream_id)
    if event == "stop":
        return Stop(seq, stream_id, _text(msg.get("reason"), "reason"))
    return Unknown(event[:40])


# ---- outbound -------------------------------------------------------------------------------
def play_audio_encoder(stream_id: str, content_type: str) -> Callable[[bytes], str]:
    """A function from raw audio to one ``playAudio`` message of this stream. The message's
    fixed parts are joined once, not per message: a reply is sent in many of them.
    ``streamId`` is not on the docs' playAudio example; Plivo's Java SDK sends it."""
    encoding, rate = split_content_type(content_type)
    head = ('{"event":"playAudio","streamId":' + json.dumps(stream_id) + ',"media":{"contentType":'
            + json.dumps(encoding) + f',"sampleRate":{rate},"payload":"')
    b2a = binascii.b2a_base64

    def encode(audio: bytes) -> str:
        return head + b2a(audio, newline=False).decode("ascii") + '"}}'

    return encode


def checkpoint_message(stream_id: str, name: str) -> str:
    return json.dumps({"event": "checkpoint", "streamId": stream_id, "name": name}, separators=(",", ":"))


def clear_audio_message(stream_id: str) -> str:
    return json.dumps({"event": "clearAudio", "streamId": stream_id}, separators=(",", ":"))


def b64(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


# ---- the answer: Plivo XML and the stream URL ----------------------------------------------------
#: The stream URL's query: the call it was made for and who called whom, bound by the token.
CALL_PARAMETER, FROM_PARAMETER, TO_PARAMETER = "call", "from", "to"
#: The dial a call voiced placed belongs to (voiced.outbound), in the stream URL beside the call.
DIAL_PARAMETER = "voiced_dial"


def token_subject(call_id: str, from_number: str, to_number: str, dial_id: str = "") -> str:
    """What the per-call media token signs: the call and its numbers (and the dial voiced
    placed it for), unambiguously joined."""
    fields = [call_id, from_number, to_number] + ([dial_id] if dial_id else [])
    return json.dumps(fields, separators=(",", ":"))


def stream_url(base: str, call_id: str, from_number: str, to_number: str, token: str = "",
               token_parameter: str = "", dial_id: str = "") -> str:
    """``base`` (wss://host/media/plivo) with the call's query; the token last when there is one."""
    query = {CALL_PARAMETER: call_id, FROM_PARAMETER: from_number, TO_PARAMETER: to_number}
    if dial_id:
        query[DIAL_PARAMETER] = dial_id
    if token:
        query[token_parameter] = token
    return base + "?" + urlencode(query, quote_via=quote)


def _attr(value: str) -> str:
    return '"' + escape(value, {'"': "&quot;"}) + '"'


def stream_xml(url: str, content_type: str = DEFAULT_CONTENT_TYPE) -> str:
    """Plivo XML that connects the call to ``url`` both ways and hangs up when the stream ends.

    ``keepCallAlive`` holds the XML at the <Stream> while the socket is open; the docs
    disagree on what comes after (the XML reference: the next elements run once the stream
    disconnects; a support article: they never run), so <Hangup/> follows: either way the
    call ends with the stream and never sits in silence.
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"contentType must be one of {', '.join(CONTENT_TYPES)}")
    return ('<?xml version="1.0" encoding="UTF-8"?><Response>'
            f'<Stream bidirectional="true" keepCallAlive="true" contentType={_attr(content_type)}>'
            f"{escape(url)}</Stream><Hangup/></Response>")


def dial_xml(target: str) -> str:
    """Plivo XML that dials ``target`` (checked first): an E.164 number in <Number>, a SIP URI in <User>."""
    checked = escape(check_transfer_target(target))
    noun = f"<User>{checked}</User>" if is_sip_uri(target) else f"<Number>{checked}</Number>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{noun}</Dial></Response>'

