"""Google streaming STT fed a wideband carrier's 16 kHz PCM (LINEAR16), through the real
google-cloud-speech client, against the loopback emulator.

The caller's "speech" is a buzz whose pitch numbers the utterance (120, 140, ... 200 Hz)
with harmonics up to 7 kHz; the emulator decodes the LINEAR16 16 kHz stream and hands its
recognizer the segment, whose pitch it reads back. Had the stream been sent or booked as
anything but 16 kHz, the pitch, and the result times the offsets are computed from, would
be off by the ratio.
"""

from __future__ import annotations

import numpy as np
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.google import FallbackTranscriber, GoogleEmulatorCase, Recorder, until
from voiced.audio import ulaw_to_pcm16
from voiced.config import Settings
from voiced.emulator.faults import FaultPlan
from voiced.google import stt_session
from voiced.google.stt import recognition_config
from voiced.retry import Backoff
from voiced.stt.base import PCM_16K, silence
from voiced.stt.ledger import UNANSWERED_MS

RATE = 16000
FRAME = 640  # 20 ms of 16 kHz PCM
BYTES_PER_MS = 32


def pitch_hz(n: int) -> int:
    return 100 + 20 * n


def wide_buzz(n: int, ms: int) -> bytes:
    """16 kHz PCM: a voice at ``pitch_hz(n)`` with harmonics up to 7 kHz."""
    f = pitch_hz(n)
    t = np.arange(RATE * ms // 1000) / RATE
    rng = np.random.default_rng(n)
    wave = sum((1.0 / h) * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 7000 // f + 1))
    return (wave / np.abs(wave).max() * 8000).astype("<i2").tobytes()


def wide_utterance(n: int, speech_ms: int = 1000, silence_ms: int = 1000) -> bytes:
    return wide_buzz(n, speech_ms) + silence(PCM_16K, silence_ms)


class PitchRecognizer:
    """The emulator's Recognizer: "utterance N" from the pitch of the segment's loud frames."""

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
        frames = pcm[: len(pcm) - len(pcm) % 160].reshape(-1, 160)
        loud = frames[np.sqrt((frames**2).mean(axis=1)) > 1000].ravel()
        if len(loud) < 800:
            return ""
        loud = loud - loud.mean()
        # Lags of 35-75 samples at 8 kHz hold one period of every pitch used, and no second one.
        lags = range(35, 76)
        lag = max(lags, key=lambda k: float(np.dot(loud[:-k], loud[k:])) / (len(loud) - k))
        n = min(range(1, 6), key=lambda m: abs(pitch_hz(m) - 8000 / lag))
        return f"utterance {n}"


async def feed_paced(stream, audio: bytes, speed: float) -> None:
    """20 ms frames of 16 kHz PCM at ``speed`` x real time."""
    per_tick = max(1, int(speed * 5 / 20))  # frames per 5 ms tick
    frames = [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]
    for i in range(0, len(frames), per_tick):
        for frame in frames[i : i + per_tick]:
            stream.feed(frame)
        await deferLater(reactor, 0.005)


class WidebandStreamingTests(GoogleEmulatorCase):
    def setUp(self) -> None:
        super().setUp()
        self.recognizer = PitchRecognizer()

    def open_wide(self, engine, call_id: str = "CA-wide"):
        listener = Recorder()
        stream = engine.open_stream(call_id, listener, audio=PCM_16K)
        self.addCleanup(stream.close)
        return stream, listener

    async def test_finals_of_16k_audio_settle_its_offsets(self) -> None:
        engine = self.start_engine()
        stream, listener = self.open_wide(engine)
        await feed_paced(stream, b"".join(wide_utterance(n) for n in (1, 2, 3)), speed=20)
        await until(lambda: len(listener.of("final")) == 3, what="three finals")
        self.assertEqual(listener.of("final"), ["utterance 1", "utterance 2", "utterance 3"])
        self.assertEqual(listener.of("failure"), [])
        # The last final ends after utterance 3's speech (5 s into the call), within the 6 s fed:
        # its result time was counted at 32 bytes a millisecond, on a sample boundary.
        settled = stream._ledger.settled_at
        self.assertEqual(settled % 2, 0)
        self.assertTrue(5000 < settled / BYTES_PER_MS <= 6000, settled / BYTES_PER_MS)
        self.assertEqual(self.emulator.stats.streams_started, 1)

    async def test_a_retry_replays_16k_audio_and_repeats_no_final(self) -> None:
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=1))

        def healed(line: str) -> None:
            if "attempt=1 " in line:
                self.emulator.set_faults(FaultPlan())

        self.logs.hooks.append(healed)
        replays: list[int] = []
        original_send = stt_session.Session.send
        self.patch(stt_session.Session, "send",
                   lambda session, audio: (replays.append(len(audio)), original_send(session, audio)))
        stream, listener = self.open_wide(engine, "CA-wide-retry")
        await feed_paced(stream, b"".join(wide_utterance(n) for n in (1, 2, 3)), speed=5)
        await until(lambda: len(listener.of("final")) == 3, what="three finals")
        self.assertEqual(listener.of("final"), ["utterance 1", "utterance 2", "utterance 3"])
        self.assertEqual(listener.events[0], ("partial", "utterance 1"))  # from the stream that failed
        self.assertEqual(stream.streams_opened, 2)
        self.assertTrue(all(size % 2 == 0 for size in replays))  # never half a sample

    async def test_the_fallback_gets_16k_audio_and_is_told_so(self) -> None:
        fallback = FallbackTranscriber()
        engine = self.start_engine(FaultPlan(status="UNAVAILABLE", every_nth=1, after_responses=1),
                                   fallback=fallback, backoff=Backoff(0.01, 0.04, 2))
        stream, listener = self.open_wide(engine, "CA-wide-fallback")
        stream.feed(silence(PCM_16K, 12_000))  # the greeting: nobody spoke
        stream.speech_started()
        stream.feed(wide_utterance(1))
        stream.flush()
        await until(lambda: listener.of("failure"), what="the give-up")
        # The latest 5 s of 16 kHz PCM, as the fallback's Whisper takes it.
        self.assertEqual([len(a) for a in fallback.calls], [UNANSWERED_MS * BYTES_PER_MS])
        self.assertEqual(fallback.formats, [PCM_16K])


class WidebandConfigTests(SynchronousTestCase):
    def test_linear16_at_16_khz_for_a_wideband_call(self) -> None:
        settings = Settings(language="en-GB", stt_model="telephony")
        config = recognition_config(settings, PCM_16K)
        self.assertEqual((config.config.encoding.name, config.config.sample_rate_hertz), ("LINEAR16", 16000))
        self.assertEqual((config.config.language_code, config.config.model), ("en-GB", "telephony"))
        self.assertEqual(recognition_config(settings).config.encoding.name, "MULAW")
