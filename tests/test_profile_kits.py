"""Per-call profiles in the service (issue 22): the warm-up builds what every profile names
once, on the real local engines (Whisper tiny.en, espeak-ng, the script agent), and calls of
different profiles borrow different languages, agents and voices while nothing is built
per call."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.profiles import TWO_LANGUAGES, settings, write
from voiced.agent.dialog import load_dialog
from voiced.audio import MULAW_8K
from voiced.call.model import TurnSettings
from voiced.carrier.base import CallStart
from voiced.lifecycle import construction_counts
from voiced.phrases import load_catalog
from voiced.options import default
from voiced.profile_kits import speaker_key, turn_settings_in
from voiced.profiles import parse_profiles
from voiced.service import VoicedService

HEBREW_DIALOG = load_dialog("", "he-IL")
ENGLISH_DIALOG = load_dialog("", "en-US")


class LineTransport:
    """The carrier side of a call, as the turn machine drives it: what it was sent."""

    def __init__(self) -> None:
        self.audio = bytearray()
        self.marks: list[str] = []
        self.hung_up = False

    def send_audio(self, ulaw: bytes) -> None:
        self.audio += ulaw

    def send_mark(self, name: str) -> None:
        self.marks.append(name)

    def send_clear(self) -> None:
        pass

    def hang_up(self) -> None:
        self.hung_up = True


class TurnSettingsTests(SynchronousTestCase):
    def test_a_profiles_turn_settings_speak_its_catalog(self):
        hebrew = load_catalog("he-IL")
        turns = turn_settings_in(TurnSettings(barge_in_ms=123), hebrew)
        self.assertEqual(turns.barge_in_ms, 123, "the rest is the daemon's")
        self.assertEqual((turns.filler_phrase, turns.interim_phrase, turns.drain_goodbye_phrase),
                         (hebrew["filler"], hebrew["interim"], hebrew["drain_goodbye"]))


class ServiceProfilesTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        # Hebrew on espeak-ng, greeted by its dialog (no voice, no greeting of its own).
        text = TWO_LANGUAGES.replace('voice = "he-IL-Wavenet-A"\n', "").replace('greeting = "שלום!"\n', "")
        path = write(self, text)
        self.service = service = VoicedService(settings(VOICED_PROFILES=path, VOICED_STT="local", VOICED_TTS="local"),
                                               reactor=reactor)
        for name, size in (("whisper_pool", 1), ("stt_pool", 1), ("tts_pool", 4), ("vad_pool", 1), ("turn_pool", 1)):
            setattr(service, name, service._pool(f"test-{name}", size))
        self.addCleanup(service._release, None)
        yield Deferred.fromCoroutine(service._warm_up())
        self.assertTrue(service.ready)

    def place(self, call_id: str, **parameters: str):
        transport = LineTransport()
        call = self.service.new_call(CallStart("twilio", call_id, "MZ" + call_id, "+15550001",
                                               parameters.pop("to", "+15550002"), parameters), transport)
        self.addCleanup(call.close, "test over")
        call.start()
        return call, transport

    def test_each_profile_gets_its_language_agent_and_voice_and_nothing_is_built_per_call(self):
        kits = self.service.kits
        self.assertEqual(sorted(kits), ["english", "hebrew"])
        english, hebrew = kits["english"], kits["hebrew"]
        self.assertIs(english.stt, self.service.stt_engine, "the daemon's own engines serve its own language")
        self.assertIs(english.speaker, self.service.speaker)
        self.assertIsNot(hebrew.speaker, english.speaker)
        self.assertIsNot(hebrew.agent, english.agent)
        self.assertEqual(hebrew.speaker.primary.name, "local")
        self.assertEqual(hebrew.speaker.primary._synthesizer.language, "he-IL", "espeak-ng's Hebrew voice")
        before = construction_counts()

        calls = [self.place("CAhe1", profile="hebrew"), self.place("CAen1"), self.place("CAhe2", to="+97225550100"),
                 self.place("CAno", profile="nope")]
        (he1, he1_line), (en1, en1_line), (he2, he2_line), (no, no_line) = calls
        self.assertEqual(construction_counts(), before, "a call only borrows what the warm-up built")
        self.assertEqual([c.info.language for c, _ in calls], ["he-IL", "en-US", "he-IL", "en-US"])
        self.assertEqual([c.record.profile for c, _ in calls], ["hebrew", "english", "hebrew", "english"])
        self.assertEqual([c.record.language for c, _ in calls], ["he-IL", "en-US", "he-IL", "en-US"])
        self.assertIs(he1.speaker, hebrew.speaker)
        self.assertIs(he1.settings, hebrew.turn_settings)
        self.assertEqual(he1.settings.filler_phrase, load_catalog("he-IL")["filler"])
        self.assertEqual(en1.settings.filler_phrase, load_catalog("en-US")["filler"])
        # The greeting each caller hears is its own dialog's, in its own voice, from the phrase cache.
        he_greeting = hebrew.speaker.cache.get(HEBREW_DIALOG.greeting[0])
        en_greeting = english.speaker.cache.get(ENGLISH_DIALOG.greeting[0])
        self.assertNotEqual(he_greeting, en_greeting)
        self.assertTrue(bytes(he1_line.audio).startswith(he_greeting[:1600]))
        self.assertTrue(bytes(he2_line.audio).startswith(he_greeting[:1600]))
        self.assertTrue(bytes(en1_line.audio).startswith(en_greeting[:1600]))
        self.assertTrue(bytes(no_line.audio).startswith(en_greeting[:1600]))

    @inlineCallbacks
    def test_a_second_warm_up_builds_nothing_again(self):
        kits, before = dict(self.service.kits), construction_counts()
        yield Deferred.fromCoroutine(self.service._warm_up())
        self.assertEqual(construction_counts(), before)
        hebrew, english = self.service.kits["hebrew"], self.service.kits["english"]
        self.assertEqual((hebrew.stt, hebrew.speaker, hebrew.agent),
                         (kits["hebrew"].stt, kits["hebrew"].speaker, kits["hebrew"].agent))
        # A warm-up attempt makes the daemon's own STT engine and speaker anew (cheap wrappers, as before).
        self.assertEqual((english.stt, english.speaker, english.agent),
                         (self.service.stt_engine, self.service.speaker, self.service.agent))


class WithoutProfilesTests(SynchronousTestCase):
    def test_a_call_borrows_the_daemons_engines_as_before(self):
        service = VoicedService(settings(), reactor=reactor)
        service.stt_engine, service.speaker, service.agent = object(), object(), object()
        kit = service.kit_for(CallStart("twilio", "CA1", "MZ1", custom_parameters={"profile": "hebrew"}))
        self.assertEqual((kit.name, kit.stt, kit.speaker, kit.agent, kit.settings),
                         ("", service.stt_engine, service.speaker, service.agent, service.settings))
        self.assertEqual(replace(kit.turn_settings), service.turn_settings)


class ProfileEnginesTests(SynchronousTestCase):
    """The engines the warm-up builds for a profile speak its language (and the daemon's, its own)."""

    def setUp(self):
        self.base = settings(VOICED_DEEPGRAM_API_KEY="key")
        profiles = parse_profiles({"profiles": {
            "he": {"language": "he-IL", "voice": "he-IL-Wavenet-A", "stt": "google", "tts": "google"},
            "he-dg": {"language": "he-IL", "stt": "deepgram"}}, "default": "he"}, "p.toml")
        self.hebrew = profiles.settings_for(self.base, "he")
        self.hebrew_deepgram = profiles.settings_for(self.base, "he-dg")
        self.service = VoicedService(self.base, reactor=Clock())

    def test_google_stt_streams_the_profiles_language_on_its_model(self):
        config = self.service._stt_engine_named("google", None, None, None, settings=self.hebrew).config_for(MULAW_8K)
        self.assertEqual((config.config.language_code, config.config.model), ("he-IL", "default"))
        own = self.service._stt_engine_named("google", None, None, None).config_for(MULAW_8K)
        self.assertEqual((own.config.language_code, own.config.model), ("en-US", "phone_call"))

    def test_google_tts_speaks_with_the_profiles_voice(self):
        voice = self.service._tts_primary(self.hebrew, None, "local")._voice
        self.assertEqual((voice.language_code, voice.name), ("he-IL", "he-IL-Wavenet-A"))
        self.assertEqual(self.service._tts_primary(self.base, None, "local"), "local")

    def test_deepgram_listens_in_the_profiles_language(self):
        engine = self.service._stt_engine_named("deepgram", None, None, None, settings=self.hebrew_deepgram)
        self.assertEqual(engine.language, "he")
        self.assertIn("language=he&", engine.urls[MULAW_8K] + "&")

    def test_the_tts_vendors_speak_the_profiles_language(self):
        # Each profile's chain is built with that profile's settings: its language reaches each vendor.
        base = settings(VOICED_ELEVENLABS_API_KEY="el", VOICED_CARTESIA_API_KEY="ca", VOICED_CARTESIA_VOICE_ID="v1",
                        VOICED_TTS="elevenlabs,cartesia,openai", OPENAI_API_KEY="sk")
        profiles = parse_profiles({"profiles": {"he": {"language": "he-IL", "cartesia_voice_id": "v-he"}, "en": {}},
                                   "default": "en"}, "p.toml")
        service = VoicedService(base, reactor=Clock())
        bodies = {}
        for name in ("he", "en"):
            chain = service._tts_primary(profiles.settings_for(base, name), None, "local")
            bodies[name] = {label: engine.request_for("text").body for label, engine in chain.engines}
        self.assertEqual((bodies["he"]["elevenlabs"]["language_code"], bodies["he"]["cartesia"]["language"]),
                         ("he", "he"))
        self.assertEqual((bodies["en"]["elevenlabs"]["language_code"], bodies["en"]["cartesia"]["language"]),
                         ("en", "en"))
        # OpenAI's /v1/audio/speech takes no language: the model speaks the text's.
        self.assertFalse({"language", "language_code"} & set(bodies["he"]["openai"]))

    def test_a_profile_names_each_vendors_voice_and_another_language_does_not_inherit_it(self):
        base = settings(VOICED_ELEVENLABS_API_KEY="el", VOICED_CARTESIA_API_KEY="ca", VOICED_CARTESIA_VOICE_ID="v-en",
                        VOICED_TTS="elevenlabs,cartesia,openai", OPENAI_API_KEY="sk", VOICED_OPENAI_TTS_VOICE="alloy")
        profiles = parse_profiles({"profiles": {
            "he": {"language": "he-IL", "elevenlabs_voice_id": "el-he", "cartesia_voice_id": "v-he",
                   "openai_tts_voice": "nova"},
            "fr": {"language": "fr-FR", "cartesia_voice_id": "v-fr"},
            "en": {}}, "default": "en"}, "p.toml")
        hebrew, french, english = (profiles.settings_for(base, name) for name in ("he", "fr", "en"))
        self.assertEqual((hebrew.elevenlabs_voice_id, hebrew.cartesia_voice_id, hebrew.openai_tts_voice),
                         ("el-he", "v-he", "nova"))
        self.assertEqual((english.cartesia_voice_id, english.openai_tts_voice), ("v-en", "alloy"))
        # Another language starts from the options' defaults, not the daemon's (English) voices.
        self.assertEqual((french.cartesia_voice_id, french.openai_tts_voice),
                         ("v-fr", default("openai_tts_voice")))
        self.assertNotEqual(speaker_key(hebrew), speaker_key(english))  # each gets its own engines


class RealtimeDaemonTests(TestCase):
    """VOICED_AGENT=realtime: the model hears the caller itself, so no STT engine and no Whisper."""

    timeout = 60

    def service(self, **env: str) -> VoicedService:
        service = VoicedService(settings(VOICED_AGENT="realtime", VOICED_OPENAI_REALTIME_URL="ws://127.0.0.1:9/", OPENAI_API_KEY="sk",
                                         VOICED_STT="local", VOICED_TTS="local", **env), reactor=reactor)
        for name, size in (("whisper_pool", 1), ("stt_pool", 1), ("tts_pool", 2), ("vad_pool", 1), ("turn_pool", 1)):
            setattr(service, name, service._pool(f"test-{name}", size))
        self.addCleanup(service._release, None)
        return service

    @inlineCallbacks
    def test_no_whisper_and_a_call_hears_through_the_model(self):
        service = self.service()
        before = construction_counts().get("stt_whisper_model", 0)
        yield Deferred.fromCoroutine(service._warm_up())
        self.assertTrue(service.ready)
        self.assertEqual(construction_counts().get("stt_whisper_model", 0), before, "Whisper was loaded")
        self.assertIsNone(service.stt_engine)
        self.assertNotIn("stt_whisper", service.engine_warmup_ms)
        start = CallStart("twilio", "CArt1", "MZrt1", "+15550001", "+15550002", {})
        call = service.new_call(start, LineTransport())
        self.assertEqual((call.stt_audio, call._transcribing.stream.name), (MULAW_8K, "model"))

    @inlineCallbacks
    def test_a_profile_that_transcribes_still_gets_whisper(self):
        path = write(self, 'default = "model"\n[profiles.model]\n[profiles.scripted]\nagent = "script"\n')
        service = self.service(VOICED_PROFILES=path)
        yield Deferred.fromCoroutine(service._warm_up())
        self.assertIsNotNone(service._whisper)
        self.assertIsNone(service.kits["model"].stt)
        self.assertEqual(service.kits["scripted"].stt.name, "local")
