"""Google STT against the loopback emulator: numbered buzzes the emulator's recognizer names, a
listener that keeps everything in order, a fallback transcriber, and GoogleEmulatorCase."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from voiced.audio import MULAW_8K, SAMPLE_RATE, AudioFormat, pcm16_to_ulaw
from voiced.config import Settings


_PERIOD = 64  # samples: a 125 Hz voice


def buzz(n: int, ms: int) -> bytes:
    """A voice-like tone whose harmonics' phases are seeded by ``n`` (distinct per utterance)."""
    rng = np.random.default_rng(n)
    t = np.arange(_PERIOD)
    wave = sum((1.0 / h) * np.sin(2 * np.pi * h * t / _PERIOD + rng.uniform(0, 2 * np.pi)) for h in range(1, 20))
    wave = wave / np.abs(wave).max() * 8000
    samples = SAMPLE_RATE * ms // 1000
    return pcm16_to_ulaw(np.tile(wave, samples // _PERIOD + 1)[:samples].astype(np.int16).tobytes())


class NumberedRecognizer:
    """The emulator's Recognizer: "utterance N" for each numbered buzz found in the audio."""

    def __init__(self, count: int = 400) -> None:
        # One period, taken whole: it occurs in any stretch of two periods of that utterance.
        self._signatures = {n: buzz(n, 100)[_PERIOD * 3 : _PERIOD * 4] for n in range(1, count + 1)}

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        return " ".join(f"utterance {n}" for n, sig in self._signatures.items() if sig in ulaw)


class Recorder:
    """A TranscriptListener that keeps everything in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.retries: list[str] = []

    def on_transcript(self, text: str, is_final: bool) -> None:
        self.events.append(("final" if is_final else "partial", text))

    def on_stt_failure(self, reason: str, answer_coming: bool = False) -> None:
        self.events.append(("failure", reason))

    def on_fallback_transcript(self, text: str) -> None:
        self.events.append(("final", text))

    def on_stt_retry(self, error: str) -> None:
        self.retries.append(error)

    def of(self, kind: str) -> list[object]:
        return [value for k, value in self.events if k == kind]


class FallbackTranscriber:
    """A Transcriber double: says how much audio it got, or never answers when told to hang."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls: list[bytes] = []
        self.formats: list[AudioFormat] = []
        self.cancelled = 0

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        self.calls.append(audio)
        self.formats.append(fmt)
        if self.hang:
            return Deferred(lambda d: setattr(self, "cancelled", self.cancelled + 1))
        return succeed(f"fallback heard {len(audio)} bytes")


class LogLines:
    """Formatted voiced.google.* log lines, with hooks run as each line arrives."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.hooks: list = []

    def __call__(self, event: dict) -> None:
        if str(event.get("log_namespace", "")).startswith("voiced.google") and event.get("log_format"):
            line = formatEvent(event)
            self.lines.append(line)
            for hook in list(self.hooks):
                hook(line)

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines if line.startswith(prefix)]


async def until(predicate, timeout: float = 10.0, what="condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await deferLater(reactor, 0.005)


class GoogleEmulatorCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.recognizer = NumberedRecognizer()
        self.logs = LogLines()
        globalLogPublisher.addObserver(self.logs)
        self.addCleanup(globalLogPublisher.removeObserver, self.logs)
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="test-stt")  # the speech loop's thread
        self.pool.start()
        self.addCleanup(self.pool.stop)  # last: the clients have stopped the loop by then

    def start_engine(
        self,
        faults: Any = None,
        fallback=None,
        backoff: Any = None,
        rollover_s: float = 240.0,
        **settings,
    ) -> Any:
        from voiced.emulator.server import Emulator
        from voiced.google.clients import GoogleClients
        from voiced.google.stt import GoogleSTTEngine
        from voiced.retry import Backoff

        self.emulator = Emulator(faults=faults, recognizer=self.recognizer)
        port = self.emulator.start()
        self.addCleanup(self.emulator.stop)
        self.settings = Settings(google_endpoint=f"127.0.0.1:{port}", google_insecure=True, **settings)
        self.clients = GoogleClients(self.settings, reactor)
        self.clients.start(self.pool)
        self.addCleanup(self.clients.stop)
        return GoogleSTTEngine(
            self.clients,
            self.settings,
            reactor,
            fallback,
            rollover_s=rollover_s,
            backoff=backoff or Backoff.from_ms(200, 1600, 4),
        )

    def open(self, engine: Any, call_id: str = "CA1"):
        listener = Recorder()
        stream = engine.open_stream(call_id, listener)
        self.addCleanup(stream.close)
        return stream, listener
