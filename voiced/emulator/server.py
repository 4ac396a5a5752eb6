"""A Google-compatible Speech v1 / Text-to-Speech v1 gRPC server on loopback, with fault injection.

The real client libraries talk to it over an insecure channel::

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    SpeechClient(transport=SpeechGrpcTransport(channel=channel))
    TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))

This module holds ``Emulator``, which serves the Speech servicer of
voiced.emulator.aio_server together with the Text-to-Speech servicer of
voiced.emulator.tts.

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

The gRPC server is grpc.aio (voiced.emulator.aio_server): every stream and
synthesis is a coroutine on one asyncio loop, in a thread the emulator owns (this is
a separate test/development process, not the reactor), so hundreds of streams cost
no thread each. What blocks (Whisper, espeak-ng, a test's recognizer) runs in a
thread pool of ``max_workers``; the scripted mode (voiced.emulator.scripted) never
does. Google's rules for a stream live in voiced.emulator.streaming.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from voiced.emulator.aio_server import EventLoopThread, Speech
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
from voiced.emulator.tts import ESPEAK_RATE_HZ, TTS_MAX_INPUT_BYTES, TTS_SERVICE, TextToSpeech

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
    at once; a call beyond that fails at once with RESOURCE_EXHAUSTED. The same number
    bounds the threads for what blocks (a model's recognition, espeak-ng), made only
    when needed: the scripted mode makes none.
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
        self._server: grpc.aio.Server | None = None
        self._loop: EventLoopThread | None = None
        self._executor: ThreadPoolExecutor | None = None

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
        loop = EventLoopThread.acquire()
        executor = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="emulator")
        try:
            self._server = loop.run(self._serve(executor))
        except BaseException:
            executor.shutdown(wait=False)
            EventLoopThread.release()
            raise
        self._loop, self._executor = loop, executor
        log.info("voiced-emulator listening on %s", self.address)
        return self.port

    async def _serve(self, executor: ThreadPoolExecutor) -> grpc.aio.Server:
        # Made on the loop: a grpc.aio server belongs to the loop it was made on.
        server = grpc.aio.server(
            handlers=[
                Speech(self, executor).handler(),
                TextToSpeech(self.stats, self.fault_schedule, self.scripted, executor).handler(),
            ],
            # gRPC sets SO_REUSEPORT by default: a second emulator would share the port silently.
            options=[("grpc.so_reuseport", 0)],
            # Refuse the call one too many (RESOURCE_EXHAUSTED) rather than queue it, as before.
            maximum_concurrent_rpcs=self._max_workers,
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.port = server.add_insecure_port(f"{host}:{self.port}")
        await server.start()
        return server

    def stop(self, grace: float | None = 0) -> None:
        """Stop serving; streams still open are cancelled after ``grace`` seconds."""
        if self._server is None:
            return
        server, self._server = self._server, None
        loop, self._loop = self._loop, None
        executor, self._executor = self._executor, None
        assert loop is not None and executor is not None
        try:
            loop.run(server.stop(grace))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            EventLoopThread.release()
