"""The speech-to-text contract between the turn machine and an engine.

An engine is process-wide (one model, one client, one channel pool); a stream is
per call and only borrows the engine. Every method here is called on the reactor
thread, and every listener callback must be delivered on the reactor thread.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred


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

    def feed(self, ulaw: bytes) -> None:
        """Caller audio, 8 kHz mu-law, every frame of the call (also while the bot speaks)."""

    def speech_started(self) -> None:
        """VAD hint: the caller began speaking (engines that capture per utterance start here)."""

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

    def open_stream(self, call_id: str, listener: TranscriptListener) -> STTStream: ...


class Transcriber(Protocol):
    """Whole-utterance transcription (the local engine, and the fallback for Google)."""

    def transcribe(self, ulaw: bytes) -> Deferred[str]:
        """Transcribe 8 kHz mu-law audio in a worker thread; fires on the reactor thread."""
