"""Google streaming speech-to-text, one gRPC stream at a time per call, that survives failure.

A call's audio is kept from the end of the last final result (``result_end_time``)
on, addressed by absolute byte offsets since the call began (8 kHz mu-law: one byte
per sample; a wideband carrier's 16 kHz PCM, sent as LINEAR16: two). Whenever a stream has to be replaced -- a retryable error, Google's
stream limits, or a deliberate rollover before the 305 s limit, taken after a final
or in silence -- the next stream starts by replaying that audio, so no word is lost,
and results of the replaced stream are ignored from then on, so no final is
duplicated. A stream that fails for good (retries exhausted) hands that audio to the
fallback transcriber; a stream the service refuses outright (a bad model/language,
credentials) degrades the call to whole-utterance transcription by the fallback.

This module is the process-wide engine (``GoogleSTTEngine``: the recognition config,
the retry budget, the rollover age). One call's stream -- opening, feeding, rolling
over, retrying, giving up, degrading -- is ``voiced.google.stt_stream``; what results
have settled and still owe (``Ledger``) is ``voiced.google.stt_ledger``; the RPC itself
(``Session``) and the audio log are ``voiced.google.stt_session``.

Threads: every stream is a ``grpc.aio`` call on the process's speech event loop
(``voiced.google.aio_loop``, one thread of the service's STT pool), so a call costs
no thread of its own. The RPC goes through the transport's stub, which returns the
call object at once: the client library's ``streaming_recognize`` waits for the
first response before there is anything to cancel, so a server that never answers
would keep a retired or closed stream open until the deadline. Everything else,
including every listener call, happens on the reactor thread.

Backoff: only real progress restores the retry budget -- a final, or a stream that
kept answering for ``HEALTHY_STREAM_S``. A stream that answers once and dies (a
proxy resetting every stream) is a failure like any other, so an utterance that
cannot be transcribed ends in the give-up path.
"""

from __future__ import annotations

from google.cloud import speech_v1
from twisted.logger import Logger

from voiced.audio import MULAW_8K, AudioFormat
from voiced.config import Settings
from voiced.google.clients import GoogleClients
from voiced.google.stt_session import HEALTHY_STREAM_S
from voiced.google.stt_stream import GoogleSTTStream
from voiced.retry import Backoff
from voiced.stt.base import PCM_16K, STT_FORMATS, Transcriber, TranscriptListener, check_format

log = Logger()

_ENCODINGS = {
    # The phone network's mu-law goes as it comes: no transcoding.
    MULAW_8K: speech_v1.RecognitionConfig.AudioEncoding.MULAW,
    # A wideband carrier's 16 kHz: Google recognizes it better than its telephone-band copy.
    PCM_16K: speech_v1.RecognitionConfig.AudioEncoding.LINEAR16,
}


def recognition_config(settings: Settings, audio: AudioFormat = MULAW_8K) -> speech_v1.StreamingRecognitionConfig:
    return speech_v1.StreamingRecognitionConfig(
        config=speech_v1.RecognitionConfig(
            encoding=_ENCODINGS[audio],
            sample_rate_hertz=audio.sample_rate,
            language_code=settings.language,
            model=settings.google_stt_model,
            use_enhanced=True,
            enable_automatic_punctuation=True,
        ),
        interim_results=True,
    )


class GoogleSTTEngine:
    """STTEngine: process-wide; each call opens a GoogleSTTStream."""

    name = "google"
    streaming = True
    formats = STT_FORMATS

    def __init__(
        self,
        clients: GoogleClients,
        settings: Settings,
        reactor,
        fallback: Transcriber | None,
        rollover_s: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.reactor = reactor
        self.fallback = fallback
        self.rollover_s = float(settings.stt_rollover_s if rollover_s is None else rollover_s)
        self.backoff = backoff or Backoff.from_ms(
            settings.stt_retry_initial_ms, settings.stt_retry_max_ms, settings.stt_retry_attempts, jitter=0.1
        )
        self.configs = {audio: recognition_config(settings, audio) for audio in self.formats}

    def stream_limit_seen(self, age_s: float) -> None:
        """A server ended a stream at its duration limit before our rollover age: roll over
        earlier from now on, at a final or in silence, instead of meeting the limit mid-word."""
        adapted = round(age_s * 0.8, 1)
        if age_s >= self.rollover_s or adapted < HEALTHY_STREAM_S:
            return
        log.warn("STT_ROLLOVER_ADAPTED the speech service ends streams after {age:.0f} s, before "
                 "VOICED_STT_ROLLOVER_S={rollover:.0f}: rolling over at {adapted} s", age=age_s,
                 rollover=self.rollover_s, adapted=adapted)
        self.rollover_s = adapted

    def config_for(self, audio: AudioFormat) -> speech_v1.StreamingRecognitionConfig:
        return self.configs[audio]

    def open_stream(
        self, call_id: str, listener: TranscriptListener, audio: AudioFormat = MULAW_8K
    ) -> "GoogleSTTStream":
        check_format(self.name, audio, self.formats)
        return GoogleSTTStream(self, call_id, listener, audio)
