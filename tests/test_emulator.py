"""The Google emulator, driven by the real google-cloud-speech / texttospeech clients.

Whisper runs in one test only; the others inject a scripted recognizer (the
emulator's own seam) so fault and limit behaviour is fast and deterministic.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import grpc
from google.api_core import exceptions
from google.cloud import speech, texttospeech
from google.cloud.speech_v1.services.speech import SpeechClient as BaseSpeechClient
from google.cloud.speech_v1.services.speech.transports import SpeechGrpcTransport
from google.cloud.texttospeech_v1.services.text_to_speech.transports import TextToSpeechGrpcTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.emulator import (
    ROOT, TIMEOUT, StatsWatch, audio_requests, finals, interims, streaming_config, utterance,
)
from voiced.audio import WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM, parse_wav, resample_pcm16, silence_ulaw, ulaw_to_pcm16
import voiced.emulator.tts
from voiced.emulator.faults import FaultPlan, FaultSchedule, parse_status
from voiced.emulator.main import is_loopback, main, parse_listen
from voiced.emulator.recognizer import RecognitionSession, SpeechEvent, Transcript
from voiced.emulator.server import Emulator, Rejected, check_recognition_config
from voiced.lifecycle import construction_counts


class RecordingSleep:
    """``time`` for the threaded emulator's TTS: its sleeps are recorded, and take no time."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class AllWaitTogether:
    """``asyncio`` for the scripted emulator's TTS: each delay starts only once ``parties``
    calls are all in one, then is waited in full; ``most_waiting`` says how many overlapped."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.delays: list[float] = []
        self.waiting = self.most_waiting = 0
        self._all_in: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        # Every call runs on the server's one event loop: no lock needed.
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.delays.append(delay)
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        if self.waiting == self.parties:
            self._all_in.set()
        await asyncio.wait_for(self._all_in.wait(), TIMEOUT)
        await asyncio.sleep(delay)
        self.waiting -= 1


class ScriptedRecognizer:
    """Test double of the emulator's recognizer: always hears the same text."""

    def __init__(self, text: str = "scripted words") -> None:
        self.text = text
        self.calls: list[tuple[int, str]] = []

    def transcribe(self, ulaw: bytes, language_code: str) -> str:
        self.calls.append((len(ulaw), language_code))
        return self.text


class EmulatorCase(SynchronousTestCase):
    """Starts an emulator with a scripted recognizer, and real clients on an insecure channel."""

    faults: FaultPlan | None = None

    def setUp(self) -> None:
        self.recognizer = ScriptedRecognizer()
        self.emulator = self.start_emulator(self.faults, recognizer=self.recognizer)

    def start_emulator(self, faults: FaultPlan | None = None, recognizer: ScriptedRecognizer | None = None) -> Emulator:
        emulator = Emulator(faults=faults, recognizer=recognizer)
        emulator.start()
        self.addCleanup(emulator.stop)
        channel = grpc.insecure_channel(emulator.address)
        self.addCleanup(channel.close)
        self.speech = speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))
        self.tts = texttospeech.TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))
        return emulator

    def recognize(
        self, audio: bytes, config: speech.StreamingRecognitionConfig | None = None
    ) -> list[speech.StreamingRecognizeResponse]:
        responses = self.speech.streaming_recognize(
            config or streaming_config(interim_results=True), audio_requests(audio), retry=None, timeout=TIMEOUT
        )
        return list(responses)

    def synthesize(self, text: str, language: str = "en-US", encoding: str = "MULAW", rate: int = 8000) -> bytes:
        response = self.tts.synthesize_speech(
            input=texttospeech.SynthesisInput(text=text),
            voice=texttospeech.VoiceSelectionParams(language_code=language),
            audio_config=texttospeech.AudioConfig(audio_encoding=encoding, sample_rate_hertz=rate),
            retry=None,
            timeout=TIMEOUT,
        )
        return response.audio_content


class RealRecognitionTests(EmulatorCase):
    def setUp(self) -> None:
        # The default recognizer: local Whisper, loaded on the first transcription.
        self.emulator = self.start_emulator()

    def test_whisper_recognizes_espeak_audio_with_interims_and_one_model(self) -> None:
        before = construction_counts().get("stt_whisper_model", 0)
        responses = self.recognize(utterance())
        self.assertIn("open", finals(responses)[-1].lower())
        self.assertTrue(interims(responses))
        final = responses[-1].results[0]
        self.assertTrue(final.is_final)
        self.assertGreater(final.alternatives[0].confidence, 0)
        self.assertGreater(final.result_end_time.total_seconds(), 1.0)
        self.assertEqual(responses[0].results[0].stability, 0.5)

        # A second stream with interim results off: finals only, same model.
        responses = self.recognize(utterance(), streaming_config(interim_results=False))
        self.assertEqual(len(responses), 1)
        self.assertIn("open", finals(responses)[0].lower())
        self.assertEqual(construction_counts().get("stt_whisper_model", 0), before + 1)


class StreamingTests(EmulatorCase):
    def test_interims_then_final_and_stats(self) -> None:
        responses = self.recognize(utterance())
        self.assertTrue(interims(responses))
        self.assertEqual(finals(responses), ["scripted words"])
        self.assertTrue(responses[-1].results[0].is_final)
        self.assertEqual(self.recognizer.calls[0][1], "en-US")
        stats = self.emulator.stats
        self.assertEqual((stats.streams_started, stats.streams_completed, stats.streams_failed), (1, 1, 0))
        self.assertEqual(stats.responses_sent, len(responses))
        self.assertEqual(stats.active_streams, 0)

    def test_interim_results_off_gives_finals_only(self) -> None:
        responses = self.recognize(utterance(), streaming_config(interim_results=False))
        self.assertEqual(finals(responses), ["scripted words"])
        self.assertEqual(len(responses), 1)

    def test_half_close_during_speech_delivers_the_final(self) -> None:
        cut = utterance()[: 8000 * 1]  # the client stops while the caller still speaks
        responses = self.recognize(cut, streaming_config(interim_results=False))
        self.assertEqual(finals(responses), ["scripted words"])

    def test_silence_gives_no_results(self) -> None:
        self.assertEqual(self.recognize(silence_ulaw(1500)), [])
        self.assertEqual(self.recognizer.calls, [])

    def test_single_utterance_ends_the_stream_after_the_first_final(self) -> None:
        two = utterance() + utterance()
        responses = self.recognize(two, streaming_config(interim_results=False, single_utterance=True))
        end = speech.StreamingRecognizeResponse.SpeechEventType.END_OF_SINGLE_UTTERANCE
        self.assertEqual(responses[0].speech_event_type, end)
        self.assertEqual(finals(responses), ["scripted words"])
        self.assertEqual(self.emulator.stats.streams_completed, 1)

    def test_linear16_at_16khz(self) -> None:
        pcm16k = resample_pcm16(ulaw_to_pcm16(utterance()), 8000, 16000)
        config = streaming_config(encoding="LINEAR16", rate=16000, interim_results=False)
        responses = self.recognize(pcm16k, config)
        self.assertEqual(finals(responses), ["scripted words"])
        # The recognizer gets 8 kHz mu-law: about a byte per 8 kHz sample of the segment.
        self.assertLess(self.recognizer.calls[0][0], len(utterance()))

    def test_voice_activity_events(self) -> None:
        responses = self.recognize(utterance(), streaming_config(enable_voice_activity_events=True))
        kinds = [r.speech_event_type.name for r in responses if r.speech_event_type]
        self.assertEqual(kinds, ["SPEECH_ACTIVITY_BEGIN", "SPEECH_ACTIVITY_END"])


class ConfigValidationTests(EmulatorCase):
    def assert_invalid(self, config: speech.StreamingRecognitionConfig, text: str) -> None:
        with self.assertRaises(exceptions.InvalidArgument) as cm:
            self.recognize(silence_ulaw(200), config)
        self.assertIn(text, cm.exception.message)
        self.assertEqual(self.emulator.stats.streams_failed, 1)

    def test_hebrew_with_phone_call_is_rejected(self) -> None:
        self.assert_invalid(
            streaming_config(language="he-IL", model="phone_call"),
            "The requested model is currently not supported for language : he-IL.",
        )

    def test_hebrew_with_default_and_latest_long_is_accepted(self) -> None:
        for model in ("default", "latest_long", ""):
            self.assertEqual(self.recognize(silence_ulaw(200), streaming_config(language="he-IL", model=model)), [])
        self.assertEqual(self.emulator.stats.streams_completed, 3)

    def test_bad_encoding_rate_and_language(self) -> None:
        for config in (
            streaming_config(encoding="FLAC"),
            streaming_config(encoding="ENCODING_UNSPECIFIED"),
            streaming_config(rate=4000),
            streaming_config(language=""),
            streaming_config(model="no_such_model"),
        ):
            with self.assertRaises(exceptions.InvalidArgument):
                self.recognize(silence_ulaw(200), config)
        self.assertEqual(self.emulator.stats.streams_failed, 5)

    def test_audio_first_is_rejected(self) -> None:
        # The helper always sends the config first: use the generated method directly.
        # streaming_recognize waits for the first response, so the error may come from the call itself.
        with self.assertRaises(exceptions.InvalidArgument) as cm:
            list(
                BaseSpeechClient.streaming_recognize(
                    self.speech, requests=audio_requests(silence_ulaw(200)), retry=None, timeout=TIMEOUT
                )
            )
        self.assertIn("first request must contain streaming_config", cm.exception.message)

    def test_second_config_is_rejected(self) -> None:
        def requests() -> Iterator[speech.StreamingRecognizeRequest]:
            yield speech.StreamingRecognizeRequest(audio_content=silence_ulaw(100))
            yield speech.StreamingRecognizeRequest(streaming_config=streaming_config())

        with self.assertRaises(exceptions.InvalidArgument) as cm:
            list(self.speech.streaming_recognize(streaming_config(), requests(), retry=None, timeout=TIMEOUT))
        self.assertIn("Malordered Data Received", cm.exception.message)

    def test_check_recognition_config_table(self) -> None:
        ok = check_recognition_config(streaming_config(language="he-IL", model="latest_long").config)
        self.assertEqual(ok.sample_rate_hertz, 8000)
        check_recognition_config(streaming_config(language="en-US", model="phone_call").config)
        with self.assertRaises(Rejected) as cm:
            check_recognition_config(streaming_config(language="he-IL", model="phone_call").config)
        self.assertEqual(cm.exception.status, grpc.StatusCode.INVALID_ARGUMENT)


class FaultTests(EmulatorCase):
    faults = FaultPlan(every_nth=3)

    def test_every_nth_stream_fails_with_service_unavailable(self) -> None:
        outcomes = []
        for _ in range(6):
            try:
                self.recognize(silence_ulaw(200))
                outcomes.append("ok")
            except exceptions.ServiceUnavailable as e:
                self.assertIn("injected fault", e.message)
                outcomes.append("unavailable")
        self.assertEqual(outcomes, ["ok", "ok", "unavailable"] * 2)
        stats = self.emulator.stats
        self.assertEqual((stats.streams_started, stats.streams_failed, stats.streams_completed), (6, 2, 4))

    def test_set_faults_applies_to_new_streams(self) -> None:
        self.emulator.set_faults(FaultPlan())
        for _ in range(3):
            self.recognize(silence_ulaw(200))
        cases = [
            ("INTERNAL", exceptions.InternalServerError),
            ("ABORTED", exceptions.Aborted),
            ("RESOURCE_EXHAUSTED", exceptions.ResourceExhausted),
            ("OUT_OF_RANGE", exceptions.OutOfRange),
            ("DEADLINE_EXCEEDED", exceptions.DeadlineExceeded),
        ]
        for status, error in cases:
            self.emulator.set_faults(FaultPlan(status=status, every_nth=1))
            with self.assertRaises(error):
                self.recognize(silence_ulaw(200))

    def test_fault_after_k_responses_is_mid_stream(self) -> None:
        self.emulator.set_faults(FaultPlan(every_nth=1, after_responses=1))
        responses = self.speech.streaming_recognize(
            streaming_config(interim_results=True), audio_requests(utterance()), retry=None, timeout=TIMEOUT
        )
        received = []
        with self.assertRaises(exceptions.ServiceUnavailable):
            for response in responses:
                received.append(response)
        self.assertEqual(len(received), 1)
        self.assertFalse(received[0].results[0].is_final)

    def test_recognizer_crash_is_internal(self) -> None:
        self.emulator.set_faults(FaultPlan())

        def crash(ulaw: bytes, language_code: str) -> str:
            raise RuntimeError("model exploded")

        self.recognizer.transcribe = crash  # type: ignore[method-assign]
        with self.assertLogs("voiced.emulator", "ERROR"), self.assertRaises(exceptions.InternalServerError) as cm:
            self.recognize(utterance())
        self.assertIn("model exploded", cm.exception.message)
        self.assertEqual((self.emulator.stats.streams_failed, self.emulator.stats.active_streams), (1, 0))

    def test_max_stream_duration_is_out_of_range(self) -> None:
        self.emulator.set_faults(FaultPlan(max_stream_s=1.0))
        self.recognize(silence_ulaw(1000))  # exactly the limit is fine
        with self.assertRaises(exceptions.OutOfRange) as cm:
            self.recognize(silence_ulaw(2000))
        self.assertEqual(cm.exception.message, "Exceeded maximum allowed stream duration of 1 seconds.")

    def test_audio_timeout_is_out_of_range(self) -> None:
        self.emulator.set_faults(FaultPlan(audio_timeout_s=0.3))
        stalled = threading.Event()  # the client has nothing more to say until the test ends
        self.addCleanup(stalled.set)

        def stalling() -> Iterator[speech.StreamingRecognizeRequest]:
            yield speech.StreamingRecognizeRequest(audio_content=silence_ulaw(100))
            stalled.wait(TIMEOUT)
            yield speech.StreamingRecognizeRequest(audio_content=silence_ulaw(100))

        with self.assertRaises(exceptions.OutOfRange) as cm:
            list(self.speech.streaming_recognize(streaming_config(), stalling(), retry=None, timeout=TIMEOUT))
        self.assertIn("Audio Timeout Error: Long duration elapsed without audio.", cm.exception.message)

    def test_client_deadline_counts_as_cancelled(self) -> None:
        self.emulator.set_faults(FaultPlan())
        watch = StatsWatch(self, self.emulator.stats)
        stalled = threading.Event()
        self.addCleanup(stalled.set)

        def slow() -> Iterator[speech.StreamingRecognizeRequest]:
            yield speech.StreamingRecognizeRequest(audio_content=silence_ulaw(100))
            stalled.wait(TIMEOUT)

        with self.assertRaises(exceptions.DeadlineExceeded):
            list(self.speech.streaming_recognize(streaming_config(), slow(), retry=None, timeout=0.3))
        stats = self.emulator.stats
        watch.until(lambda stats: stats.streams_cancelled == 1)
        self.assertEqual((stats.streams_cancelled, stats.active_streams), (1, 0))


class CapacityTests(SynchronousTestCase):
    def test_calls_beyond_max_workers_are_resource_exhausted(self) -> None:
        emulator = Emulator(recognizer=ScriptedRecognizer(), max_workers=2)
        emulator.start()
        self.addCleanup(emulator.stop)
        channel = grpc.insecure_channel(emulator.address)
        self.addCleanup(channel.close)
        client = speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))
        release = threading.Event()
        self.addCleanup(release.set)

        def held() -> Iterator[speech.StreamingRecognizeRequest]:
            release.wait(TIMEOUT)
            yield from ()

        def hold() -> None:
            list(client.streaming_recognize(streaming_config(), held(), retry=None, timeout=TIMEOUT))

        holders = [threading.Thread(target=hold, daemon=True) for _ in range(2)]
        watch = StatsWatch(self, emulator.stats)
        for t in holders:
            t.start()
        watch.until(lambda stats: stats.active_streams == 2)
        with self.assertRaises(exceptions.ResourceExhausted):
            list(client.streaming_recognize(streaming_config(), iter(()), retry=None, timeout=TIMEOUT))
        release.set()
        for t in holders:
            t.join(TIMEOUT)
        self.assertEqual((emulator.stats.streams_completed, emulator.stats.active_streams), (2, 0))


class TextToSpeechTests(EmulatorCase):
    def test_mulaw_8k_is_a_wav_with_format_tag_7(self) -> None:
        wav = parse_wav(self.synthesize("Hello, how can I help you today?"))
        fmt = (wav.format_tag, wav.sample_rate, wav.bits_per_sample, wav.channels)
        self.assertEqual(fmt, (WAVE_FORMAT_MULAW, 8000, 8, 1))
        self.assertGreater(len(wav.data), 8000)  # more than a second of speech
        self.assertEqual(self.emulator.stats.syntheses, 1)

    def test_linear16_at_the_requested_rate(self) -> None:
        wav = parse_wav(self.synthesize("Hello", encoding="LINEAR16", rate=16000))
        self.assertEqual((wav.format_tag, wav.sample_rate, wav.bits_per_sample), (WAVE_FORMAT_PCM, 16000, 16))

    def test_hebrew_voice_and_unknown_language(self) -> None:
        self.assertTrue(parse_wav(self.synthesize("שלום", language="he-IL")).data)
        with self.assertRaises(exceptions.InvalidArgument):
            self.synthesize("hello", language="xx-XX")

    def test_every_nth_synthesis_fails_and_latency_is_added(self) -> None:
        self.emulator.set_faults(FaultPlan(tts_fail_every_nth=2, latency_ms=150))
        sleeps = RecordingSleep()
        self.patch(voiced.emulator.tts, "time", sleeps)
        self.synthesize("one")
        self.assertEqual(sleeps.slept, [0.15])  # the worker thread waits it before the answer
        with self.assertRaises(exceptions.ServiceUnavailable):
            self.synthesize("two")
        self.synthesize("three")
        self.assertEqual((self.emulator.stats.syntheses, self.emulator.stats.syntheses_failed), (2, 1))

    def test_list_voices(self) -> None:
        voices = self.tts.list_voices(language_code="he-IL", retry=None, timeout=TIMEOUT).voices
        self.assertEqual([v.language_codes[0] for v in voices], ["he-IL"])
        self.assertGreater(len(self.tts.list_voices(retry=None, timeout=TIMEOUT).voices), 1)


class FaultScheduleTests(SynchronousTestCase):
    def test_every_nth(self) -> None:
        schedule = FaultSchedule(FaultPlan(every_nth=3, after_responses=2))
        fates = [schedule.next_stream() for _ in range(7)]
        self.assertEqual([n for n, f in fates if f], [3, 6])
        fault = fates[2][1]
        assert fault is not None
        self.assertEqual((fault.status, fault.after_responses), (grpc.StatusCode.UNAVAILABLE, 2))

    def test_fraction_is_seeded(self) -> None:
        def failing(seed: int) -> list[int]:
            schedule = FaultSchedule(FaultPlan(fraction=0.3, seed=seed))
            return [n for n, f in (schedule.next_stream() for _ in range(1000)) if f]

        self.assertEqual(failing(7), failing(7))
        self.assertNotEqual(failing(7), failing(8))
        self.assertTrue(250 < len(failing(7)) < 350)

    def test_tts_every_nth_and_nothing_by_default(self) -> None:
        schedule = FaultSchedule(FaultPlan(tts_fail_every_nth=2))
        self.assertEqual([bool(schedule.next_synthesis()[1]) for _ in range(4)], [False, True, False, True])
        default = FaultSchedule(FaultPlan())
        self.assertFalse(any(default.next_stream()[1] or default.next_synthesis()[1] for _ in range(50)))

    def test_status_by_name_and_validation(self) -> None:
        self.assertEqual(FaultPlan(status="internal").status, grpc.StatusCode.INTERNAL)
        self.assertEqual(parse_status(grpc.StatusCode.ABORTED), grpc.StatusCode.ABORTED)
        for bad in (dict(status="INVALID_ARGUMENT"), dict(status="nope"), dict(every_nth=-1),
                    dict(fraction=1.5), dict(max_stream_s=0)):  # fmt: skip
            with self.assertRaises(ValueError):
                FaultPlan(**bad)  # type: ignore[arg-type]


class RecognitionSessionTests(SynchronousTestCase):
    def session(self, **kw: bool) -> tuple[RecognitionSession, ScriptedRecognizer]:
        recognizer = ScriptedRecognizer("hi")
        return RecognitionSession(recognizer, "en-US", **kw), recognizer

    def test_interims_every_700ms_then_final_after_300ms_silence(self) -> None:
        session, _ = self.session()
        outputs = session.feed(ulaw_to_pcm16(utterance()))
        transcripts = [o for o in outputs if isinstance(o, Transcript)]
        self.assertTrue(transcripts[-1].is_final)
        partials = [t.end_ms for t in transcripts if not t.is_final]
        self.assertTrue(partials)
        self.assertTrue(all(b - a >= 700 for a, b in zip(partials, partials[1:])))
        self.assertEqual(session.audio_ms, len(utterance()) // 160 * 20)  # whole 20 ms frames
        # The final comes 300 ms after the speech, well before the trailing 600 ms of silence end.
        self.assertLess(transcripts[-1].end_ms, session.audio_ms)

    def test_chunking_does_not_change_the_outcome(self) -> None:
        pcm = ulaw_to_pcm16(utterance())
        whole, _ = self.session()
        pieces, _ = self.session()
        expected = whole.feed(pcm)
        got = [o for i in range(0, len(pcm), 333) for o in pieces.feed(pcm[i : i + 333])]
        self.assertEqual(got, expected)

    def test_finish_and_single_utterance(self) -> None:
        session, _ = self.session(interim_results=False)
        self.assertEqual(session.feed(ulaw_to_pcm16(utterance()[:6000])), [])
        self.assertEqual([o.is_final for o in session.finish() if isinstance(o, Transcript)], [True])

        single, _ = self.session(interim_results=False, single_utterance=True)
        outputs = single.feed(ulaw_to_pcm16(utterance() * 2))
        self.assertEqual(outputs[0], SpeechEvent("END_OF_SINGLE_UTTERANCE", outputs[0].at_ms))
        self.assertEqual(len(outputs), 2)
        self.assertTrue(single.done)


class CommandLineTests(SynchronousTestCase):
    def test_listen_parsing_and_loopback(self) -> None:
        self.assertEqual(parse_listen("127.0.0.1:50051"), ("127.0.0.1", 50051))
        self.assertEqual(parse_listen("[::1]:7"), ("::1", 7))
        self.assertTrue(is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2"))
        self.assertFalse(is_loopback("0.0.0.0") or is_loopback("10.0.0.1") or is_loopback("example.com"))
        with self.assertRaises(SystemExit) as cm:
            main(["--listen", "0.0.0.0:50051"])
        self.assertEqual(cm.exception.code, 2)

    def test_runs_serves_and_stops_on_sigterm(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        proc = subprocess.Popen(
            [sys.executable, "-m", "voiced.emulator.main", "--listen", "127.0.0.1:0", "--tts-fail-every", "2"],
            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        assert proc.stderr is not None
        line = proc.stderr.readline()
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.addCleanup(channel.close)
        tts = texttospeech.TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))
        request = dict(
            input=texttospeech.SynthesisInput(text="hello"),
            voice=texttospeech.VoiceSelectionParams(language_code="en-US"),
            audio_config=texttospeech.AudioConfig(audio_encoding="MULAW", sample_rate_hertz=8000),
        )
        tts.synthesize_speech(**request, retry=None, timeout=TIMEOUT)
        with self.assertRaises(exceptions.ServiceUnavailable):
            tts.synthesize_speech(**request, retry=None, timeout=TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
        log = proc.stderr.read()
        proc.stderr.close()
        self.assertIn("synthesis 2 failed UNAVAILABLE", log)


class ScriptedModeTests(SynchronousTestCase):
    """The load tests' cheap mode: energy endpointing on received audio, a fixed transcript."""

    def test_final_comes_after_final_delay_of_received_audio_past_the_last_loud_frame(self) -> None:
        from voiced.emulator.scripted import EnergySession, ScriptedPlan

        session = EnergySession(ScriptedPlan("hello there", final_delay_ms=100))
        loud = (b"\x00\x10" + b"\x00\xf0") * 80  # 20 ms of a loud square wave, PCM16
        quiet = b"\x00\x00" * 160
        outputs = session.feed(loud * 50)  # 1 s of speech: interims only
        self.assertTrue(outputs and all(not o.is_final for o in outputs))
        self.assertEqual(session.feed(quiet * 4), [])  # 80 ms of silence: not yet
        (final,) = session.feed(quiet)
        self.assertEqual((final.text, final.is_final, final.end_ms), ("hello there", True, 1100))
        self.assertEqual(session.feed(quiet * 50), [])  # one final per utterance


class ScriptedServerTests(SynchronousTestCase):
    """The scripted mode through the asyncio server: the handler reads its requests itself."""

    def setUp(self) -> None:
        from voiced.audio import pcm16_to_ulaw
        from voiced.emulator.scripted import ScriptedPlan

        self.loud = pcm16_to_ulaw(((3000).to_bytes(2, "little", signed=True) * 10
                                   + (-3000).to_bytes(2, "little", signed=True) * 10) * 400)  # 1 s
        self.emulator = Emulator(scripted=ScriptedPlan("hello there", final_delay_ms=300, tts_delay_ms=300))
        self.emulator.start()
        self.addCleanup(self.emulator.stop)
        channel = grpc.insecure_channel(self.emulator.address)
        self.addCleanup(channel.close)
        self.speech = speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))
        self.tts = texttospeech.TextToSpeechClient(transport=TextToSpeechGrpcTransport(channel=channel))

    def recognize(self, audio: bytes, **kw: bool) -> list[speech.StreamingRecognizeResponse]:
        config = streaming_config(**kw)
        return list(self.speech.streaming_recognize(config, audio_requests(audio), retry=None, timeout=TIMEOUT))

    def test_final_after_the_final_delay_of_received_audio(self) -> None:
        responses = self.recognize(self.loud + silence_ulaw(600), interim_results=True)
        self.assertEqual(interims(responses), ["hello there"])
        self.assertEqual(finals(responses), ["hello there"])
        self.assertEqual(responses[-1].results[0].result_end_time.total_seconds(), 1.3)
        stats = self.emulator.stats
        self.assertEqual((stats.streams_completed, stats.active_streams, stats.responses_sent), (1, 0, 2))
        # Scripted recognition runs on the loop: the pool for what blocks made no thread.
        self.assertFalse([t.name for t in threading.enumerate() if t.name.startswith("emulator_")])

    def test_half_close_during_speech_and_single_utterance(self) -> None:
        self.assertEqual(finals(self.recognize(self.loud[:4000])), ["hello there"])
        responses = self.recognize((self.loud + silence_ulaw(500)) * 2, single_utterance=True)
        end = speech.StreamingRecognizeResponse.SpeechEventType.END_OF_SINGLE_UTTERANCE
        self.assertEqual((responses[0].speech_event_type, finals(responses)), (end, ["hello there"]))
        self.assertEqual(self.emulator.stats.streams_completed, 2)

    def test_audio_timeout_and_client_deadline(self) -> None:
        self.emulator.set_faults(FaultPlan(audio_timeout_s=0.3))
        watch = StatsWatch(self, self.emulator.stats)
        stalled = threading.Event()  # the client has nothing more to say until the test ends
        self.addCleanup(stalled.set)

        def stalling() -> Iterator[speech.StreamingRecognizeRequest]:
            yield speech.StreamingRecognizeRequest(audio_content=silence_ulaw(100))
            stalled.wait(TIMEOUT)

        with self.assertRaises(exceptions.OutOfRange) as cm:
            list(self.speech.streaming_recognize(streaming_config(), stalling(), retry=None, timeout=TIMEOUT))
        self.assertIn("Audio Timeout Error", cm.exception.message)
        self.emulator.set_faults(FaultPlan())
        with self.assertRaises(exceptions.DeadlineExceeded):
            list(self.speech.streaming_recognize(streaming_config(), stalling(), retry=None, timeout=0.3))
        stats = self.emulator.stats
        watch.until(lambda stats: stats.streams_cancelled == 1)
        self.assertEqual((stats.streams_failed, stats.streams_cancelled, stats.active_streams), (1, 1, 0))
        self.assertEqual(finals(self.recognize(self.loud + silence_ulaw(400))), ["hello there"])  # still serving

    def test_syntheses_wait_the_delay_side_by_side(self) -> None:
        request = dict(
            input=texttospeech.SynthesisInput(text="hello"),
            voice=texttospeech.VoiceSelectionParams(language_code="en-US"),
            audio_config=texttospeech.AudioConfig(audio_encoding="MULAW", sample_rate_hertz=8000),
        )
        results: list[bytes] = []
        # Each delay is waited only once all four syntheses are in theirs: calls served one
        # after the other would never all get there, and would fail instead of being slow.
        delays = AllWaitTogether(4)
        self.patch(voiced.emulator.tts, "asyncio", delays)

        def one() -> None:
            results.append(self.tts.synthesize_speech(**request, retry=None, timeout=TIMEOUT).audio_content)

        workers = [threading.Thread(target=one) for _ in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(TIMEOUT)
        self.assertEqual((delays.delays, delays.most_waiting), ([0.3] * 4, 4))
        self.assertEqual(len(results), 4)
        self.assertEqual(parse_wav(results[0]).format_tag, WAVE_FORMAT_MULAW)
        self.assertEqual(self.emulator.stats.syntheses, 4)

    def test_faults_latency_and_hang(self) -> None:
        self.emulator.set_faults(FaultPlan(every_nth=2, after_responses=1, latency_ms=50, tts_fail_every_nth=2))
        self.assertEqual(finals(self.recognize(self.loud + silence_ulaw(400))), ["hello there"])
        received = []
        with self.assertRaises(exceptions.ServiceUnavailable):
            config = streaming_config(interim_results=True)
            for r in self.speech.streaming_recognize(config, audio_requests(self.loud + silence_ulaw(400)),
                                                     retry=None, timeout=TIMEOUT):  # fmt: skip
                received.append(r)
        self.assertEqual(interims(received), ["hello there"])  # the one response before the fault
        request = dict(
            input=texttospeech.SynthesisInput(text="hello"),
            voice=texttospeech.VoiceSelectionParams(language_code="en-US"),
            audio_config=texttospeech.AudioConfig(audio_encoding="LINEAR16", sample_rate_hertz=16000),
        )
        wav = parse_wav(self.tts.synthesize_speech(**request, retry=None, timeout=TIMEOUT).audio_content)
        self.assertEqual((wav.format_tag, wav.sample_rate), (WAVE_FORMAT_PCM, 16000))
        with self.assertRaises(exceptions.ServiceUnavailable):
            self.tts.synthesize_speech(**request, retry=None, timeout=TIMEOUT)

        self.emulator.set_faults(FaultPlan(hang=True))
        watch = StatsWatch(self, self.emulator.stats)
        with self.assertRaises(exceptions.DeadlineExceeded):  # audio taken, nothing answered
            list(self.speech.streaming_recognize(streaming_config(), audio_requests(self.loud + silence_ulaw(400)),
                                                 retry=None, timeout=0.5))  # fmt: skip
        stats = self.emulator.stats
        watch.until(lambda stats: stats.streams_cancelled == 1)
        self.assertEqual((stats.streams_completed, stats.streams_failed, stats.streams_cancelled), (1, 1, 1))
        self.assertEqual((stats.syntheses, stats.syntheses_failed), (1, 1))

    def test_calls_beyond_max_workers_are_resource_exhausted(self) -> None:
        from voiced.emulator.scripted import ScriptedPlan

        emulator = Emulator(scripted=ScriptedPlan(), max_workers=2)
        emulator.start()
        self.addCleanup(emulator.stop)
        channel = grpc.insecure_channel(emulator.address)
        self.addCleanup(channel.close)
        client = speech.SpeechClient(transport=SpeechGrpcTransport(channel=channel))
        release = threading.Event()
        self.addCleanup(release.set)

        def held() -> Iterator[speech.StreamingRecognizeRequest]:
            release.wait(TIMEOUT)
            yield from ()

        holders = [threading.Thread(target=lambda: list(client.streaming_recognize(
            streaming_config(), held(), retry=None, timeout=TIMEOUT)), daemon=True) for _ in range(2)]  # fmt: skip
        watch = StatsWatch(self, emulator.stats)
        for t in holders:
            t.start()
        watch.until(lambda stats: stats.active_streams == 2)
        with self.assertRaises(exceptions.ResourceExhausted):
            list(client.streaming_recognize(streaming_config(), iter(()), retry=None, timeout=TIMEOUT))
        release.set()
        for t in holders:
            t.join(TIMEOUT)
        self.assertEqual((emulator.stats.streams_completed, emulator.stats.active_streams), (2, 0))
