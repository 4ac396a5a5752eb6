"""Google's rules for one StreamingRecognize stream, apart from how the server runs it.

The config check (as Google validates it, within the emulator's means), the audio
decoder (any rate, LINEAR16 or MULAW -> 8 kHz PCM16, and the audio time it carried),
the response a recognition output becomes, and the watch that says when recognition
falls behind real time. No gRPC server here: voiced.emulator.aio_server serves them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.cloud.speech_v1.types import (
    RecognitionConfig,
    SpeechRecognitionAlternative,
    StreamingRecognitionResult,
    StreamingRecognizeRequest,
    StreamingRecognizeResponse,
)

from voiced.audio import SAMPLE_RATE, ulaw_to_pcm16
from voiced.emulator.common import LANGUAGE_RE, MAX_RATE_HZ, MIN_RATE_HZ, EmulatorStats, invalid
from voiced.emulator.recognizer import Output, SpeechEvent

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = logging.getLogger("voiced.emulator")

SPEECH_SERVICE = "google.cloud.speech.v1.Speech"

# The local engines give no calibrated confidence; these are typical Google values.
FINAL_CONFIDENCE = 0.9
INTERIM_STABILITY = 0.5

# Models restricted to a few languages. Google's real table is longer and changes;
# this subset keeps the failure a telephony deployment meets (he-IL + phone_call).
# Every other known model accepts every well-formed language code.
_MODEL_LANGUAGES: dict[str, frozenset[str]] = {
    "phone_call": frozenset({"en-us", "en-gb", "en-au", "en-in", "es-us", "es-es", "fr-fr", "de-de", "ja-jp", "pt-br"}),
    "video": frozenset({"en-us", "en-gb", "es-us", "fr-fr", "de-de", "ja-jp", "pt-br"}),
    "medical_conversation": frozenset({"en-us"}),
    "medical_dictation": frozenset({"en-us"}),
}
_OPEN_MODELS = frozenset({"", "default", "latest_long", "latest_short", "command_and_search", "telephony",
                          "telephony_short"})  # fmt: skip


@dataclass(frozen=True)
class AudioFormat:
    encoding: RecognitionConfig.AudioEncoding
    sample_rate_hertz: int


def check_recognition_config(config: RecognitionConfig) -> AudioFormat:
    """Validate a streaming config as Google does (within the emulator's means); raises Rejected."""
    enc = RecognitionConfig.AudioEncoding
    if config.encoding == enc.ENCODING_UNSPECIFIED:
        raise invalid("Invalid recognition 'config': bad encoding..")
    if config.encoding not in (enc.LINEAR16, enc.MULAW):
        raise invalid(f"Invalid recognition 'config': encoding {config.encoding.name} is not supported by "
                      "voiced-emulator (LINEAR16 and MULAW only).")  # fmt: skip
    if not MIN_RATE_HZ <= config.sample_rate_hertz <= MAX_RATE_HZ:
        raise invalid("Invalid recognition 'config': bad sample rate hertz.")
    if config.audio_channel_count > 1:
        raise invalid("Invalid recognition 'config': voiced-emulator takes mono audio only.")
    language = config.language_code
    if not LANGUAGE_RE.match(language):
        raise invalid("Invalid recognition 'config': bad language code.")
    model = config.model
    if model not in _OPEN_MODELS and model not in _MODEL_LANGUAGES:
        raise invalid(f"Invalid recognition 'config': the requested model '{model}' does not exist.")
    if model in _MODEL_LANGUAGES and language.lower() not in _MODEL_LANGUAGES[model]:
        raise invalid(f"The requested model is currently not supported for language : {language}.")
    return AudioFormat(config.encoding, config.sample_rate_hertz)


class AudioDecoder:
    """A stream's audio (LINEAR16 or MULAW at any rate) -> 8 kHz PCM16, and its duration."""

    def __init__(self, fmt: AudioFormat) -> None:
        self._mulaw = fmt.encoding == RecognitionConfig.AudioEncoding.MULAW
        self._rate = fmt.sample_rate_hertz
        self._sample_bytes = 1 if self._mulaw else 2
        self._odd = b""  # half a PCM16 sample split across requests
        self._ratecv_state: Any = None
        self.samples = 0

    @property
    def seconds(self) -> float:
        return self.samples / self._rate

    def decode(self, audio: bytes) -> bytes:
        audio = self._odd + audio
        usable = len(audio) - len(audio) % self._sample_bytes
        audio, self._odd = audio[:usable], audio[usable:]
        self.samples += usable // self._sample_bytes
        pcm = ulaw_to_pcm16(audio) if self._mulaw else audio
        if self._rate != SAMPLE_RATE:
            # Stateful and cheap; its weak anti-aliasing costs nothing the VAD or Whisper notices.
            pcm, self._ratecv_state = audioop.ratecv(pcm, 2, 1, self._rate, SAMPLE_RATE, self._ratecv_state)
        return pcm


def response(output: Output, language_code: str) -> StreamingRecognizeResponse:
    """The StreamingRecognizeResponse Google sends for one recognition output."""
    if isinstance(output, SpeechEvent):
        return StreamingRecognizeResponse(
            speech_event_type=StreamingRecognizeResponse.SpeechEventType[output.kind],
            speech_event_time=timedelta(milliseconds=output.at_ms),
        )
    alternative = SpeechRecognitionAlternative(
        transcript=output.text, confidence=FINAL_CONFIDENCE if output.is_final else 0.0
    )
    result = StreamingRecognitionResult(
        alternatives=[alternative],
        is_final=output.is_final,
        stability=0.0 if output.is_final else INTERIM_STABILITY,
        result_end_time=timedelta(milliseconds=output.end_ms),
        language_code=language_code.lower(),
    )
    return StreamingRecognizeResponse(results=[result])


#: The raw protobuf class: the server reads requests with it, ~4 times cheaper per audio request than
#: proto-plus (which wraps every message and converts ``audio_content`` on each access).
REQUEST_PB: Any = StreamingRecognizeRequest.pb()


def which(request: Any) -> str | None:
    """"streaming_config" or "audio_content" (or None): a raw (REQUEST_PB) request's oneof."""
    return request.WhichOneof("streaming_request")


#: A request waiting this long before recognition means the recognizer is not keeping up.
BEHIND_S = 1.0


class BehindWatch:
    """Audio arrives in real time, so a request that waited in the inbox for long means
    recognition (Whisper, on the emulator's cores) is slower than the calls' speech:
    finals come late and voiced answers partials. Says so once per stream, and once
    when it has caught up again."""

    def __init__(self, number: int, stats: EmulatorStats, threshold_s: float = BEHIND_S) -> None:
        self.number = number
        self.stats = stats
        self.threshold_s = threshold_s
        self.behind = False

    def note(self, waited_s: float) -> None:
        if waited_s > self.threshold_s and not self.behind:
            self.behind = True
            log.warning(
                "RECOGNIZER_BEHIND stream=%d waited_s=%.1f active_streams=%d: recognition is slower than real "
                "time, finals will be late (too many concurrent calls for this machine: see README)",
                self.number, waited_s, self.stats.snapshot()["active_streams"],
            )
        elif self.behind and waited_s < self.threshold_s / 2:
            self.behind = False
            log.info("RECOGNIZER_CAUGHT_UP stream=%d", self.number)
