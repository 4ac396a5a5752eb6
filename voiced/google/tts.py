"""Google Text-to-Speech: one unary call per sentence, 8 kHz mu-law for the phone.

Each call is a coroutine on the Google event loop (``voiced.google.aio_loop``), as
the STT streams are: how many syntheses run at once is not capped by a thread count.
"""

from __future__ import annotations

from google.cloud import texttospeech_v1 as tts
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from voiced.audio import SAMPLE_RATE, WAVE_FORMAT_MULAW, parse_wav
from voiced.config import Settings
from voiced.google.clients import GoogleClients, is_transient
from voiced.retry import Backoff, retry

log = Logger()

#: A sentence synthesizes in ~100-300 ms; far beyond that the service is in trouble.
TIMEOUT_S = 2.5  # per attempt: with the one retry, at most ~5 s before espeak takes over
#: One quick retry: a turn cannot wait for a long backoff.
RETRY = Backoff(0.15, 0.15, attempts=1)


def mulaw_from_response(audio: bytes) -> bytes:
    """Google sends MULAW inside a WAV header (its length varies): return the raw samples.
    A compatible server that sends the bare samples, as asked, is taken at its word."""
    if not audio.startswith(b"RIFF"):
        return audio
    wav = parse_wav(audio)
    if wav.format_tag != WAVE_FORMAT_MULAW or wav.sample_rate != SAMPLE_RATE or wav.channels != 1:
        raise ValueError(
            f"Google TTS sent format {wav.format_tag} at {wav.sample_rate} Hz x{wav.channels}, "
            f"not 8 kHz mono mu-law"
        )
    return wav.data


class GoogleTTSEngine:
    name = "google"

    def __init__(self, clients: GoogleClients, settings: Settings, reactor) -> None:
        self._clients = clients
        self._reactor = reactor
        voice = {"language_code": settings.language}
        if settings.tts_voice:
            voice["name"] = settings.tts_voice
        self._voice = tts.VoiceSelectionParams(**voice)
        self._audio_config = tts.AudioConfig(
            audio_encoding=tts.AudioEncoding.MULAW,
            sample_rate_hertz=SAMPLE_RATE,
            effects_profile_id=["telephony-class-application"],
        )

    def synthesize(self, text: str) -> Deferred[bytes]:
        def attempt(n: int) -> Deferred[bytes]:
            return self._clients.speech_loop.submit(self._synthesize, text)

        def on_retry(n: int, delay_s: float, failure: Failure) -> None:
            log.info(
                "TTS_RETRY error={error} attempt={attempt} delay_ms={delay_ms}",
                error=failure.type.__name__,
                attempt=n,
                delay_ms=int(round(delay_s * 1000)),
            )

        return retry(self._reactor, attempt, RETRY, lambda f: is_transient(f.value), on_retry)

    async def _synthesize(self, text: str) -> bytes:
        response = await self._clients.tts_client.synthesize_speech(
            input=tts.SynthesisInput(text=text),
            voice=self._voice,
            audio_config=self._audio_config,
            retry=None,  # ours is in the reactor
            timeout=TIMEOUT_S,
        )
        return mulaw_from_response(response.audio_content)
