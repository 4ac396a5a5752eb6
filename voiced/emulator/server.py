"""A Google-compatible Speech v1 / Text-to-Speech v1 gRPC server on loopback, with fault injection.

The real client libraries talk to it over an insecure channel::

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    SpeechClient(transport=SpeechGrpcTransport(channel=channel))
    TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))

This module holds ``Emulator``, which serves a Speech servicer together with a
Text-to-Speech servicer (voiced.emulator.tts) on one of two servers.

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
than LINEAR16 and MULAW, more than one channel, and (with Whisper) a language_code
its model does not know, as Google refuses a model without the language; the
bundled tiny.en knows English only. Results carry the request's language_code.

Not emulated: voice_activity_timeout, word time offsets, several alternatives,
speech adaptation.

Which server (this is a separate test/development process, not the reactor):
  - the scripted mode (voiced.emulator.scripted, for load tests): grpc.aio
    (voiced.emulator.aio_server), every stream and synthesis a coroutine on one
    asyncio loop in a thread the emulator owns, so hundreds of streams cost no
    thread each;
  - a model (Whisper, or a test's Recognizer) and espeak-ng, which block: a sync
    gRPC server (voiced.emulator.thread_server), whose handlers run in its own
    thread pool, each stream with one more reader thread so the audio timeout can
    fire while the client sends nothing.
Google's rules for a stream live in voiced.emulator.streaming.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc

from voiced.emulator.aio_server import EventLoopThread, Speech
from voiced.emulator.thread_server import ThreadSpeech
from voiced.emulator.common import MAX_RATE_HZ, MIN_RATE_HZ, EmulatorStats, Rejected
from voiced.emulator.faults import FaultPlan, FaultSchedule
from voiced.emulator.recognizer import Recognizer, WhisperRecognizer
from voiced.emulator.scripted import ScriptedPlan
from voiced.emulator.streaming import (
    BEHIND_S,
    FINAL_CONFIDENCE,
    INTERIM_STABILITY,
    SPEECH_SERVICE,
    AudioFormat,
    BehindWatch,
    check_recognition_config,
)
from voiced.emulator.tts import ESPEAK_RATE_HZ, TTS_MAX_INPUT_BYTES, TTS_SERVICE, ScriptedTextToSpeech, TextToSpeech

log = logging.getLogger("voiced.emulator")

# Names that lived here before common.py, tts.py and streaming.py split off stay importable from here.
__all__ = [
    "BEHIND_S",
    "ESPEAK_RATE_HZ",
    "FINAL_CONFIDENCE",
    "INTERIM_STABILITY",
    "MAX_RATE_HZ",
    "MIN_RATE_HZ",
    "SPEECH_SERVICE",
    "TTS_MAX_INPUT_BYTES",
    "TTS_SERVICE",
    "AudioFormat",
    "BehindWatch",
    "Emulator",
    "EmulatorStats",
    "Rejected",
    "check_recognition_config",
]


class Emulator:
    """The loopback server; models load on first use, once per Emulator.

    At most ``max_workers`` calls (open streams and syntheses in progress) are served
    at once; a call beyond that fails at once with RESOURCE_EXHAUSTED. With a model,
    each of them holds one of ``max_workers`` threads; the scripted mode holds none.
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
        self._server: grpc.Server | None = None  # a model's: the thread server
        self._aio_server: grpc.aio.Server | None = None  # the scripted mode's, on ``_loop``
        self._loop: EventLoopThread | None = None

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
        if self._server is not None or self._aio_server is not None:
            raise RuntimeError("emulator already started")
        if self.scripted is not None:
            self._start_aio(self.scripted)
        else:
            self._start_threads()
        log.info("voiced-emulator listening on %s", self.address)
        return self.port

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving; streams still open are cancelled after ``grace`` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._aio_server is not None:
            server, self._aio_server = self._aio_server, None
            loop, self._loop = self._loop, None
            assert loop is not None
            try:
                loop.run(server.stop(grace))
            finally:
                EventLoopThread.release()

    def _bind(self, server: grpc.Server | grpc.aio.Server) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = server.add_insecure_port(f"{host}:{self.port}")

    # gRPC sets SO_REUSEPORT by default: a second emulator would share the port silently.
    _OPTIONS = [("grpc.so_reuseport", 0)]

    def _start_threads(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="emulator"),
            handlers=[ThreadSpeech(self).handler(), TextToSpeech(self.stats, self.fault_schedule).handler()],
            options=self._OPTIONS,
            # Every call holds a worker: refuse the one too many (RESOURCE_EXHAUSTED) rather than queue it.
            maximum_concurrent_rpcs=self._max_workers,
        )
        self._bind(server)
        server.start()
        self._server = server

    def _start_aio(self, plan: ScriptedPlan) -> None:
        loop = EventLoopThread.acquire()
        try:
            self._aio_server = loop.run(self._serve_aio(plan))
        except BaseException:
            EventLoopThread.release()
            raise
        self._loop = loop

    async def _serve_aio(self, plan: ScriptedPlan) -> grpc.aio.Server:
        # Made on the loop: a grpc.aio server belongs to the loop it was made on.
        server = grpc.aio.server(
            handlers=[
                Speech(self, plan).handler(),
                ScriptedTextToSpeech(self.stats, self.fault_schedule, plan).handler(),
            ],
            options=self._OPTIONS,
            # Refuse the call one too many (RESOURCE_EXHAUSTED) rather than queue it, as the thread server does.
            maximum_concurrent_rpcs=self._max_workers,
        )
        self._bind(server)
        await server.start()
        return server
