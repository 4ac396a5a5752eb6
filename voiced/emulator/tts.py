"""The emulator's google.cloud.texttospeech.v1.TextToSpeech servicers, by espeak-ng or a tone.

Served methods:
  google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech (unary)
  google.cloud.texttospeech.v1.TextToSpeech/ListVoices       (unary)

Not emulated: speaking rate, pitch and gain (any voice name is accepted, the
language picks the espeak-ng voice).

Two servicers, one per server: ``TextToSpeech`` (espeak-ng, which blocks) runs in
the thread server's worker threads (voiced.emulator.thread_server);
``ScriptedTextToSpeech`` (the scripted mode's tone) runs on the asyncio server's loop
(voiced.emulator.aio_server), where every delay is an ``asyncio.sleep``. They share
the request checks, the encoding, the voices and the fault handling.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
import time
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


class _Servicer:
    """What both servicers share: the method table, the voices, the fault and the log lines."""

    def __init__(self, stats: EmulatorStats, fault_schedule: Callable[[], FaultSchedule]) -> None:
        self._stats = stats
        self._fault_schedule = fault_schedule  # the emulator's current plan, which set_faults replaces

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            TTS_SERVICE,
            {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self.synthesize_speech,  # type: ignore[attr-defined]
                    request_deserializer=SynthesizeSpeechRequest.deserialize,
                    response_serializer=SynthesizeSpeechResponse.serialize,
                ),
                "ListVoices": grpc.unary_unary_rpc_method_handler(
                    self.list_voices,  # type: ignore[attr-defined]
                    request_deserializer=ListVoicesRequest.deserialize,
                    response_serializer=ListVoicesResponse.serialize,
                ),
            },
        )

    def _failed(self, number: int, e: Rejected) -> None:
        self._stats.add(syntheses_failed=1)
        log.info("synthesis %d failed %s: %s", number, e.status.name, e.message)

    def _done(self, number: int, request: SynthesizeSpeechRequest, audio: bytes) -> SynthesizeSpeechResponse:
        self._stats.add(syntheses=1)
        log.info("synthesis %d: %s, %d bytes", number, request.voice.language_code, len(audio))
        return SynthesizeSpeechResponse(audio_content=audio)


class TextToSpeech(_Servicer):
    """SynthesizeSpeech and ListVoices by espeak-ng, in the sync server's worker threads."""

    def __init__(
        self, stats: EmulatorStats, fault_schedule: Callable[[], FaultSchedule], scripted: ScriptedPlan | None = None
    ) -> None:
        super().__init__(stats, fault_schedule)
        self._scripted = scripted  # a fixed tone after a fixed delay instead of espeak-ng
        self._lock = threading.Lock()
        self._synthesizers: dict[str, Any] = {}  # language -> EspeakSynthesizer, made on first use

    def list_voices(self, request: ListVoicesRequest, context: grpc.ServicerContext) -> ListVoicesResponse:
        return _voices(request)

    def synthesize_speech(
        self, request: SynthesizeSpeechRequest, context: grpc.ServicerContext
    ) -> SynthesizeSpeechResponse:
        schedule = self._fault_schedule()
        number, fault = schedule.next_synthesis()
        if schedule.plan.latency_ms:
            time.sleep(schedule.plan.latency_ms / 1000)  # a worker thread: sleeping is the emulated latency
        try:
            audio = _guarded(number, fault, lambda: self._synthesize(_check(request)))
        except Rejected as e:
            self._failed(number, e)
            context.abort(e.status, e.message)
            raise AssertionError("context.abort returned") from None
        return self._done(number, request, audio)

    def _synthesize(self, wanted: _Wanted) -> bytes:
        if self._scripted is not None:
            if self._scripted.tts_delay_ms:
                time.sleep(self._scripted.tts_delay_ms / 1000)  # a worker thread: the emulated latency
            return _encode(scripted_speech_pcm16(wanted.rate), wanted)
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


class ScriptedTextToSpeech(_Servicer):
    """The scripted mode's synthesis (a tone after ``tts_delay_ms``), on the asyncio server's loop."""

    def __init__(self, stats: EmulatorStats, fault_schedule: Callable[[], FaultSchedule], plan: ScriptedPlan) -> None:
        super().__init__(stats, fault_schedule)
        self._plan = plan

    async def list_voices(self, request: ListVoicesRequest, context: grpc.aio.ServicerContext) -> ListVoicesResponse:
        return _voices(request)

    async def synthesize_speech(
        self, request: SynthesizeSpeechRequest, context: grpc.aio.ServicerContext
    ) -> SynthesizeSpeechResponse:
        schedule = self._fault_schedule()
        number, fault = schedule.next_synthesis()
        try:
            # The delays wait on the loop: the other calls go on meanwhile.
            if schedule.plan.latency_ms:
                await asyncio.sleep(schedule.plan.latency_ms / 1000)  # the emulated service latency
            try:
                wanted = _guarded(number, fault, lambda: _check(request))
            except Rejected as e:
                self._failed(number, e)
                await context.abort(e.status, e.message)
                raise AssertionError("context.abort returned") from None
            if self._plan.tts_delay_ms:
                await asyncio.sleep(self._plan.tts_delay_ms / 1000)
        except asyncio.CancelledError:
            # The client gave up during a delay (its deadline, a barge-in): nothing was sent.
            log.info("synthesis %d cancelled by the client", number)
            raise
        return self._done(number, request, _encode(scripted_speech_pcm16(wanted.rate), wanted))


def _guarded(number: int, fault: Fault | None, synthesize: Callable[[], Any]) -> Any:
    """The injected fault, or what ``synthesize`` returns; a crash is Google's internal error."""
    if fault is not None:
        raise Rejected(fault.status, fault.message)
    try:
        return synthesize()
    except Rejected:
        raise
    except Exception as e:
        log.exception("synthesis %d crashed", number)
        raise Rejected(grpc.StatusCode.INTERNAL, f"Internal error encountered. [voiced-emulator: {e!r}]") from e


def _voices(request: ListVoicesRequest) -> ListVoicesResponse:
    wanted = request.language_code.lower()
    voices = [
        Voice(language_codes=[language], name=name, ssml_gender=SsmlVoiceGender.NEUTRAL,
              natural_sample_rate_hertz=ESPEAK_RATE_HZ)  # fmt: skip
        for language, name in _VOICES
        if not wanted or language.lower() == wanted or language.lower().split("-")[0] == wanted
    ]
    return ListVoicesResponse(voices=voices)


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
