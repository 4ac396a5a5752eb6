"""The process-wide Google clients: credentials, the STT channel pool, the TTS client.

Nothing is built in __init__: twistd constructs the service before it forks, and
gRPC objects do not survive a fork. The service calls start() from startService
(after the fork) and stop() from stopService.

Every channel is a ``grpc.aio`` channel on the Google event loop
(``voiced.google.aio_loop``), which runs in the thread of the STT pool the service
passes to start(): STT streams and TTS requests alike are coroutines there, so no
thread count caps how many are in progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from google.api_core import exceptions as gexc
from google.cloud import speech_v1, texttospeech_v1
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcAsyncIOTransport
from google.cloud.texttospeech_v1.services.text_to_speech.transports import TextToSpeechGrpcAsyncIOTransport
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from voiced.config import Settings
from voiced.google.aio_loop import AioLoop
from voiced.google.channels import SPEECH_TARGET, TTS_TARGET, ChannelPool, Lease, check_endpoint, open_channel
from voiced.google.credentials import LoadedCredentials, load_credentials
from voiced.lifecycle import note_construction

log = Logger()

#: What a retry may cure: the service or the connection, not the request.
TRANSIENT_ERRORS = (
    gexc.ServiceUnavailable,  # 503, and a connection reset by peer
    gexc.InternalServerError,
    gexc.DeadlineExceeded,
    gexc.Aborted,
    gexc.ResourceExhausted,
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    # Some resets surface as UNKNOWN ("Stream removed", "Connection reset by peer").
    text = str(error).lower()
    return isinstance(error, gexc.Unknown) and ("reset" in text or "stream removed" in text)


def _speech_client(channel) -> speech_v1.SpeechAsyncClient:
    client = speech_v1.SpeechAsyncClient(transport=SpeechGrpcAsyncIOTransport(channel=channel))
    note_construction("google_speech_client")
    return client


class GoogleClients:
    def __init__(self, settings: Settings, reactor) -> None:
        self.settings = settings
        #: Where every Google RPC of the process runs (started by start()).
        self.speech_loop = AioLoop(reactor)
        self._credentials: LoadedCredentials | None = None
        self._speech: ChannelPool[speech_v1.SpeechAsyncClient] | None = None
        self._tts_channel = None
        self._tts: texttospeech_v1.TextToSpeechAsyncClient | None = None

    @property
    def started(self) -> bool:
        return self._speech is not None

    def start(self, stt_pool: ThreadPool) -> None:
        """Load credentials, start the speech loop in a thread of ``stt_pool`` and open the
        channels (idempotent; blocks: call it from a worker thread)."""
        if self.started:
            return
        settings = self.settings
        check_endpoint(settings)
        self._credentials = creds = load_credentials(settings)

        def speech_channel(index: int):
            return open_channel(settings, creds.credentials, SPEECH_TARGET, index, aio=True)

        async def open_channels() -> None:
            # Grown channels take pool indexes after the TTS channel's (google_channels):
            # a shared index would share one HTTP/2 connection.
            self._speech = ChannelPool([speech_channel(i) for i in range(settings.google_channels)],
                                       _speech_client, open_channel=lambda n: speech_channel(n + 1))
            # TTS calls are short unary RPCs: one channel of their own, apart from the streams.
            self._tts_channel = open_channel(settings, creds.credentials, TTS_TARGET, settings.google_channels,
                                             aio=True)
            self._tts = texttospeech_v1.TextToSpeechAsyncClient(
                transport=TextToSpeechGrpcAsyncIOTransport(channel=self._tts_channel))
            note_construction("google_tts_client")

        self.speech_loop.start(stt_pool)
        self.speech_loop.run_sync(open_channels)
        log.info(
            "google clients ready: {channels} speech channels, endpoint={endpoint}, credentials={source}",
            channels=settings.google_channels,
            endpoint=settings.google_endpoint or "google",
            source=creds.source,
        )

    def wait_connected(self, timeout_s: float, speech: bool = True) -> None:
        """Block (in a worker thread) until a speech channel (else the TTS channel) has
        connected; ConnectionError after ``timeout_s``: the service is out of reach."""
        if self._speech is None or self._tts_channel is None:
            raise RuntimeError("GoogleClients.start() has not been called")
        channel = self._speech.channel(0) if speech else self._tts_channel
        try:
            self.speech_loop.run_sync(lambda: asyncio.wait_for(channel.channel_ready(), timeout_s), timeout_s + 1)
        except (asyncio.TimeoutError, concurrent.futures.TimeoutError):
            where = self.settings.google_endpoint or (SPEECH_TARGET if speech else TTS_TARGET)
            raise ConnectionError(f"cannot connect to {where} within {timeout_s:g} s") from None

    def stop(self) -> None:
        """Close every channel (streams in flight end, freeing their threads)."""
        speech, tts_channel = self._speech, self._tts_channel
        self._speech = self._tts_channel = self._tts = None

        async def close_channels() -> None:
            if speech is not None:
                await speech.close()
            if tts_channel is not None:
                await tts_channel.close()

        if self.speech_loop.running:
            try:
                self.speech_loop.run_sync(close_channels)
            except Exception:
                log.failure("Closing the Google channels")
        self.speech_loop.stop()
        if self._credentials is not None:
            self._credentials.discard()
            self._credentials = None

    def acquire_speech(self) -> Lease[speech_v1.SpeechAsyncClient]:
        """A speech client for one stream, on the speech loop; ``lease.release()`` when the stream ends."""
        if self._speech is None:
            raise RuntimeError("GoogleClients.start() has not been called")
        return self._speech.acquire()

    @property
    def speech_loads(self) -> list[int]:
        """Streams per channel, for metrics and tests."""
        return self._speech.loads if self._speech is not None else []

    @property
    def tts_client(self) -> texttospeech_v1.TextToSpeechAsyncClient:
        """The TTS client, for coroutines on ``speech_loop``."""
        if self._tts is None:
            raise RuntimeError("GoogleClients.start() has not been called")
        return self._tts
