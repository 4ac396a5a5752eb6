"""Exotel Voicebot (AgentStream) messages: a pure model, parsed from and serialized to JSON text.

Exotel's Voicebot applet opens a WebSocket to the URL it was configured with and speaks
a Twilio-like protocol with snake_case names (developer.exotel.com/docs/agentstream/
websocket-protocol):
  inbound   connected | start{stream_sid, call_sid, account_sid, from, to, custom_parameters,
            media_format{encoding, sample_rate, bit_rate}} | media{chunk, timestamp, payload}
            | dtmf{digit, duration} | mark{name} | stop{call_sid, account_sid, reason}
  outbound  media{payload} | mark{name} | clear
Payloads are base64 raw 16-bit little-endian PCM at 8 kHz by default (16 or 24 kHz with
``?sample-rate=`` on the URL), in chunks of about 100 ms; Exotel's newer guide documents
a mu-law 8 kHz default for its extended applet, so the encoding is taken from the start's
``media_format``. Numbers arrive as strings ("8000") or as numbers.

Exotel's own samples and Pipecat name the stream ``streamSid``/``callSid`` where the
documentation says ``stream_sid``/``call_sid``: both spellings are read, and both are
written (Exotel routes by socket; whichever name it reads, it is there).
No sockets here: the protocol module feeds text in and sends text out.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Union

from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.jsonwire import loads

DTMF_KEYS = frozenset("0123456789*#ABCD")
MAX_ID = 128  # ids and marker names longer than this are cut: they reach logs and records

#: Encodings as Exotel names them (and as its samples and newer guide do), by voiced's name.
#: Exotel documents its linear PCM as little-endian ("raw/slin, 16-bit, mono PCM
#: little-endian"); it says nothing else for ``audio/L16``, so that is read the same way.
_ENCODINGS = {
    "": "pcm_s16le", "audio/x-raw": "pcm_s16le", "raw": "pcm_s16le", "slin": "pcm_s16le",
    "linear16": "pcm_s16le", "audio/l16": "pcm_s16le", "l16": "pcm_s16le", "pcm": "pcm_s16le",
    "audio/pcm": "pcm_s16le", "pcm_s16le": "pcm_s16le",
    "audio/x-mulaw": "mulaw", "audio/mulaw": "mulaw", "mulaw": "mulaw", "ulaw": "mulaw", "pcmu": "mulaw",
    "audio/pcmu": "mulaw", "g711_ulaw": "mulaw",
    "audio/x-alaw": "alaw", "audio/alaw": "alaw", "alaw": "alaw", "pcma": "alaw", "audio/pcma": "alaw",
    "g711_alaw": "alaw",
}


class ProtocolError(ValueError):
    """An inbound message that cannot be understood (bad JSON, missing fields)."""


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    from_number: str
    to_number: str
    custom_parameters: dict[str, str]
    encoding: str  # as Exotel wrote it ("audio/x-raw", "audio/x-mulaw;rate=8000", ...)
    sample_rate: int | None  # None: not given (the URL's ?sample-rate= or 8000 applies)
    bit_rate: int | None


@dataclass(slots=True)
class Media:
    """About 100 ms of the caller's audio (slots, not frozen: ten a call-second)."""

    stream_sid: str
    chunk: int | None
    payload: bytes = field(repr=False)


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    call_sid: str
    reason: str


@dataclass(frozen=True)
class Unknown:
    event: str


InboundMessage = Union[Connected, Start, Media, Dtmf, Mark, Stop, Unknown]


def _int_or_none(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProtocolError(f"{what} is not an integer: {value!r}"[:160])
    try:
        return int(value)  # Exotel sends numbers as strings
    except ValueError:
        raise ProtocolError(f"{what} is not an integer: {value!r}"[:160]) from None


def _text(value: object, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ProtocolError(f"{what} is not a string")
    return str(value)[:MAX_ID]


def _object(obj: dict, key: str, what: str, required: bool = True) -> dict:
    value = obj.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} lacks {key!r}" if value is None else f"{what}.{key} is not an object")
    return value


def _sid(msg: dict, body: dict, snake: str, camel: str) -> str:
    for source in (body, msg):
        for key in (snake, camel):
            value = source.get(key)
            if value:
                return _text(value, key)
    return ""


def parse_message(text: str | bytes) -> InboundMessage:
    """Parse one inbound text frame. Raises ProtocolError on malformed input, and nothing else."""
    try:
        msg = loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ProtocolError(f"not JSON: {str(e)[:100]}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message is not a JSON object")
    event = msg.get("event")
    if not isinstance(event, str):
        raise ProtocolError("message has no 'event'")
    if event == "media":
        media = _object(msg, "media", "media message")
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ProtocolError("media lacks 'payload'" if payload is None else "media payload is not a string")
        try:
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("media payload is not base64") from None
        chunk = media.get("chunk")
        sid = msg.get("stream_sid") or msg.get("streamSid") or ""
        return Media(sid if type(sid) is str else _text(sid, "stream_sid"),
                     None if chunk is None else _int_or_none(chunk, "chunk"), audio)
    if event == "start":
        start = _object(msg, "start", "start message")
        fmt = _object(start, "media_format", "start", required=False) or \
            _object(start, "mediaFormat", "start", required=False)
        params = _object(start, "custom_parameters", "start", required=False) or \
            _object(start, "customParameters", "start", required=False)
        call_sid = _sid(msg, start, "call_sid", "callSid")
        if not call_sid:
            raise ProtocolError("start lacks 'call_sid'")
        return Start(
            _sid(msg, start, "stream_sid", "streamSid"),
            call_sid,
            _sid(msg, start, "account_sid", "accountSid"),
            _text(start.get("from"), "from"),
            _text(start.get("to"), "to"),
            {_text(k, "parameter")[:MAX_ID]: _text(v, "parameter") for k, v in list(params.items())[:32]},
            _text(fmt.get("encoding"), "encoding"),
            _int_or_none(fmt.get("sample_rate", fmt.get("sampleRate")), "sample_rate"),
            _int_or_none(fmt.get("bit_rate", fmt.get("bitRate")), "bit_rate"),
        )
    if event == "mark":
        mark = _object(msg, "mark", "mark message")
        name = mark.get("name")
        if not isinstance(name, str):
            raise ProtocolError("mark lacks 'name'")
        return Mark(_sid(msg, {}, "stream_sid", "streamSid"), name[:MAX_ID])
    if event == "dtmf":
        dtmf = _object(msg, "dtmf", "dtmf message")
        digit = dtmf.get("digit")
        if not isinstance(digit, str) or digit not in DTMF_KEYS:
            raise ProtocolError(f"dtmf digit {digit!r} is not one of 0-9, *, #, A-D"[:160])
        return Dtmf(_sid(msg, {}, "stream_sid", "streamSid"), digit)
    if event == "stop":
        stop = _object(msg, "stop", "stop message", required=False)
        return Stop(_sid(msg, {}, "stream_sid", "streamSid"), _sid({}, stop, "call_sid", "callSid"),
                    _text(stop.get("reason"), "reason"))
    if event == "connected":
        return Connected()
    return Unknown(event[:MAX_ID])


def audio_format(start: Start, url_rate: int | None = None) -> AudioFormat:
    """The call's audio as the start describes it: ``UnsupportedAudio`` names what voiced
    does not speak. The rate is the start's ``sample_rate``, else a ``rate=`` in the
    encoding, else the URL's ``?sample-rate=``, else 8000."""
    base, _, params = start.encoding.strip().lower().partition(";")
    encoding = _ENCODINGS.get(base.strip())
    if encoding is None:
        raise UnsupportedAudio(f"unsupported Exotel encoding {start.encoding[:40]!r}")
    rate = start.sample_rate
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if rate is None and key == "rate" and value.isdigit() and len(value) < 7:
            rate = int(value)
    if rate is None:
        rate = url_rate or 8000
    if encoding == "pcm_s16le" and start.bit_rate not in (None, 16):
        raise UnsupportedAudio(f"unsupported Exotel PCM of {start.bit_rate} bits (voiced speaks 16)")
    return AudioFormat(encoding, rate)  # UnsupportedAudio for a rate it does not speak


# Outbound messages. Compact separators keep frames small.
def _ids(stream_sid: str) -> str:
    quoted = json.dumps(stream_sid)
    return f'"stream_sid":{quoted},"streamSid":{quoted}'


def media_message(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode("ascii")
    return f'{{"event":"media",{_ids(stream_sid)},"media":{{"payload":"{payload}"}}}}'


def mark_message(stream_sid: str, name: str) -> str:
    return f'{{"event":"mark",{_ids(stream_sid)},"mark":{{"name":{json.dumps(name)}}}}}'


def clear_message(stream_sid: str) -> str:
    return f'{{"event":"clear",{_ids(stream_sid)}}}'
