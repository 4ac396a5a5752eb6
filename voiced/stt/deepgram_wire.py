"""Deepgram live transcription's wire (``/v1/listen`` over a WebSocket), as pure data.

What the client asks for (the URL's query: encoding, rate, model, language, interim
results, endpointing), the text frames it sends (``KeepAlive``, ``Finalize``,
``CloseStream``), what the server answers (``Results``, ``UtteranceEnd``,
``SpeechStarted``, ``Metadata``, ``Error``), and what a failed handshake or a close
code means for a retry. No sockets here: ``voiced.stt.deepgram_link`` carries these,
``voiced.stt.deepgram`` acts on them. Facts from developers.deepgram.com (streaming
API reference, the WebSocket/NET/DATA troubleshooting guide).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union
from urllib.parse import urlencode, urlsplit

from voiced.audio import AudioFormat
from voiced.language import canonical, primary

#: The text frames a client sends (binary frames are audio).
KEEPALIVE = b'{"type":"KeepAlive"}'
FINALIZE = b'{"type":"Finalize"}'
CLOSE_STREAM = b'{"type":"CloseStream"}'

#: Deepgram's raw-audio encodings for what a voiced STT stream takes.
_ENCODINGS = {"mulaw": "mulaw", "pcm_s16le": "linear16"}

#: The regional tags Deepgram's models know as such; any other region falls back to the bare
#: language (he-IL -> he: Deepgram names Hebrew "he", and no model knows "he-IL").
_REGIONAL = frozenset({
    "en-US", "en-AU", "en-GB", "en-IN", "en-NZ", "es-419", "fr-CA", "pt-BR", "pt-PT", "de-CH", "nl-BE",
    "sv-SE", "da-DK", "ko-KR", "zh-CN", "zh-TW", "zh-Hans", "zh-Hant", "hi-Latn",
})

#: HTTP statuses of a refused handshake that no retry cures: the key, the account, the
#: request's own options (a model that does not serve the language is a 400).
FATAL_STATUSES = frozenset({400, 401, 402, 403, 404})
#: Close codes from the server that no retry cures: 1008 is DATA-0000, audio it cannot decode.
FATAL_CLOSE_CODES = frozenset({1008})
#: What to check when a handshake is refused with one of FATAL_STATUSES.
REFUSAL_HINTS = {
    400: "check --deepgram-model and --language (not every model serves every language)",
    401: "check the Deepgram API key (--deepgram-api-key, DEEPGRAM_API_KEY)",
    402: "the Deepgram project is out of credit",
    403: "check the Deepgram API key's project and its permissions for this model",
    404: "check --deepgram-url",
}


class WireError(ValueError):
    """A frame from the server that is not one of Deepgram's messages."""


@dataclass(frozen=True)
class Results:
    """A transcript of the audio from ``start`` for ``duration`` seconds of this stream."""

    transcript: str
    is_final: bool  # this segment's text will not change
    speech_final: bool  # and the speaker paused (endpointing)
    from_finalize: bool  # the answer to a Finalize
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class UtteranceEnd:
    last_word_end: float


@dataclass(frozen=True)
class SpeechStarted:
    timestamp: float


@dataclass(frozen=True)
class Metadata:
    request_id: str
    duration: float


@dataclass(frozen=True)
class ServerError:
    description: str
    message: str
    variant: str


@dataclass(frozen=True)
class Other:
    """A message type this client has no use for (new ones appear over time)."""

    type: str


Message = Union[Results, UtteranceEnd, SpeechStarted, Metadata, ServerError, Other]


def deepgram_language(tag: str) -> str:
    """The ``language`` Deepgram takes for a BCP-47 tag: en-US as it is, he-IL (or iw-IL) as he."""
    tag = canonical(tag)
    return tag if tag in _REGIONAL else primary(tag)


def listen_url(base: str, audio: AudioFormat, *, model: str, language: str, endpointing_ms: int,
               utterance_end_ms: int) -> str:
    """The URL one stream opens: ``base`` (ws:// or wss://) with the stream's query.
    ``endpointing_ms`` 0 turns endpointing off; ``utterance_end_ms`` 0 leaves UtteranceEnd out."""
    parts = urlsplit(base)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{base!r} is not a ws:// or wss:// URL")
    if audio.encoding not in _ENCODINGS:
        raise ValueError(f"Deepgram takes no {audio} audio from voiced")
    query = [
        ("encoding", _ENCODINGS[audio.encoding]),
        ("sample_rate", str(audio.sample_rate)),
        ("channels", "1"),
        ("model", model),
        ("language", deepgram_language(language)),
        ("interim_results", "true"),
        ("punctuate", "true"),
        ("endpointing", str(endpointing_ms) if endpointing_ms else "false"),
    ]
    if utterance_end_ms:
        query.append(("utterance_end_ms", str(utterance_end_ms)))
    joiner = "&" if parts.query else "?"
    return base + joiner + urlencode(query)


def parse(payload: bytes | str) -> Message:
    """One text frame from the server; WireError if it is not JSON or lacks what its type needs."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise WireError("not a JSON object")
    kind = data.get("type")
    try:
        if kind == "Results":
            alternatives = data["channel"]["alternatives"]
            transcript = alternatives[0].get("transcript", "") if alternatives else ""
            return Results(
                transcript=str(transcript or ""),
                is_final=bool(data.get("is_final", False)),
                speech_final=bool(data.get("speech_final", False)),
                from_finalize=bool(data.get("from_finalize", False)),
                start=float(data.get("start", 0.0)),
                duration=float(data.get("duration", 0.0)),
            )
        if kind == "UtteranceEnd":
            return UtteranceEnd(float(data.get("last_word_end", 0.0)))
        if kind == "SpeechStarted":
            return SpeechStarted(float(data.get("timestamp", 0.0)))
        if kind == "Metadata":
            return Metadata(str(data.get("request_id", "")), float(data.get("duration", 0.0)))
        if kind == "Error":
            return ServerError(str(data.get("description", "")), str(data.get("message", "")),
                               str(data.get("variant", "")))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise WireError(f"malformed {kind}: {type(e).__name__}: {e}") from None
    if not isinstance(kind, str):
        raise WireError("no message type")
    return Other(kind)


def handshake_status(status_line: str | None) -> int | None:
    """The HTTP status of a handshake's response line ("HTTP/1.1 401 Unauthorized" -> 401)."""
    parts = (status_line or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def is_fatal(status: int | None, close_code: int | None) -> bool:
    """A stream's end that no new stream would mend: the key, the account, the options, the audio."""
    return status in FATAL_STATUSES or close_code in FATAL_CLOSE_CODES

