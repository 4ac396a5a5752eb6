"""The HTTP streaming TTS engines against loopback fakes of their APIs (tests/fakes/tts_servers.py):
what they send, the audio they hand on chunk by chunk, retries, refusals and cancelling."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import make_http_client
from tests.fakes.tts_servers import Answer, TTSFake, speech_for
from voiced.audio import SAMPLE_RATE, ulaw_to_pcm16
from voiced.config import Settings
from voiced.retry import Backoff
from voiced.tts.base import StreamingTTSEngine, TTSRefused
from voiced.tts.cartesia import CartesiaTTSEngine
from voiced.tts.elevenlabs import ElevenLabsTTSEngine
from voiced.tts.http_stream import TTSServerError
from voiced.tts.openai_speech import OpenAISpeechEngine, PcmToUlaw

KEY = "tts-secret-key-0123456789"
FAST = Backoff(0, 0, attempts=2)
TEXT = "Your appointment is on Tuesday."


class VendorEngineTests(TestCase):
    def engine(self, vendor: str, api_key: str = KEY, **env: str):
        fake = TTSFake(vendor, api_key=KEY)
        fake.listen()
        self.addCleanup(fake.stop)
        http = make_http_client(self)
        base = {"elevenlabs": "VOICED_ELEVENLABS_BASE_URL", "cartesia": "VOICED_CARTESIA_BASE_URL",
                "openai": "VOICED_OPENAI_TTS_BASE_URL"}[vendor]
        environ = {"VOICED_TTS": vendor, base: fake.url, "ELEVENLABS_API_KEY": api_key, "CARTESIA_API_KEY": api_key,
                   "VOICED_CARTESIA_VOICE_ID": "voice-1", "OPENAI_API_KEY": api_key, **env}
        settings = Settings.load({}, environ)
        cls = {"elevenlabs": ElevenLabsTTSEngine, "cartesia": CartesiaTTSEngine, "openai": OpenAISpeechEngine}[vendor]
        return fake, cls(http, settings, reactor, policy=FAST)

    async def stream(self, engine, text: str = TEXT) -> list[bytes]:
        chunks: list[bytes] = []
        await engine.stream(text, chunks.append, "CA1")
        return chunks

    async def test_elevenlabs_streams_mulaw_as_it_comes(self):
        fake, engine = self.engine("elevenlabs", VOICED_LANGUAGE="he-IL")
        self.assertIsInstance(engine, StreamingTTSEngine)
        fake.answer(Answer.speak(chunk_bytes=400))
        chunks = await self.stream(engine)
        exchange = fake.exchanges[0]
        self.assertEqual(fake.problems, [])
        self.assertEqual(exchange.path, "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream")
        self.assertEqual(exchange.headers["xi-api-key"], KEY)
        self.assertEqual(exchange.body, {"text": TEXT, "model_id": "eleven_flash_v2_5", "language_code": "he"})
        self.assertEqual(b"".join(chunks), speech_for(TEXT, "mulaw"))  # no transcoding
        self.assertGreater(len(chunks), 1)

    async def test_cartesia_asks_for_raw_mulaw_8k(self):
        fake, engine = self.engine("cartesia")
        chunks = await self.stream(engine)
        self.assertEqual(fake.problems, [])
        body = fake.exchanges[0].body
        self.assertEqual((body["model_id"], body["voice"], body["language"]), ("sonic-2", {"mode": "id", "id": "voice-1"}, "en"))
        self.assertEqual(fake.exchanges[0].headers["x-api-key"], KEY)
        self.assertEqual(b"".join(chunks), speech_for(TEXT, "mulaw"))

    async def test_openai_pcm_is_resampled_to_8k_mulaw_as_it_streams(self):
        fake, engine = self.engine("openai")
        fake.answer(Answer.speak(chunk_bytes=1001))  # odd sizes: a sample split between chunks
        chunks = await self.stream(engine)
        self.assertEqual(fake.problems, [])
        self.assertEqual(fake.exchanges[0].body, {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": TEXT,
                                                  "response_format": "pcm"})
        self.assertEqual(fake.exchanges[0].headers["authorization"], f"Bearer {KEY}")
        audio = b"".join(chunks)
        # 24 kHz in, 8 kHz out: a third of the samples, give or take the filter's edge.
        expected = len(speech_for(TEXT, "pcm24k")) // 2 // 3
        self.assertAlmostEqual(len(audio), expected, delta=SAMPLE_RATE // 100)
        # The 440 Hz tone survives: it is loud, not clicks and silence.
        pcm = ulaw_to_pcm16(audio[800:1600])
        peak = max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))
        self.assertGreater(peak, 6000)

    async def test_openai_wav_is_read_past_its_header(self):
        fake, engine = self.engine("openai", VOICED_OPENAI_TTS_FORMAT="wav")
        fake.answer(Answer.speak(chunk_bytes=30))  # the header itself split across chunks
        audio = b"".join(await self.stream(engine))
        self.assertEqual(fake.exchanges[0].body["response_format"], "wav")
        self.assertAlmostEqual(len(audio), len(speech_for(TEXT, "pcm24k")) // 6, delta=SAMPLE_RATE // 100)

    async def test_429_and_500_are_retried(self):
        fake, engine = self.engine("elevenlabs")
        fake.answer(Answer.status(429), Answer.status(500), Answer.speak())
        audio = await engine.synthesize(TEXT)
        self.assertEqual(audio, speech_for(TEXT, "mulaw"))
        self.assertEqual(len(fake.exchanges), 3)

    async def test_a_reset_before_any_audio_is_retried(self):
        fake, engine = self.engine("cartesia")
        fake.answer(Answer.reset(after_bytes=0), Answer.speak())
        self.assertEqual(await engine.synthesize(TEXT), speech_for(TEXT, "mulaw"))

    async def test_a_reset_after_audio_is_not_retried(self):
        # A retry would play the sentence's start twice from the same engine; a chain decides.
        fake, engine = self.engine("elevenlabs")
        fake.answer(Answer.reset(after_bytes=800), Answer.speak())
        chunks: list[bytes] = []
        with self.assertRaises(Exception):
            await engine.stream(TEXT, chunks.append, "CA1")
        self.assertEqual(b"".join(chunks), speech_for(TEXT, "mulaw")[:800])
        self.assertEqual(len(fake.exchanges), 1)

    async def test_retries_run_out(self):
        fake, engine = self.engine("cartesia")
        fake.default = Answer.status(503)
        with self.assertRaises(TTSServerError):
            await engine.synthesize(TEXT)
        self.assertEqual(len(fake.exchanges), 3)

    async def test_a_refused_key_is_final_and_logged_once_with_the_call_id(self):
        fake, engine = self.engine("elevenlabs", api_key="wrong-key")
        logged: list[dict] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        with self.assertRaises(TTSRefused) as caught:
            await engine.stream(TEXT, lambda _: None, "CA42")
        self.assertIn("HTTP 401", str(caught.exception))
        self.assertEqual(len(fake.exchanges), 1)
        refused = [e for e in logged if "TTS_REFUSED" in e.get("log_format", "")]
        self.assertEqual(len(refused), 1)
        self.assertEqual(refused[0]["call"], "CA42")
        self.assertNotIn("wrong-key", repr(logged))

    async def test_cancelling_closes_the_response(self):
        fake, engine = self.engine("elevenlabs")
        fake.answer(Answer.manual())
        chunks: list[bytes] = []
        streaming = engine.stream(TEXT, chunks.append, "CA1")
        exchange = await fake.exchange(0)
        exchange.send(b"\x7f" * 160)
        while not chunks:
            await ensureDeferred(_turn())
        streaming.cancel()
        self.assertFailure(streaming, CancelledError)
        await streaming
        await exchange.lost  # the barge-in closed the connection: the vendor stops synthesizing
        exchange.send(b"\x7f" * 160)
        self.assertEqual(chunks, [b"\x7f" * 160])


async def _turn() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.001, lambda: None)


class PcmToUlawTests(TestCase):
    def test_chunks_give_what_the_whole_gives(self):
        pcm = speech_for("a sentence of some length", "pcm24k")
        whole = PcmToUlaw()
        at_once = whole(pcm) + whole.finish()
        split = PcmToUlaw()
        pieces = b"".join(split(pcm[i:i + 333]) for i in range(0, len(pcm), 333)) + split.finish()
        self.assertEqual(len(pieces), len(at_once))
        # The same samples, give or take a rounding step of the filter's arithmetic.
        a, b = ulaw_to_pcm16(pieces), ulaw_to_pcm16(at_once)
        worst = max(abs(int.from_bytes(a[i:i + 2], "little", signed=True) - int.from_bytes(b[i:i + 2], "little",
                                                                                            signed=True))
                    for i in range(0, len(a), 2))
        self.assertLess(worst, 300)


class TTSConfigTests(TestCase):
    def load(self, **env: str) -> Settings:
        return Settings.load({}, env)

    def test_a_chain_names_engines_in_order_and_local_only_last(self):
        from voiced.config import ConfigError

        s = self.load(VOICED_TTS="elevenlabs, google,local", ELEVENLABS_API_KEY=KEY)
        self.assertEqual(s.tts_engines, ("elevenlabs", "google", "local"))
        for bad, why in (("local,elevenlabs", "last resort"), ("elevenlabs,elevenlabs", "twice"),
                         ("polly", "not one of")):
            with self.assertRaises(ConfigError) as caught:
                self.load(VOICED_TTS=bad, ELEVENLABS_API_KEY=KEY)
            self.assertIn(why, str(caught.exception))

    def test_a_vendor_needs_its_key_read_from_its_own_variable_and_never_shown(self):
        from voiced.config import ConfigError

        with self.assertRaises(ConfigError) as caught:
            self.load(VOICED_TTS="cartesia", VOICED_CARTESIA_VOICE_ID="v")
        self.assertIn("CARTESIA_API_KEY", str(caught.exception))
        s = self.load(VOICED_TTS="cartesia", CARTESIA_API_KEY=KEY, VOICED_CARTESIA_VOICE_ID="v")
        self.assertEqual(s.cartesia_api_key, KEY)
        self.assertNotIn(KEY, s.summary() + repr(s))

    def test_openai_speech_needs_a_key_only_at_openai(self):
        from voiced.config import ConfigError

        with self.assertRaises(ConfigError):
            self.load(VOICED_TTS="openai")
        # A local server that speaks the API (Kokoro-FastAPI) takes no key.
        s = self.load(VOICED_TTS="openai", VOICED_OPENAI_TTS_BASE_URL="http://127.0.0.1:8880/v1")
        self.assertEqual(s.tts_engines, ("openai",))
