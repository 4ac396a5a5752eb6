"""The emulator's google.cloud.texttospeech.v1.TextToSpeech servicer, by espeak-ng.

Served methods:
  google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech (unary)
  google.cloud.texttospeech.v1.TextToSpeech/ListVoices       (unary)

Not emulated: speaking rate, pitch and gain (any voice name is accepted, the
language picks the espeak-ng voice).

The methods are coroutines on the emulator's asyncio loop (voiced.emulator.aio_server):
delays are ``asyncio.sleep``, and espeak-ng, which blocks, runs in the emulator's
thread pool.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from google.cloud.texttospeech_v1.types import (
    AudioEncoding,
    ListVoicesRequest,
    ListVoicesResponse,
    SsmlVoiceGender,
    SynthesizeSpeechRequest,
    SynthesizeSpeechResponse,
    Voice,
)

from voiced.audio import SAMPLE_RATE, WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM, pcm16_to_ulaw, resample_pcm16, wav_bytes
from voiced.emulator.common import LANGUAGE_RE, MAX_RATE_HZ, MIN_RATE_HZ, EmulatorStats, Rejected, invalid
from voiced.emulator.faults import Fault, FaultSchedule
from voiced.emulator.scripted import ScriptedPlan, scripted_speech_pcm16

log = logging.getLogger("voiced.emulator")

TTS_SERVICE = "google.cloud.texttospeech.v1.TextToSpeech"
TTS_MAX_INPUT_BYTES = 5000  # Google's limit per request
ESPEAK_RATE_HZ = 22050  # what espeak-ng produces: the voices' natural rate

# The voices ListVoices offers; SynthesizeSpeech honours the language and accepts any name.
_VOICES = (("en-US", "en-US-Espeak-A"), ("en-GB", "en-GB-Espeak-A"), ("he-IL", "he-IL-Espeak-A"))
_SSML_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class _Wanted:
    """A synthesis request, checked."""

    text: str
    language: str
    encoding: AudioEncoding
    rate: int


class TextToSpeech:
    """google.cloud.texttospeech.v1.TextToSpeech: SynthesizeSpeech and ListVoices, by espeak-ng."""

    def __init__(
        self,
        stats: EmulatorStats,
        fault_schedule: Callable[[], FaultSchedule],
        scripted: ScriptedPlan | None = None,
        executor: Executor | None = None,
    ) -> None:
        self._stats = stats
        self._scripted = scripted  # a fixed tone after a fixed delay instead of espeak-ng
        self._fault_schedule = fault_schedule  # the emulator's current plan, which set_faults replaces
        self._executor = executor  # for espeak-ng (None: the loop's default executor)
        self._lock = threading.Lock()
        self._synthesizers: dict[str, Any] = {}  # language -> EspeakSynthesizer, made on first use

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            TTS_SERVICE,
            {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self.synthesize_speech,
                    request_deserializer=SynthesizeSpeechRequest.deserialize,
                    response_serializer=SynthesizeSpeechResponse.serialize,
                ),
                "ListVoices": grpc.unary_unary_rpc_method_handler(
                    self.list_voices,
                    request_deserializer=ListVoicesRequest.deserialize,
                    response_serializer=ListVoicesResponse.serialize,
                ),
            },
        )

    async def list_voices(self, request: ListVoicesRequest, context: grpc.aio.ServicerContext) -> ListVoicesResponse:
        wanted = request.language_code.lower()
        voices = [
            Voice(language_codes=[language], name=name, ssml_gender=SsmlVoiceGender.NEUTRAL,
                  natural_sample_rate_hertz=ESPEAK_RATE_HZ)  # fmt: skip
            for language, name in _VOICES
            if not wanted or language.lower() == wanted or language.lower().split("-")[0] == wanted
        ]
        return ListVoicesResponse(voices=voices)

    async def synthesize_speech(
        self, request: SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> SynthesizeSpeechResponse:
        schedule = self._fault_schedule()
        number, fault = schedule.next_synthesis()
        try:
            return await self._answer(number, fault, request, context, schedule.plan.latency_ms)
        except asyncio.CancelledError:
            # The client gave up during a delay (its deadline, a barge-in): nothing was sent.
            log.info("synthesis %d cancelled by the client", number)
            raise

    async def _answer(
        self,
        number: int,
        fault: Fault | None,
        request: SynthesizeSpeechRequest,
        context: grpc.aio.ServicerContext,
        latency_ms: int,
    ) -> SynthesizeSpeechResponse:
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)  # the emulated service latency
        try:
            if fault is not None:
                raise Rejected(fault.status, fault.message)
            try:
                audio = await self._synthesize(request)
            except Rejected:
                raise
            except Exception as e:
                log.exception("synthesis %d crashed", number)
                raise Rejected(grpc.StatusCode.INTERNAL, f"Internal error encountered. [voiced-emulator: {e!r}]")
        except Rejected as e:
            self._stats.add(syntheses_failed=1)
            log.info("synthesis %d failed %s: %s", number, e.status.name, e.message)
            await context.abort(e.status, e.message)
            raise AssertionError("context.abort returned") from None
        self._stats.add(syntheses=1)
        log.info("synthesis %d: %s, %d bytes", number, request.voice.language_code, len(audio))
        return SynthesizeSpeechResponse(audio_content=audio)

    async def _synthesize(self, request: SynthesizeSpeechRequest) -> bytes:
        wanted = _check(request)
        if self._scripted is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._espeak, wanted)
        if self._scripted.tts_delay_ms:
            await asyncio.sleep(self._scripted.tts_delay_ms / 1000)  # the emulated latency, the loop goes on
        return _encode(scripted_speech_pcm16(wanted.rate), wanted)

    def _espeak(self, wanted: _Wanted) -> bytes:
        """In a worker thread: espeak-ng blocks for as long as it speaks."""
        pcm, espeak_rate = self._synthesizer(wanted.language).synthesize_pcm16(wanted.text)
        return _encode(resample_pcm16(pcm, espeak_rate, wanted.rate), wanted)

    def _synthesizer(self, language: str) -> Any:
        with self._lock:
            synthesizer = self._synthesizers.get(language)
            if synthesizer is None:
                from voiced.tts.local import EspeakSynthesizer

                synthesizer = EspeakSynthesizer(language)
                # espeak falls back to English for a language it lacks; Google refuses the voice.
                if synthesizer.voice.split("-")[0] != language.lower().split("-")[0]:
                    raise invalid(f"Voice with language code '{language}' does not exist.")
                self._synthesizers[language] = synthesizer
            return synthesizer


def _check(request: SynthesizeSpeechRequest) -> _Wanted:
    """What Google refuses before synthesizing; raises Rejected."""
    text = request.input.text or html.unescape(_SSML_TAG.sub(" ", request.input.ssml))
    if not text.strip():
        raise invalid("Either `input.text` or `input.ssml` must be set.")
    if len(text.encode("utf-8")) > TTS_MAX_INPUT_BYTES:
        raise invalid(f"Either `input.text` or `input.ssml` is longer than the limit of "
                      f"{TTS_MAX_INPUT_BYTES} bytes. This limit is different from quotas.")  # fmt: skip
    language = request.voice.language_code
    if not LANGUAGE_RE.match(language):
        raise invalid("Invalid language code: voice.language_code must be set to a BCP-47 code.")
    config = request.audio_config
    encoding = config.audio_encoding
    if encoding not in (AudioEncoding.LINEAR16, AudioEncoding.MULAW, AudioEncoding.PCM):
        raise invalid(f"voiced-emulator cannot encode {encoding.name}: use LINEAR16, MULAW or PCM.")
    rate = config.sample_rate_hertz or (SAMPLE_RATE if encoding == AudioEncoding.MULAW else ESPEAK_RATE_HZ)
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise invalid(f"sample_rate_hertz {rate} is out of range [{MIN_RATE_HZ}, {MAX_RATE_HZ}].")
    return _Wanted(text, language, encoding, rate)


def _encode(pcm: bytes, wanted: _Wanted) -> bytes:
    if wanted.encoding == AudioEncoding.MULAW:
        # Google returns mu-law with a WAV header (format tag 7), not raw bytes.
        return wav_bytes(pcm16_to_ulaw(pcm), wanted.rate, WAVE_FORMAT_MULAW, 8)
    if wanted.encoding == AudioEncoding.LINEAR16:
        return wav_bytes(pcm, wanted.rate, WAVE_FORMAT_PCM, 16)
    return pcm  # PCM: raw samples, no header
