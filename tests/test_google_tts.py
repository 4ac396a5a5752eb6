"""Google TTS through the real google-cloud-texttospeech client, against the loopback emulator."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import texttospeech_v1 as tts
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from voiced.audio import WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM, parse_wav, wav_bytes
from voiced.config import Settings
from voiced.emulator.faults import FaultPlan
from voiced.emulator.server import Emulator
from voiced.google.clients import GoogleClients
from voiced.google.tts import GoogleTTSEngine, mulaw_from_response


class GoogleTTSTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.lines: list[str] = []
        observer = lambda event: self.lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="test-google-loop")  # the Google loop's thread
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.emulator = Emulator()
        port = self.emulator.start()
        self.addCleanup(self.emulator.stop)
        self.settings = Settings(google_endpoint=f"127.0.0.1:{port}", google_insecure=True)
        self.clients = GoogleClients(self.settings, reactor)
        self.clients.start(self.pool)
        self.addCleanup(self.clients.stop)
        self.engine = GoogleTTSEngine(self.clients, self.settings, reactor)

    def wav_from_the_service(self, text: str) -> bytes:
        """What synthesize_speech itself returns for the engine's request (blocking; test only)."""
        async def synthesize():
            return await self.clients.tts_client.synthesize_speech(
                input=tts.SynthesisInput(text=text),
                voice=tts.VoiceSelectionParams(language_code="en-US"),
                audio_config=tts.AudioConfig(audio_encoding=tts.AudioEncoding.MULAW, sample_rate_hertz=8000),
                retry=None,
                timeout=10,
            )

        return self.clients.speech_loop.run_sync(synthesize).audio_content

    async def test_returns_raw_mulaw_without_the_wav_header(self) -> None:
        self.assertEqual(self.engine.name, "google")
        audio = await self.engine.synthesize("Hello, how can I help you?")
        wav = self.wav_from_the_service("Hello, how can I help you?")
        self.assertEqual(wav[:4], b"RIFF")  # the service does send a header...
        self.assertNotEqual(audio[:4], b"RIFF")  # ...and the engine strips it
        # Same sentence, same length of samples, give or take espeak's run-to-run jitter.
        self.assertLessEqual(abs(len(audio) - len(parse_wav(wav).data)), 80)
        self.assertGreater(len(audio), 8000 * 0.5)  # at least half a second of speech

    async def test_one_retry_on_unavailable(self) -> None:
        self.emulator.set_faults(FaultPlan(status="UNAVAILABLE", tts_fail_every_nth=2))
        first = await self.engine.synthesize("One.")
        second = await self.engine.synthesize("Two.")  # synthesis 2 fails, 3 succeeds
        self.assertTrue(first and second)
        self.assertEqual((self.emulator.stats.syntheses, self.emulator.stats.syntheses_failed), (2, 1))
        self.assertEqual(
            [line for line in self.lines if line.startswith("TTS_RETRY")],
            ["TTS_RETRY error=ServiceUnavailable attempt=1 delay_ms=150"],
        )

    async def test_fails_after_the_one_retry(self) -> None:
        self.emulator.set_faults(FaultPlan(status="UNAVAILABLE", tts_fail_every_nth=1))
        with self.assertRaises(gexc.ServiceUnavailable):
            await self.engine.synthesize("Nobody hears this.")
        self.assertEqual(self.emulator.stats.syntheses_failed, 2)

    async def test_bad_request_is_not_retried(self) -> None:
        engine = GoogleTTSEngine(self.clients, Settings(language="xx_not_a_language"), reactor)
        with self.assertRaises(gexc.InvalidArgument):
            await engine.synthesize("Hello.")
        self.assertEqual(self.emulator.stats.syntheses_failed, 1)


class HeaderTests(SynchronousTestCase):
    def test_header_length_is_read_not_assumed(self) -> None:
        data = bytes(range(1, 200))
        blob = wav_bytes(data, 8000, WAVE_FORMAT_MULAW, 8)  # fmt with cbSize + a fact chunk: not 44 bytes
        self.assertNotEqual(len(blob) - len(data), 44)
        self.assertEqual(mulaw_from_response(blob), data)

    def test_wrong_format_is_an_error(self) -> None:
        with self.assertRaises(ValueError):
            mulaw_from_response(wav_bytes(b"\x00\x01" * 100, 8000, WAVE_FORMAT_PCM, 16))
        with self.assertRaises(ValueError):
            mulaw_from_response(wav_bytes(b"\x01" * 100, 16000, WAVE_FORMAT_MULAW, 8))
