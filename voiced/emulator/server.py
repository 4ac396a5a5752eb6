"""A Google-compatible Speech v1 / Text-to-Speech v1 gRPC server on loopback, with fault injection.

The real client libraries talk to it over an insecure channel::

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    SpeechClient(transport=SpeechGrpcTransport(channel=channel))
    TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))

This module holds the Speech servicer and ``Emulator``, which serves it together
with the Text-to-Speech servicer of voiced.emulator.tts.

Served methods:
  google.cloud.speech.v1.Speech/StreamingRecognize          (bidi streaming)
  google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech (unary, see voiced.emulator.tts)
  google.cloud.texttospeech.v1.TextToSpeech/ListVoices       (unary, see voiced.emulator.tts)

StreamingRecognize, as Google does it: the first request carries only
``streaming_config``, every later one only ``audio_content``; a config error,
a config out of turn or audio first ends the stream with INVALID_ARGUMENT. The
stream ends with OUT_OF_RANGE after ``audio_timeout_s`` (wall time) without a
request, and once it has carried more than ``max_stream_s`` of audio (audio time:
a real-time client sees Google's wall-clock limit, a test sends faster). With
``single_utterance`` the stream ends by itself after the first utterance's final.
What the emulator cannot do is refused with INVALID_ARGUMENT too: encodings other
than LINEAR16 and MULAW, and more than one channel.

Not emulated: voice_activity_timeout, word time offsets, several alternatives,
speech adaptation.

The gRPC server runs its handlers in its own thread pool (this is a separate
test/development process, not the reactor): each stream also owns one reader
thread, so the audio timeout can fire while the client sends nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, NoReturn

import grpc
from google.cloud.speech_v1.types import (
    RecognitionConfig,
    SpeechRecognitionAlternative,
    StreamingRecognitionConfig,
    StreamingRecognitionResult,
    StreamingRecognizeRequest,
    StreamingRecognizeResponse,
)

from voiced.audio import SAMPLE_RATE, ulaw_to_pcm16
from voiced.emulator.common import LANGUAGE_RE, MAX_RATE_HZ, MIN_RATE_HZ, EmulatorStats, Rejected, invalid
from voiced.emulator.faults import Fault, FaultPlan, FaultSchedule
from voiced.emulator.scripted import EnergySession, ScriptedPlan
from voiced.emulator.recognizer import Output, RecognitionSession, Recognizer, SpeechEvent, WhisperRecognizer
from voiced.emulator.tts import ESPEAK_RATE_HZ, TTS_MAX_INPUT_BYTES, TTS_SERVICE, TextToSpeech

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = logging.getLogger("voiced.emulator")

# Names that lived here before common.py and tts.py split off stay importable from here.
__all__ = [
    "ESPEAK_RATE_HZ",
    "FINAL_CONFIDENCE",
    "INTERIM_STABILITY",
    "MAX_RATE_HZ",
    "MIN_RATE_HZ",
    "SPEECH_SERVICE",
    "TTS_MAX_INPUT_BYTES",
    "TTS_SERVICE",
    "AudioFormat",
    "Emulator",
    "EmulatorStats",
    "Rejected",
    "check_recognition_config",
]

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


class _AudioDecoder:
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


def _response(output: Output, language_code: str) -> StreamingRecognizeResponse:
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


def _which(request: StreamingRecognizeRequest) -> str | None:
    return StreamingRecognizeRequest.pb(request).WhichOneof("streaming_request")


_HALF_CLOSED = object()
_CANCELLED = object()
_CANCEL_SETTLE_S = 0.02


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


def _pump(requests: Iterator[StreamingRecognizeRequest], inbox: queue.SimpleQueue) -> None:
    """Reader thread: requests -> (arrival time, request) in the inbox, then an end marker."""
    end = _HALF_CLOSED
    try:
        for request in requests:
            inbox.put((time.monotonic(), request))
    except grpc.RpcError:
        end = _CANCELLED
    except Exception:  # noqa: BLE001 - e.g. a request that failed to deserialize
        log.exception("reading requests failed")
        end = _CANCELLED
    inbox.put((time.monotonic(), end))


class _Stream:
    """One StreamingRecognize call: its number, fate, responses, and the log line it ends with."""

    def __init__(self, stats: EmulatorStats, number: int, fault: Fault | None, plan: FaultPlan, context: Any) -> None:
        self.stats = stats
        self.number = number
        self.fault = fault
        self.plan = plan
        self.context = context
        self.sent = 0
        self.audio_s = 0.0
        self.ended = False

    def send(self, response: StreamingRecognizeResponse) -> StreamingRecognizeResponse:
        """Account for one response about to go out (after the latency; or fail instead)."""
        self.sleep_latency()
        if self.fault is not None and self.sent >= self.fault.after_responses:
            self.fail(self.fault.status, self.fault.message)
        self.sent += 1
        self.stats.add(responses_sent=1)
        return response

    def sleep_latency(self) -> None:
        # A worker thread of this separate server process: sleeping is the latency being emulated.
        if self.plan.latency_ms:
            time.sleep(self.plan.latency_ms / 1000)

    def fail(self, status: grpc.StatusCode, message: str) -> NoReturn:
        self._end("streams_failed", f"failed {status.name}: {message}")
        self.context.abort(status, message)
        raise AssertionError("context.abort returned")  # it always raises

    def complete(self) -> None:
        if self.fault is not None:
            # Chosen to fail, but fewer responses were due than after_responses: fail at the end.
            self.fail(self.fault.status, self.fault.message)
        self._end("streams_completed", "completed")

    def cancelled(self) -> None:
        self._end("streams_cancelled", "cancelled by the client")

    def _end(self, counter: str, what: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.stats.add(**{counter: 1, "active_streams": -1})
        log.info("stream %d %s (%d responses, %.1f s of audio)", self.number, what, self.sent, self.audio_s)


class _Speech:
    """google.cloud.speech.v1.Speech: StreamingRecognize only."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SPEECH_SERVICE,
            {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self.streaming_recognize,
                    request_deserializer=StreamingRecognizeRequest.deserialize,
                    response_serializer=StreamingRecognizeResponse.serialize,
                )
            },
        )

    def streaming_recognize(
        self, requests: Iterator[StreamingRecognizeRequest], context: grpc.ServicerContext
    ) -> Iterator[StreamingRecognizeResponse]:
        schedule = self._emulator.fault_schedule()
        number, fault = schedule.next_stream()
        stats = self._emulator.stats
        stats.add(streams_started=1, active_streams=1)
        log.info("stream %d started%s", number, f" (will fail {fault.status.name})" if fault else "")
        stream = _Stream(stats, number, fault, schedule.plan, context)
        try:
            yield from self._serve(stream, requests, context)
        except Rejected as e:
            stream.fail(e.status, e.message)
        except Exception as e:
            if stream.ended:
                raise  # context.abort's own exception, on its way to gRPC
            # A recognizer crash is what Google calls an internal error.
            log.exception("stream %d crashed", number)
            stream.fail(grpc.StatusCode.INTERNAL, f"Internal error encountered. [voiced-emulator: {e!r}]")
        except GeneratorExit:
            stream.cancelled()  # gRPC closed the response generator: the RPC is over
            raise
        finally:
            if not stream.ended and not context.is_active():
                stream.cancelled()

    def _serve(
        self, stream: _Stream, requests: Iterator[StreamingRecognizeRequest], context: grpc.ServicerContext
    ) -> Iterator[StreamingRecognizeResponse]:
        plan = stream.plan
        if stream.fault is not None and stream.fault.after_responses == 0:
            stream.sleep_latency()
            stream.fail(stream.fault.status, stream.fault.message)
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(
            target=_pump, args=(requests, inbox), name=f"emulator-stream-{stream.number}", daemon=True
        ).start()
        last_arrival = time.monotonic()
        terminated = threading.Event()
        if not context.add_callback(terminated.set):
            terminated.set()
        if plan.hang:
            terminated.wait()  # audio goes into the inbox, nothing comes out, until the client gives up
            stream.cancelled()
            return

        def ended_by_client(item: Any) -> bool:
            if item is _CANCELLED:
                return True
            # gRPC ends the request iterator alike for a half-close and a cancel whose flag lands
            # a moment later; after a real half-close the RPC stays up until we answer.
            return item is _HALF_CLOSED and terminated.wait(_CANCEL_SETTLE_S)

        def next_request() -> Any:
            nonlocal last_arrival
            while True:
                wait = last_arrival + plan.audio_timeout_s - time.monotonic()
                if wait <= 0:
                    raise Rejected(
                        grpc.StatusCode.OUT_OF_RANGE,
                        "Audio Timeout Error: Long duration elapsed without audio. "
                        "Audio should be sent close to real time.",
                    )
                try:
                    last_arrival, item = inbox.get(timeout=wait)
                    return item
                except queue.Empty:
                    continue

        first = next_request()
        if ended_by_client(first):
            stream.cancelled()
            return
        if first is _HALF_CLOSED or _which(first) != "streaming_config":
            raise invalid(
                "Malordered Data Received. Send exactly one config, followed by audio data: "
                "the first request must contain streaming_config."
            )
        streaming: StreamingRecognitionConfig = first.streaming_config
        fmt = check_recognition_config(streaming.config)
        language = streaming.config.language_code
        decoder = _AudioDecoder(fmt)
        scripted = self._emulator.scripted
        session: RecognitionSession | EnergySession
        if scripted is not None:
            session = EnergySession(scripted, streaming.interim_results, streaming.single_utterance)
        else:
            session = RecognitionSession(
                self._emulator.recognizer,
                language,
                interim_results=streaming.interim_results,
                single_utterance=streaming.single_utterance,
                voice_activity_events=streaming.enable_voice_activity_events,
            )
        behind = BehindWatch(stream.number, stream.stats)
        while not session.done:
            request = next_request()
            behind.note(time.monotonic() - last_arrival)
            if ended_by_client(request):
                stream.cancelled()
                return
            if request is _HALF_CLOSED:
                outputs = session.finish()
            else:
                if _which(request) == "streaming_config":
                    raise invalid("Malordered Data Received. Send exactly one config, followed by audio data.")
                pcm = decoder.decode(request.audio_content)
                stream.audio_s = decoder.seconds
                if stream.audio_s > plan.max_stream_s:
                    raise Rejected(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"Exceeded maximum allowed stream duration of {plan.max_stream_s:g} seconds.",
                    )
                outputs = session.feed(pcm)
            for output in outputs:
                yield stream.send(_response(output, language))
            if request is _HALF_CLOSED:
                break
        stream.complete()


class Emulator:
    """The loopback server; models load on first use, once per Emulator.

    Each open stream and each synthesis in progress holds one of ``max_workers``
    threads; a call beyond that fails at once with RESOURCE_EXHAUSTED.
    """

    def __init__(
        self,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        recognizer: Recognizer | None = None,
        max_workers: int = 32,
        scripted: ScriptedPlan | None = None,
    ) -> None:
        self.host = host
        #: Recognition by energy and a fixed transcript, a tone for speech (voiced.emulator.scripted).
        self.scripted = scripted
        self.port = port
        self.recognizer: Recognizer = recognizer if recognizer is not None else WhisperRecognizer()
        self.stats = EmulatorStats()
        self._max_workers = max_workers
        self._schedule = FaultSchedule(faults or FaultPlan())
        self._schedule_lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        """host:port for grpc.insecure_channel (valid after start)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def faults(self) -> FaultPlan:
        return self.fault_schedule().plan

    def fault_schedule(self) -> FaultSchedule:
        with self._schedule_lock:
            return self._schedule

    def set_faults(self, faults: FaultPlan) -> None:
        """Replace the plan for streams and syntheses started from now on; their numbering restarts at 1."""
        with self._schedule_lock:
            self._schedule = FaultSchedule(faults)

    def start(self) -> int:
        """Bind and serve; returns the port (the chosen one when ``port`` was 0)."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="emulator"),
            handlers=[_Speech(self).handler(), TextToSpeech(self.stats, self.fault_schedule, self.scripted).handler()],
            # gRPC sets SO_REUSEPORT by default: a second emulator would share the port silently.
            options=[("grpc.so_reuseport", 0)],
            # Every call holds a worker: refuse the one too many (RESOURCE_EXHAUSTED) rather than queue it.
            maximum_concurrent_rpcs=self._max_workers,
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = server.add_insecure_port(f"{host}:{self.port}")
        server.start()
        self._server = server
        log.info("voiced-emulator listening on %s", self.address)
        return self.port

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving; streams still open are cancelled after ``grace`` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
