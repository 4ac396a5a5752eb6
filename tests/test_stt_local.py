"""Whisper offline: the real model on espeak speech, and the per-call stream contract."""

from __future__ import annotations

import os
import sys
from io import StringIO

import numpy as np
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from voiced import preflight
from voiced.audio import SAMPLE_RATE, frames, pcm16_to_ulaw, resample_pcm16, silence_ulaw, ulaw_to_pcm16
from voiced.audio import MULAW_8K, AudioFormat
from voiced.config import ConfigError, Settings
from voiced.lifecycle import construction_counts
from voiced.stt.base import PCM_16K, STT_FORMATS, stt_input
from voiced.stt.local import (
    LOOKBACK_MS,
    PREROLL_MS,
    LanguageNotServed,
    LocalSTTEngine,
    LocalSTTStream,
    LocalTranscriber,
    TranscriptionDropped,
    WhisperModelMissing,
    WhisperTranscriber,
    bundled_model_path,
    resolve_whisper_model,
    whisper_input,
    whisper_language,
)
from voiced.tts.local import EspeakSynthesizer
from voiced.warmup import whisper_language_problem

_cache: dict[str, object] = {}


def whisper() -> WhisperTranscriber:
    """One model for the whole module: loading it is the slow part."""
    if "whisper" not in _cache:
        _cache["whisper"] = WhisperTranscriber()
    return _cache["whisper"]  # type: ignore[return-value]


def hf_home_holding_bundled_tiny_en(home: str) -> str:
    """An HF_HOME whose cache holds Systran/faster-whisper-tiny.en, laid out as huggingface_hub
    lays it (refs/main naming a snapshot of links), made of the bundled model's files."""
    home = os.path.abspath(home)
    repo = os.path.join(home, "hub", "models--Systran--faster-whisper-tiny.en")
    commit = "0" * 40
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    for name in os.listdir(bundled_model_path()):
        os.symlink(os.path.join(bundled_model_path(), name), os.path.join(snapshot, name))
    return home


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
        self.formats: list[AudioFormat] = []

    def transcribe(self, audio: bytes, fmt: AudioFormat = MULAW_8K) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.calls.append((audio, d))
        self.formats.append(fmt)
        return d


def wideband_speech(text: str) -> bytes:
    """espeak-ng's voice resampled to 16 kHz PCM, as a wideband carrier's STT audio."""
    if "espeak" not in _cache:
        _cache["espeak"] = EspeakSynthesizer("en-US")
    pcm, rate = _cache["espeak"].synthesize_pcm16(text)  # type: ignore[attr-defined]
    return resample_pcm16(pcm, rate, 16000)


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

    def test_a_start_told_late_reaches_back_to_the_speech(self) -> None:
        # A barge-in is decided several hundred ms into the caller's words: their first word
        # is in the capture, with the pre-roll before it.
        self.feed(tone(1000, 0x10))
        self.feed(tone(300, 0x20))
        self.feed(tone(460, 0x30))
        self.stream.speech_started(ms_ago=460)
        self.feed(tone(500, 0x40))
        self.stream.flush()
        [(audio, _)] = self.transcriber.calls
        self.assertEqual(audio, tone(300, 0x20) + tone(460, 0x30) + tone(500, 0x40))

    def test_a_late_start_reaches_back_no_further_than_the_lookback(self) -> None:
        self.feed(tone(3000, 0x10))
        self.stream.speech_started(ms_ago=60_000)
        self.stream.flush()
        [(audio, _)] = self.transcriber.calls
        self.assertEqual(len(audio), len(tone(PREROLL_MS + LOOKBACK_MS, 0x10)))

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


def pcm_tone(ms: int, value: int) -> bytes:
    """Constant 16 kHz PCM samples: 32 bytes a millisecond."""
    return value.to_bytes(2, "little", signed=True) * (16 * ms)


class WidebandCaptureTests(SynchronousTestCase):
    """A wideband carrier's call: the stream captures 16 kHz PCM, the transcriber is told so."""

    def setUp(self) -> None:
        self.transcriber = ScriptedTranscriber()
        self.engine = LocalSTTEngine(self.transcriber)  # type: ignore[arg-type]
        self.stream = self.engine.open_stream("CA1", Recorder(), audio=PCM_16K)

    def feed(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), 640):  # 20 ms frames
            self.stream.feed(pcm[i : i + 640])

    def test_preroll_and_utterance_in_16k_pcm(self) -> None:
        self.feed(pcm_tone(1000, 100))  # older than the 300 ms pre-roll: dropped
        self.feed(pcm_tone(300, 200))
        self.stream.speech_started()
        self.feed(pcm_tone(500, 300))
        self.stream.flush()
        [(audio, _)] = self.transcriber.calls
        self.assertEqual(audio, pcm_tone(300, 200) + pcm_tone(500, 300))
        self.assertEqual(self.transcriber.formats, [PCM_16K])

    def test_capture_capped_at_30s_of_16k(self) -> None:
        self.stream.speech_started()
        self.feed(pcm_tone(2000, 100))
        self.feed(pcm_tone(30000, 300))
        self.stream.flush()
        self.assertEqual(self.transcriber.calls[0][0], pcm_tone(30000, 300))

    def test_the_engine_takes_both_formats_and_refuses_others(self) -> None:
        self.assertEqual(self.engine.formats, {MULAW_8K, PCM_16K})
        with self.assertRaises(ValueError) as caught:
            self.engine.open_stream("CA2", Recorder(), audio=AudioFormat("pcm_s16le", 24000))
        self.assertIn("not pcm_s16le/24000", str(caught.exception))

    def test_which_calls_get_16k_stt(self) -> None:
        both, narrow = STT_FORMATS, frozenset({MULAW_8K})
        for carrier, formats, expected in (
            (MULAW_8K, both, MULAW_8K),  # Twilio: nothing to gain
            (AudioFormat("pcm_s16le", 8000), both, MULAW_8K),
            (AudioFormat("pcm_s16le", 16000), both, PCM_16K),  # Vonage, Asterisk slin16
            (AudioFormat("mulaw", 16000), both, PCM_16K),
            (AudioFormat("pcm_s16be", 24000), both, PCM_16K),  # decimated to 16 kHz
            (AudioFormat("pcm_s16le", 16000), narrow, MULAW_8K),  # an engine that takes 8 kHz only
        ):
            self.assertEqual(stt_input(carrier, formats), expected, (carrier, formats))


class InlineReactor:
    def callFromThread(self, f, *args):
        f(*args)


class HeldPool:
    """A ThreadPool double: jobs wait until the test finishes them."""

    max = 1

    def __init__(self) -> None:
        self.jobs: list[tuple[object, bytes]] = []

    def callInThreadWithCallback(self, on_result, f, audio, language, fmt):
        self.jobs.append((on_result, audio))


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

    def test_round_trip_at_16_khz(self) -> None:
        # A wideband carrier's audio goes to Whisper as it came, no 8 kHz detour.
        text = whisper().transcribe_blocking(wideband_speech("What time do you open?"), None, PCM_16K)
        self.assertTrue("open" in text.lower() or "time" in text.lower(), text)
        self.assertEqual(whisper().transcribe_blocking(pcm_tone(2000, 0), fmt=PCM_16K), "")
        self.assertEqual(len(whisper_input(pcm_tone(1000, 0), PCM_16K)), 16000)
        self.assertEqual(len(whisper_input(silence_ulaw(1000), MULAW_8K)), 16000)

    @defer.inlineCallbacks
    def test_a_wideband_stream_end_to_end_in_pool(self) -> None:
        listener = Recorder()
        stream = LocalSTTEngine(LocalTranscriber(whisper(), self.pool)).open_stream("CA1", listener, audio=PCM_16K)
        audio = pcm_tone(400, 0) + wideband_speech("Where are you located?") + pcm_tone(200, 0)
        stream.speech_started()
        for i in range(0, len(audio) - len(audio) % 640, 640):
            stream.feed(audio[i : i + 640])
        stream.flush()
        yield listener.next_event()
        [(kind, text)] = listener.events
        self.assertEqual(kind, "final")
        self.assertTrue("located" in str(text).lower() or "where" in str(text).lower(), text)

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
        self.assertFalse(whisper().is_multilingual)
        hebrew = WhisperTranscriber(language="he-IL")  # the bundled model is tiny.en
        self.assertFalse(hebrew.serves_language)
        self.assertEqual((whisper().language, hebrew.language), ("en", "he"))
        # English nonsense would be worse than asking again: every utterance fails, silence stays silence.
        e = self.assertRaises(LanguageNotServed, hebrew.transcribe_blocking, speech("Shalom, ma shlomcha?"))
        self.assertIn("tiny.en (bundled) cannot transcribe language 'he'", str(e))
        self.assertEqual(hebrew.transcribe_blocking(silence_ulaw(500)), "")

    @defer.inlineCallbacks
    def test_an_unserved_language_fails_each_utterance_without_a_traceback(self) -> None:
        hebrew = WhisperTranscriber(language="he-IL")
        listener = Recorder()
        stream = LocalSTTEngine(LocalTranscriber(hebrew, self.pool)).open_stream("CA1", listener)
        stream.speech_started()
        for frame in frames(speech("Shalom.")):
            stream.feed(frame)
        stream.flush()
        yield listener.next_event()
        [(kind, reason)] = listener.events
        self.assertEqual(kind, "failure")
        self.assertIn("cannot transcribe language 'he'", str(reason))
        self.assertEqual(self.flushLoggedErrors(), [])  # the start-up line said it once

    def test_model_path_override(self) -> None:
        path = bundled_model_path()
        self.assertEqual(WhisperTranscriber(model_path=path).model_path, path)
        # A hub name not in the cache must not turn into a download.
        self.patch(os, "environ", dict(os.environ, HF_HOME=self.mktemp()))
        self.assertRaises(WhisperModelMissing, WhisperTranscriber, "tiny.en")

    def test_a_model_name_loads_from_the_hugging_face_cache(self) -> None:
        home = hf_home_holding_bundled_tiny_en(self.mktemp())
        self.patch(os, "environ", dict(os.environ, HF_HOME=home))
        named = WhisperTranscriber("tiny.en")
        self.assertTrue(named.model_path.startswith(os.path.join(home, "hub")), named.model_path)
        self.assertEqual(named.described, "tiny.en")
        text = named.transcribe_blocking(speech("What time do you open?"))
        self.assertTrue("open" in text.lower() or "time" in text.lower(), text)

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


class WhisperModelSettingTests(SynchronousTestCase):
    """VOICED_WHISPER_MODEL: a CTranslate2 directory, or a model name in the Hugging Face
    cache; nothing is ever downloaded here (each test's HF_HOME is an empty directory)."""

    def check(self, model: str, **environ: str) -> list[str]:
        env = {"VOICED_WHISPER_MODEL": model}
        return preflight.check(Settings.load({}, env), dict(env, **environ))

    def test_language_codes(self) -> None:
        for tag, code in (("he-IL", "he"), ("iw-IL", "he"), ("en-US", "en"), ("zh-Hant-TW", "zh"), ("jv", "jw")):
            self.assertEqual(whisper_language(tag), code)

    def test_directories(self) -> None:
        self.assertEqual(resolve_whisper_model(""), bundled_model_path())
        self.assertEqual(resolve_whisper_model(bundled_model_path()), bundled_model_path())
        self.assertEqual(self.check(bundled_model_path(), HF_HOME=self.mktemp()), [])
        empty = self.mktemp()
        os.makedirs(empty)
        e = self.assertRaises(ConfigError, self.check, empty)
        self.assertIn(f"VOICED_WHISPER_MODEL: {empty} holds no model.bin", str(e))
        e = self.assertRaises(ConfigError, self.check, "/nonexistent/whisper")
        self.assertEqual(str(e), "VOICED_WHISPER_MODEL: /nonexistent/whisper is not a directory")

    def test_a_name_faster_whisper_does_not_know(self) -> None:
        e = self.assertRaises(ConfigError, self.check, "huge-v9", HF_HOME=self.mktemp())
        self.assertIn("'huge-v9' is neither a directory, nor a faster-whisper model name (tiny.en, tiny,", str(e))

    def test_a_name_not_in_the_cache_is_one_line_naming_the_fetch_command(self) -> None:
        home = self.mktemp()
        for name in ("small", "ivrit-ai/whisper-large-v3-turbo-ct2"):
            e = self.assertRaises(ConfigError, self.check, name, HF_HOME=home)
            line = str(e)
            self.assertNotIn("\n", line)
            self.assertIn(f"not a directory, nor a model in the Hugging Face cache ({home}/hub)", line)
            self.assertIn(f"{sys.executable} -c \"import faster_whisper; faster_whisper.download_model({name!r}, "
                          f"cache_dir='{home}/hub')\"", line)
            self.assertIn("HF_HUB_OFFLINE=0", line)
        self.assertFalse(any("model.bin" in files for _, _, files in os.walk(home)), "nothing was fetched")

    def test_a_cached_name_passes(self) -> None:
        home = hf_home_holding_bundled_tiny_en(self.mktemp())
        self.assertEqual(self.check("tiny.en", HF_HOME=home), [])
        self.assertEqual(resolve_whisper_model("Systran/faster-whisper-tiny.en", {"HF_HOME": home}),
                         os.path.join(home, "hub", "models--Systran--faster-whisper-tiny.en", "snapshots", "0" * 40))

    def test_the_opt_in_fetches_before_start_up_and_a_failed_fetch_is_one_line(self) -> None:
        from huggingface_hub import constants

        # The hub's own offline switch keeps this test off the network; the opt-in path runs whole.
        self.patch(constants, "HF_HUB_OFFLINE", True)
        self.patch(sys, "stderr", StringIO())
        e = self.assertRaises(ConfigError, self.check, "small", HF_HOME=self.mktemp(), HF_HUB_OFFLINE="0")
        self.assertIn("VOICED_WHISPER_MODEL: could not fetch small: WhisperModelMissing:", str(e))
        self.assertNotIn("\n", str(e))
        self.assertEqual(sys.stderr.getvalue(),
                         "voiced: fetching the Whisper model small (HF_HUB_OFFLINE=0) before start-up...\n")


class WhisperLanguageLineTests(SynchronousTestCase):
    """The one start-up line for a model that cannot transcribe the call's language."""

    def line(self, language: str, **env: str) -> str | None:
        model = whisper() if language.startswith("en") else hebrew_whisper()
        return whisper_language_problem(model, Settings.load({}, dict(env, VOICED_LANGUAGE=language)))

    def test_english_needs_no_line(self) -> None:
        self.assertIsNone(self.line("en-US"))

    def test_hebrew_on_the_english_only_model_local_stt(self) -> None:
        line = self.line("he-IL")
        for words in ("model=tiny.en (bundled) cannot transcribe language=he-IL (it is English-only)",
                      "with VOICED_STT=local every utterance fails", "interim phrase",
                      "fix: a multilingual model in VOICED_WHISPER_MODEL (ivrit-ai/whisper-large-v3-turbo-ct2, "
                      "a Hebrew fine-tune, or large-v3-turbo) or VOICED_STT=google"):
            self.assertIn(words, line)

    def test_hebrew_on_the_english_only_model_google_stt(self) -> None:
        line = self.line("he-IL", VOICED_STT="google")
        self.assertIn("no fallback transcription when Google STT fails", line)
        self.assertNotIn("VOICED_STT=local", line)
        self.assertTrue(line.endswith("fix: a multilingual model in VOICED_WHISPER_MODEL (ivrit-ai/whisper-large-v3-"
                                      "turbo-ct2, a Hebrew fine-tune, or large-v3-turbo)"), line)

    def test_a_language_no_whisper_model_knows(self) -> None:
        # A multilingual model lacking the language (no such model ships: its attributes stand in).
        model = WhisperTranscriber.__new__(WhisperTranscriber)
        model.serves_language, model.is_multilingual, model.language, model.model_name = False, True, "xx", "small"
        line = whisper_language_problem(model, Settings.load({}, {"VOICED_LANGUAGE": "xx-YY"}))
        self.assertIn("model=small cannot transcribe language=xx-YY (Whisper has no language 'xx')", line)
        self.assertTrue(line.endswith("fix: VOICED_STT=google"), line)


def hebrew_whisper() -> WhisperTranscriber:
    if "hebrew" not in _cache:
        _cache["hebrew"] = WhisperTranscriber(language="he-IL")
    return _cache["hebrew"]  # type: ignore[return-value]
