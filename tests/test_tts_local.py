"""espeak-ng in process: voices, output format, trimming, the lock, the engine."""

from __future__ import annotations

import numpy as np
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from voiced.audio import SAMPLE_RATE, ulaw_to_pcm16
from voiced.lifecycle import construction_counts
from voiced.config import Settings
from voiced.tts.local import EspeakSynthesizer, LocalTTSEngine, trim_silence, voice_candidates
from voiced.warmup import tts_language_problem

_synths: dict[str, EspeakSynthesizer] = {}


def synth(language: str) -> EspeakSynthesizer:
    if language not in _synths:
        _synths[language] = EspeakSynthesizer(language)
    return _synths[language]


def loud_span_ms(ulaw: bytes, level: int = 64) -> tuple[int, int]:
    """(ms before the first loud sample, ms after the last one)."""
    pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.int32)
    loud = np.flatnonzero(np.abs(pcm) > level)
    return int(loud[0]) * 1000 // SAMPLE_RATE, (pcm.size - 1 - int(loud[-1])) * 1000 // SAMPLE_RATE


class VoiceTests(SynchronousTestCase):
    def test_candidates(self) -> None:
        self.assertEqual(voice_candidates("en-US"), ["en-us", "en"])
        self.assertEqual(voice_candidates("he-IL"), ["he-il", "he", "en"])
        self.assertEqual(voice_candidates("en"), ["en"])

    def test_resolution_falls_back(self) -> None:
        self.assertEqual(synth("en-US").voice, "en-us")
        self.assertEqual(synth("he-IL").voice, "he")
        self.assertEqual(EspeakSynthesizer("xx-YY").voice, "en")

    def test_which_voices_a_caller_would_not_understand(self) -> None:
        self.assertIsNone(synth("en-US").language_problem)
        self.assertIsNone(synth("ar-EG").language_problem)  # Arabic comes out with its vowels
        self.assertEqual(synth("he-IL").language_problem, "espeak-ng's 'he' voice drops most vowels of he-IL "
                         "(written without them): not intelligible on a phone line")
        self.assertEqual(EspeakSynthesizer("xx-YY").language_problem,
                         "espeak-ng has no voice for xx-YY: its 'en' voice reads the text")

    def test_the_start_up_line_says_what_callers_hear_and_the_fix(self) -> None:
        def line(language: str, **env: str) -> str | None:
            return tts_language_problem(synth(language), Settings.load({}, dict(env, VOICED_LANGUAGE=language)))

        self.assertIsNone(line("en-US"))
        local = line("he-IL")
        self.assertTrue(local.startswith("language=he-IL: espeak-ng's 'he' voice drops most vowels"), local)
        self.assertTrue(local.endswith("every reply is spoken with it (VOICED_TTS=local); fix: VOICED_TTS=google"))
        google = line("he-IL", VOICED_TTS="google")
        self.assertTrue(google.endswith("it is only the fallback voice, heard when Google TTS fails"), google)

    def test_construction_counted_once_per_object(self) -> None:
        before = construction_counts().get("tts_espeak", 0)
        s = EspeakSynthesizer("en-US")
        self.assertEqual(construction_counts()["tts_espeak"], before + 1)
        s.synthesize_blocking("Hello.")
        s.synthesize_blocking("Hello again.")
        self.assertEqual(construction_counts()["tts_espeak"], before + 1)


class SynthesisTests(SynchronousTestCase):
    def test_english_is_8khz_ulaw_of_plausible_length(self) -> None:
        ulaw = synth("en-US").synthesize_blocking("What time do you open?")
        seconds = len(ulaw) / SAMPLE_RATE
        self.assertTrue(0.6 < seconds < 3.0, seconds)
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16)
        self.assertGreater(np.abs(pcm).max(), 4000)

    def test_hebrew_produces_audio(self) -> None:
        ulaw = synth("he-IL").synthesize_blocking("שלום, מה שלומך?")
        self.assertGreater(len(ulaw), SAMPLE_RATE // 2)
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16)
        self.assertGreater(np.abs(pcm).max(), 4000)

    def test_empty_text(self) -> None:
        s = synth("en-US")
        self.assertEqual(s.synthesize_blocking(""), b"")
        self.assertEqual(s.synthesize_blocking("  \n"), b"")
        self.assertEqual(s.synthesize_pcm16(""), (b"", 22050))

    def test_pcm16_at_native_rate(self) -> None:
        pcm, rate = synth("en-US").synthesize_pcm16("Good morning.")
        self.assertEqual(rate, 22050)
        self.assertEqual(len(pcm) % 2, 0)
        self.assertGreater(len(pcm) // 2, rate // 4)

    def test_edges_trimmed(self) -> None:
        # Pauses at the edges of the text must not reach the caller.
        lead, trail = loud_span_ms(synth("en-US").synthesize_blocking("... Hello there. ..."))
        self.assertLessEqual(lead, 60)
        self.assertLessEqual(trail, 60)

    def test_trim_silence(self) -> None:
        rate = 1000
        tone = np.full(100, 1000, dtype=np.int16)
        pcm = np.concatenate([np.zeros(500, np.int16), tone, np.zeros(20, np.int16), tone, np.zeros(400, np.int16)])
        out = np.frombuffer(trim_silence(pcm.tobytes(), rate, keep_ms=50), dtype=np.int16)
        self.assertEqual(out.size, 50 + 220 + 50)
        self.assertEqual(trim_silence(np.zeros(300, np.int16).tobytes(), rate), b"")

    def test_rate_changes_duration(self) -> None:
        text = "We are open from nine to six, Monday to Friday."
        slow = EspeakSynthesizer("en-US", rate_wpm=120).synthesize_blocking(text)
        fast = EspeakSynthesizer("en-US", rate_wpm=300).synthesize_blocking(text)
        self.assertGreater(len(slow), 1.5 * len(fast))


class EngineTests(TestCase):
    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=2, maxthreads=4, name="test-tts")
        self.pool.start()
        self.addCleanup(self.pool.stop)

    def test_synthesize_in_pool(self) -> None:
        engine = LocalTTSEngine(synth("en-US"), self.pool)
        self.assertEqual(engine.name, "local")
        d = engine.synthesize("Thank you for calling.")
        expected = len(synth("en-US").synthesize_blocking("Thank you for calling."))
        d.addCallback(lambda ulaw: self.assertClose(len(ulaw), expected))
        return d

    def assertClose(self, actual: int, expected: int) -> None:
        # espeak-ng adds a little randomness to its waveform: lengths vary by ~1%.
        self.assertTrue(abs(actual - expected) <= 0.05 * expected, f"{actual} vs {expected}")

    @defer.inlineCallbacks
    def test_concurrent_voices_do_not_mix(self) -> None:
        # Global espeak state (voice, rate, callback buffer) must stay per synthesis.
        en, he = synth("en-US"), synth("he-IL")
        slow = EspeakSynthesizer("en-US", rate_wpm=100)
        jobs = [(en, "Good evening."), (he, "ערב טוב"), (slow, "Good evening.")] * 6
        expected = [len(s.synthesize_blocking(t)) for s, t in jobs]
        results = yield defer.gatherResults(
            [LocalTTSEngine(s, self.pool).synthesize(t) for s, t in jobs], consumeErrors=True
        )
        for ulaw, length in zip(results, expected):
            self.assertClose(len(ulaw), length)
