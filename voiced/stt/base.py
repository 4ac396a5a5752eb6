"""The speech-to-text contract between the turn machine and an engine.

An engine is process-wide (one model, one client, one channel pool); a stream is
per call and only borrows the engine. Every method here is called on the reactor
thread, and every listener callback must be delivered on the reactor thread.

A stream takes the caller's audio in one of two formats, chosen per call when it
opens: 8 kHz mu-law (the phone network's own, and what the turn machine hears) or,
when the carrier streams wideband audio and the engine takes it, 16 kHz 16-bit PCM
(what Google takes as LINEAR16 and Whisper listens at): recognition is better on the
real 16 kHz than on its telephone-band copy.
"""

from __future__ import annotations

from typing import AbstractSet, Protocol

from twisted.internet.defer import Deferred

from voiced.audio import MULAW_8K, AudioFormat

#: Wideband STT input: little-endian as Google's LINEAR16 and numpy's "<i2" read it.
PCM_16K = AudioFormat("pcm_s16le", 16000)
#: Every format a stream may be opened with.
STT_FORMATS = frozenset({MULAW_8K, PCM_16K})


def stt_input(carrier_audio: AudioFormat, engine_formats: AbstractSet[AudioFormat]) -> AudioFormat:
    """The audio a call's STT stream takes: 16 kHz PCM when the carrier streams at 16 kHz or
    more (24 kHz is decimated) and the engine takes it; else the 8 kHz mu-law the call hears."""
    if carrier_audio.sample_rate >= PCM_16K.sample_rate and PCM_16K in engine_formats:
        return PCM_16K
    return MULAW_8K


def silence(audio: AudioFormat, ms: int) -> bytes:
    """``ms`` of silence in one of STT_FORMATS."""
    return (b"\xff" if audio.encoding == "mulaw" else b"\0") * (audio.bytes_per_ms() * ms)


class TranscriptListener(Protocol):
    """What a stream reports to its call (the turn machine implements this)."""

    def on_transcript(self, text: str, is_final: bool) -> None:
        """A partial (``is_final=False``: the best guess so far for the audio since
        the last final) or a final segment of text (``is_final=True``)."""

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        """The engine gave up on the current audio (retries exhausted or a
        non-retryable error). The stream stays usable: the call goes on.
        ``answer_coming``: a fallback is transcribing that audio, so a final may still come."""

    def on_fallback_transcript(self, text: str) -> None:
        """The fallback's transcript of audio the engine gave up on (``on_stt_failure``):
        it belongs to the utterance that was lost, not to whatever is said now."""

    def on_stt_retry(self, error: str) -> None:
        """The engine is re-creating its stream after ``error`` (for the call's record)."""


class STTStream(Protocol):
    #: True while the stream produces partials and finals by itself as audio flows;
    #: False while it transcribes whole utterances (one final per flush). A stream
    #: may change mode mid-call (Google degrading to the Whisper fallback).
    streaming: bool

    def feed(self, audio: bytes) -> None:
        """Caller audio in the format the stream was opened with, every frame of the call
        (also while the bot speaks)."""

    def speech_started(self, ms_ago: int = 0) -> None:
        """VAD hint: the caller began speaking ``ms_ago`` before the latest audio fed (a start
        known late: a barge-in is judged over several hundred ms of the caller's speech).
        Engines that capture per utterance start there."""

    def flush(self) -> None:
        """The caller's turn is over: deliver a final for the audio heard so far as soon
        as possible. Engines that only transcribe whole utterances transcribe now and
        deliver exactly one final (possibly empty text); streaming engines may do
        nothing, since their finals arrive on their own."""

    def close(self) -> None:
        """The call ended: release per-call resources; deliver nothing more."""


class STTEngine(Protocol):
    name: str
    #: What its streams start as (see STTStream.streaming).
    streaming: bool
    #: The audio formats its streams take (a subset of STT_FORMATS, MULAW_8K always).
    formats: AbstractSet[AudioFormat]

    def open_stream(self, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K) -> STTStream:
        """A stream fed ``audio`` (one of ``formats``; any other raises ValueError)."""


class Transcriber(Protocol):
    """Whole-utterance transcription (the local engine, and the fallback for Google)."""

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        """Transcribe audio in ``fmt`` (one of STT_FORMATS) in a worker thread; fires on the reactor thread."""


def check_format(engine: str, audio: AudioFormat, formats: AbstractSet[AudioFormat]) -> None:
    """Raise a clear ValueError for a stream opened in a format its engine does not take."""
    if audio not in formats:
        raise ValueError(f"the {engine} STT engine takes {', '.join(sorted(map(str, formats)))}, not {audio}")
