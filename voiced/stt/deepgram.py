"""Deepgram live speech-to-text: one WebSocket per call stream, that survives failure.

The engine (``DeepgramSTTEngine``) is built once per process: the listen URL per audio
format (8 kHz mu-law as the phone network sends it, or a wideband carrier's 16 kHz PCM as
``linear16``), the ``Connector`` (its Autobahn client factories, the ``Authorization:
Token`` header, one TLS context), the retry budget. Calls borrow it: ``open_stream``
gives a ``DeepgramSTTStream`` (``voiced.stt.deepgram_stream``), which opens, feeds,
finalizes, keeps alive, retries and gives up on that call's WebSockets only.

The rules are Google STT's (``voiced.google.stt``): a stream that fails for a reason a
retry may cure (an HTTP 5xx or 429 at the handshake, a close such as 1011, a reset, a
server that does not answer the end of a turn) is replaced after a backoff, and the new
one replays the audio since the last final, so no word is lost and none is finalized
twice; when the retries run out that audio goes to the fallback transcriber and the
listener is told; a refusal no retry cures (401/403: the key; 400: the model or
language) degrades that call to whole-utterance transcription by the fallback, with
one error line that names the call. The wire itself is ``voiced.stt.deepgram_wire``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from voiced.audio import MULAW_8K, AudioFormat
from voiced.config import Settings
from voiced.lifecycle import note_construction
from voiced.retry import Backoff
from voiced.stt.base import STT_FORMATS, Transcriber, TranscriptListener, check_format
from voiced.stt.deepgram_link import Connector
from voiced.stt.deepgram_stream import DeepgramSTTStream
from voiced.stt.deepgram_wire import deepgram_language, listen_url


class DeepgramSTTEngine:
    """STTEngine: process-wide; each call opens a DeepgramSTTStream."""

    name = "deepgram"
    streaming = True
    formats = STT_FORMATS

    def __init__(self, settings: Settings, reactor, fallback: Transcriber | None, *, clock=None,
                 backoff: Backoff | None = None, connector: Connector | None = None) -> None:
        """``reactor`` carries the WebSockets; ``clock`` (default: the reactor) times the
        keepalives, watchdogs and backoffs."""
        self.settings = settings
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.fallback = fallback
        self.backoff = backoff or Backoff.from_ms(
            settings.stt_retry_initial_ms, settings.stt_retry_max_ms, settings.stt_retry_attempts, jitter=0.1
        )
        self.language = deepgram_language(settings.language)
        self.urls = {
            audio: listen_url(settings.deepgram_url, audio, model=settings.deepgram_model,
                              language=settings.language, endpointing_ms=settings.deepgram_endpointing_ms,
                              utterance_end_ms=settings.deepgram_utterance_end_ms)
            for audio in self.formats
        }
        self.connector = connector or Connector(reactor, self.urls, settings.deepgram_api_key)
        self.host = urlsplit(settings.deepgram_url).netloc  # for log lines: never the key
        note_construction("stt_deepgram_engine")

    def open_stream(
        self, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K
    ) -> DeepgramSTTStream:
        check_format(self.name, audio, self.formats)
        return DeepgramSTTStream(self, call_id, listener, audio)
