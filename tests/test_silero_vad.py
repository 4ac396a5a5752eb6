"""Silero VAD behind the voice-activity port, on real speech and the real model files.

Each export the installed wheels ship runs the same tests: faster-whisper's (16 kHz, one
stream per run) always, the full export in pipecat-ai's wheel when it is installed (8 kHz,
a batch per run). The batching runs on a Clock with a thread pool whose jobs run when the
test says (the one from test_batching), and once on the real reactor and a real ThreadPool.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from twisted.internet import reactor as real_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.testing.threads import ManualThreadPool, ThreadedClock, settle
from voiced.audio import ulaw_to_pcm16
from voiced.turns.silero import (
    FRAME_BYTES,
    PIPECAT_SILERO,
    SileroVoiceActivity,
    load_model,
    packaged_file,
)
from voiced.turns.vad import VoiceActivity

FRAMES_PER_SECOND = 50

# 6 s of sample.wav (../shared/audio, pyannote-audio's sample: real conversation), from 4.0 s,
# as a call carries it: 8 kHz mu-law (voiced.audio.read_wav_as_ulaw), raw.
# Labelled by level: near-digital silence (-70 dBFS) to 2.7 s, a short word at 2.7-3.1 s,
# a pause, then one speaker talking from 3.6 s on (-24 to -39 dBFS per 100 ms).
CLIP = os.path.join(os.path.dirname(__file__), "data", "speech_8k.ulaw")
SILENCE_S = (0.0, 2.6)
TALK_S = (4.4, 5.9)


def clip_frames() -> list[bytes]:
    with open(CLIP, "rb") as f:
        pcm = ulaw_to_pcm16(f.read())
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def span(probabilities: list[float], seconds: tuple[float, float]) -> np.ndarray:
    start, end = (round(s * FRAMES_PER_SECOND) for s in seconds)
    return np.array(probabilities[start:end])


def noise_frames(seconds: float, dbfs: float, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, 32768 * 10 ** (dbfs / 20), int(seconds * 8000))
    pcm = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def silent_frames(seconds: float) -> list[bytes]:
    return [bytes(FRAME_BYTES)] * round(seconds * FRAMES_PER_SECOND)


def run_paced(vad: SileroVoiceActivity, clock: ThreadedClock, pool: ManualThreadPool,
              *feeds: list[bytes]) -> list[list[float]]:
    """Push the feeds' frames side by side, one frame per stream per reactor iteration
    (what the calls' carriers do), letting each iteration's batch run."""
    outputs: list[list[float]] = [[] for _ in feeds]
    streams = [vad.open(out.append, call_id=f"call-{i}") for i, out in enumerate(outputs)]
    for i in range(max(len(feed) for feed in feeds)):
        for stream, feed in zip(streams, feeds):
            if i < len(feed):
                if stream.push(feed[i]) is not None:
                    raise AssertionError("Silero answers through deliver, never from push")
        settle(clock, pool)
    return outputs


class _SileroContract:
    """The tests every Silero export must pass; a subclass names the model file."""

    model_path: str

    def setUp(self) -> None:
        self.clock = ThreadedClock()
        self.pool = ManualThreadPool()
        self.vad = SileroVoiceActivity(self.clock, self.pool, model_path=self.model_path)  # type: ignore[arg-type]

    def score(self, *feeds: list[bytes]) -> list[list[float]]:
        return run_paced(self.vad, self.clock, self.pool, *feeds)

    def test_is_a_voice_activity(self) -> None:
        vad: VoiceActivity = self.vad
        self.assertEqual((vad.name, vad.threshold), ("silero", 0.5))

    def test_speech_is_high_and_silence_low(self) -> None:
        (probabilities,) = self.score(clip_frames())
        talk, silence = span(probabilities, TALK_S), span(probabilities, SILENCE_S)
        self.assertGreater((talk >= 0.5).mean(), 0.9, talk.round(2))
        self.assertLess(silence.max(), 0.5, silence.round(2))
        self.assertLess(silence.mean(), 0.1)

    def test_a_noise_burst_is_low(self) -> None:
        (probabilities,) = self.score(silent_frames(1.0) + noise_frames(1.0, -20.0) + silent_frames(0.5))
        burst = span(probabilities, (1.0, 2.0))
        self.assertLess(burst.max(), 0.5, burst.round(2))

    def test_speech_after_long_line_noise_is_still_heard(self) -> None:
        # Without the state resets, 20 s of hiss left this speech half unheard (first
        # detection ~2.6 s late with faster-whisper's export).
        (probabilities,) = self.score(noise_frames(20.0, -40.0) + clip_frames())
        talk = np.array(probabilities[20 * FRAMES_PER_SECOND :])
        self.assertGreater((span(list(talk), TALK_S) >= 0.5).mean(), 0.9)

    def test_one_probability_per_frame_in_frame_order(self) -> None:
        frames = clip_frames()[:160]  # 3.2 s: 100 windows
        got: list[float] = []
        stream = self.vad.open(got.append)
        delivered_after: list[int] = []
        for frame in frames:
            stream.push(frame)
            settle(self.clock, self.pool)
            delivered_after.append(len(got))
        # Window w (256 samples) is complete after frame 2, 4, 5, 7, 8 (320, 640, 800, 1120, 1280
        # samples) and answers the frames that end in it: 1, 3, 4, 6, 8 frames in all.
        self.assertEqual(delivered_after[:8], [0, 1, 1, 3, 4, 4, 6, 8])
        self.assertEqual(len(got), 160)
        # Each window's probability goes to the frames it completes, in that order.
        windows = [p for i, p in enumerate(got) if i in {(w + 1) * 256 // 160 - 1 for w in range(100)}]
        self.assertEqual(len(windows), 100)
        expected = [windows[(160 * (f + 1) - 1) // 256] for f in range(160)]
        self.assertEqual(got, expected)

    def test_a_burst_of_frames_is_scored_window_after_window(self) -> None:
        # A carrier may hand over 100 ms at once: each window needs its predecessor's state.
        frames = clip_frames()[:150]
        (paced,) = self.score(frames)
        burst: list[float] = []
        stream = self.vad.open(burst.append)
        for i in range(0, len(frames), 5):
            for frame in frames[i : i + 5]:
                stream.push(frame)
            settle(self.clock, self.pool)
        np.testing.assert_allclose(burst, paced, atol=1e-5)

    def test_streams_batched_together_score_as_each_alone(self) -> None:
        speech = clip_frames()
        other = (noise_frames(1.0, -30.0, seed=9) + speech[::-1])[: len(speech)]
        (alone_a,) = self.score(speech)
        (alone_b,) = self.score(other)
        batches_before, items_before = self.vad.runner.batches, self.vad.runner.items
        together_a, together_b = self.score(speech, other)
        runs, items = self.vad.runner.batches - batches_before, self.vad.runner.items - items_before
        self.assertEqual(items, 2 * runs, "both streams' windows went in the same batches")
        np.testing.assert_allclose(together_a, alone_a, atol=1e-5)
        np.testing.assert_allclose(together_b, alone_b, atol=1e-5)
        self.assertGreater(np.abs(np.array(alone_a) - np.array(alone_b)).max(), 0.5)  # not the same answer

    def test_a_closed_stream_gets_nothing_more(self) -> None:
        got: list[float] = []
        stream = self.vad.open(got.append)
        for frame in clip_frames()[:10]:
            stream.push(frame)
        self.clock.advance(0)  # its window's batch is in flight
        self.assertEqual(len(self.pool.jobs), 1)
        stream.close()
        self.assertIsNone(stream.push(clip_frames()[10]))
        settle(self.clock, self.pool)
        self.assertEqual(got, [])

    def test_a_stream_closed_by_its_own_deliver_gets_nothing_more(self) -> None:
        got: list[float] = []

        def deliver(probability: float) -> None:
            got.append(probability)
            stream.close()

        stream = self.vad.open(deliver)
        for frame in clip_frames()[:20]:
            stream.push(frame)
            settle(self.clock, self.pool)
        self.assertEqual(len(got), 1)

    def test_a_failed_batch_gives_zero_and_one_log_line_per_call(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        got: list[float] = []
        stream = self.vad.open(got.append, call_id="CA-failing")
        frames = clip_frames()[220:250]
        for i, frame in enumerate(frames):
            stream.push(frame)
            self.clock.advance(0)
            if 5 <= i < 15:
                # The batch's job dies in its thread (as a real pool reports an exception).
                self.pool.fail_all(MemoryError("onnxruntime could not allocate"))
            settle(self.clock, self.pool)
        self.assertEqual(len(got), len(frames) * 160 // 256 * 256 // 160)  # every frame answered
        self.assertIn(0.0, got)
        self.assertGreater(max(got[-5:]), 0.5)  # speech again once the batches run
        lines = [e for e in events if e.get("log_namespace") == "voiced.turns.silero"]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["call_id"], "CA-failing")
        self.assertIn("MemoryError", lines[0]["error"])

    def test_a_stopped_runner_answers_zero(self) -> None:
        got: list[float] = []
        stream = self.vad.open(got.append)
        self.vad.stop()
        for frame in clip_frames()[250:260]:
            stream.push(frame)
        self.assertEqual(got, [])  # never inside push
        settle(self.clock, self.pool)
        self.assertEqual(got, [0.0] * 9)  # 10 frames: 6 windows, 9 frames complete

    def test_a_frame_of_the_wrong_size_is_refused(self) -> None:
        stream = self.vad.open(lambda p: None)
        for bad in (b"", bytes(160), bytes(321), bytes(640)):
            self.assertRaises(ValueError, stream.push, bad)

    def test_the_model_is_loaded_once_per_process(self) -> None:
        again = SileroVoiceActivity(self.clock, self.pool, threshold=0.25, model_path=self.model_path)  # type: ignore[arg-type]
        self.assertIs(again.model, self.vad.model)
        self.assertEqual(again.threshold, 0.25)


class PipecatExportTests(_SileroContract, SynchronousTestCase):
    model_path = packaged_file(*PIPECAT_SILERO)

    def test_is_the_default(self) -> None:
        self.assertIs(load_model(), self.vad.model)


class SettingsTests(SynchronousTestCase):
    def test_a_threshold_outside_zero_to_one_is_refused(self) -> None:
        for bad in (0.0, 1.0, -0.1, 1.5):
            self.assertRaises(ValueError, SileroVoiceActivity, ThreadedClock(), ManualThreadPool(), bad)  # type: ignore[arg-type]

    def test_a_missing_model_file_is_a_clear_error(self) -> None:
        error = self.assertRaises(FileNotFoundError, load_model, "/nonexistent/silero.onnx")
        self.assertIn("/nonexistent/silero.onnx", str(error))

    def test_a_file_that_is_not_silero_is_refused(self) -> None:
        import onnxruntime

        other = os.path.join(os.path.dirname(onnxruntime.__file__), "datasets", "sigmoid.onnx")
        if not os.path.exists(other):
            raise SkipTest("onnxruntime ships no sample model here")
        error = self.assertRaises(ValueError, load_model, other)
        self.assertIn("not a Silero VAD export", str(error))

    def test_a_package_that_is_not_installed_is_a_clear_error(self) -> None:
        error = self.assertRaises(FileNotFoundError, packaged_file, "no_such_package_here", "x.onnx")
        self.assertIn("no_such_package_here", str(error))


class RealThreadPoolTests(TestCase):
    """Two calls on the real reactor and a real one-thread pool: the same probabilities as
    the Clock runs, delivered on the reactor thread."""

    @inlineCallbacks
    def test_two_calls_through_a_real_pool(self):
        pool = ThreadPool(minthreads=1, maxthreads=1, name="test-silero")
        pool.start()
        self.addCleanup(pool.stop)
        vad = SileroVoiceActivity(real_reactor, pool)
        self.addCleanup(vad.stop)
        frames = clip_frames()
        expected = 300 * 160 // 256 * 256 // 160
        outputs: list[list[float]] = [[], []]
        done: Deferred[None] = Deferred()

        def deliver(out: list[float], probability: float) -> None:
            out.append(probability)
            if all(len(o) == expected for o in outputs) and not done.called:
                done.callback(None)

        streams = [vad.open(lambda p, o=o: deliver(o, p)) for o in outputs]
        for frame in frames:  # as fast as the reactor takes them: windows queue per stream
            for stream in streams:
                stream.push(frame)
        yield done
        clock, manual = ThreadedClock(), ManualThreadPool()
        (reference,) = run_paced(SileroVoiceActivity(clock, manual), clock, manual, frames)  # type: ignore[arg-type]
        np.testing.assert_allclose(outputs[0], reference, atol=1e-5)
        np.testing.assert_allclose(outputs[1], reference, atol=1e-5)

