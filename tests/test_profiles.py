"""Per-call profiles (issue 22): the file, its start-up checks, and which profile a call gets."""

from __future__ import annotations


from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.profiles import TWO_LANGUAGES, settings, write
from voiced import preflight
from voiced.config import ConfigError
from voiced.profiles import ProfileError, choose, choose_logged, load_profiles, number_key, parse_profiles


class ParsingTests(SynchronousTestCase):
    def test_a_file_of_two_languages(self):
        profiles = load_profiles(write(self, TWO_LANGUAGES))
        self.assertEqual(sorted(profiles.profiles), ["english", "hebrew"])
        self.assertEqual(profiles.default, "english")
        self.assertEqual(profiles.numbers, {"+97225550100": "hebrew"})
        self.assertEqual(dict(profiles.profiles["hebrew"].options),
                         {"language": "he-IL", "tts_voice": "he-IL-Wavenet-A", "greeting": "שלום!"})

    def test_one_profile_is_the_default_without_saying_so(self):
        self.assertEqual(parse_profiles({"profiles": {"only": {"language": "en-GB"}}}, "f.toml").default, "only")

    def assert_refused(self, data, *fragments):
        e = self.assertRaises(ProfileError, parse_profiles, data, "/etc/voiced/profiles.toml")
        self.assertIsInstance(e, ConfigError)  # a start-up error, one line and exit 1
        for fragment in ("/etc/voiced/profiles.toml", *fragments):
            self.assertIn(fragment, str(e))

    def test_what_a_file_may_not_say(self):
        he = {"language": "he-IL"}
        self.assert_refused({"profiles": {"he": {"langauge": "he-IL"}}}, "profile 'he'", "unknown key 'langauge'")
        self.assert_refused({"profiles": {"he": {"language": "Hebrew"}}}, "profile 'he'", "not a BCP-47")
        self.assert_refused({"profiles": {"he": {"stt": "whisperx"}}}, "profile 'he'", "'whisperx' is not one of")
        self.assert_refused({"profiles": {"he": {"agent": "gpt"}}}, "profile 'he'", "'gpt' is not one of")
        self.assert_refused({"profiles": {"he": {"language": 5}}}, "profile 'he'", "must be a string")
        self.assert_refused({"profiles": {"he": {"system_prompt": "a", "system_prompt_file": "b"}}}, "not both")
        self.assert_refused({"profiles": {"he": he, "en": {}}}, "default = None must name one of the profiles")
        self.assert_refused({"profiles": {"he": he}, "default": "en"}, "default = 'en'")
        self.assert_refused({"profiles": {"he": he}, "numbers": {"+1555": "en"}}, "[numbers] '+1555' = 'en'")
        self.assert_refused({"profiles": {"he": he}, "language": "he-IL"}, "unknown key 'language'")
        self.assert_refused({"profiles": {}}, "no [profiles.NAME] table")
        self.assert_refused({"profiles": {"a b": he}}, "profile 'a b'")

    def test_a_file_that_is_not_toml_or_not_there(self):
        e = self.assertRaises(ProfileError, load_profiles, write(self, "[profiles.x\n"))
        self.assertIn("is not TOML", str(e))
        e = self.assertRaises(ProfileError, load_profiles, "/nonexistent/profiles.toml")
        self.assertIn("cannot read /nonexistent/profiles.toml", str(e))

    def test_numbers_are_compared_by_their_digits(self):
        self.assertEqual(number_key(" +972 (2) 555-0100 "), "+97225550100")
        self.assertEqual(number_key("sip:desk@example.com"), "sip:desk@example.com")


class SettingsForTests(SynchronousTestCase):
    def test_a_profile_in_the_daemons_language_inherits_its_options(self):
        base = settings(VOICED_GREETING="Hi there", VOICED_TTS_VOICE="en-US-Wavenet-D")
        english = load_profiles(write(self, TWO_LANGUAGES)).settings_for(base, "english")
        self.assertEqual((english.greeting, english.tts_voice), ("Hi there", "en-US-Wavenet-D"))
        self.assertEqual(english, base)

    def test_a_profile_in_another_language_does_not_inherit_what_is_written_in_the_daemons(self):
        base = settings(VOICED_GREETING="Hi there", VOICED_FILLER_PHRASE="One moment", VOICED_STT_MODEL="phone_call",
                        VOICED_MAX_CALL_S="600")
        hebrew = load_profiles(write(self, TWO_LANGUAGES)).settings_for(base, "hebrew")
        self.assertEqual((hebrew.language, hebrew.greeting, hebrew.tts_voice),
                         ("he-IL", "שלום!", "he-IL-Wavenet-A"))
        self.assertEqual((hebrew.filler_phrase, hebrew.stt_model), ("", ""))
        self.assertEqual(hebrew.max_call_s, 600, "what is not written in a language is inherited")
        catalog = hebrew.phrase_catalog()
        self.assertEqual((catalog.source, catalog["greeting"]), ("he", "שלום!"))
        self.assertEqual(hebrew.google_stt_model, "default", "Google's model for he-IL, not the English phone_call")

    def test_a_combination_settings_refuse_is_refused(self):
        profiles = parse_profiles({"profiles": {"hook": {"agent": "webhook"}}}, "p.toml")
        self.assertRaises(ConfigError, profiles.settings_for, settings(), "hook")


class ChoiceTests(SynchronousTestCase):
    def setUp(self):
        self.profiles = load_profiles(write(self, TWO_LANGUAGES))

    def test_the_parameter_then_the_number_then_the_default(self):
        self.assertEqual(choose(self.profiles, {"profile": "hebrew"}, "+15550100").name, "hebrew")
        self.assertEqual(choose(self.profiles, {"profile": "english"}, "+97225550100").name, "english")
        by_number = choose(self.profiles, {"From": "+1555"}, "+97225550100")
        self.assertEqual((by_number.name, by_number.by, by_number.refused), ("hebrew", "number", ()))
        self.assertEqual(choose(self.profiles, {}, "+15550100").by, "default")
        self.assertEqual(choose(self.profiles, {}, "").name, "english")

    def test_a_name_not_in_the_allow_list_gets_the_default(self):
        choice = choose(self.profiles, {"profile": "nope"}, "+97225550100")
        self.assertEqual((choice.name, choice.by, choice.refused), ("english", "default", ("profile=nope",)))

    def test_a_parameter_setting_the_language_or_an_engine_itself_is_refused(self):
        choice = choose(self.profiles, {"language": "fr-FR", "STT": "deepgram", "voice": "x"}, "+15550100")
        self.assertEqual(choice.name, "english")
        self.assertEqual(choice.refused, ("STT=deepgram", "language=fr-FR", "voice=x"))
        # ... and never undoes a profile that was allowed.
        choice = choose(self.profiles, {"profile": "hebrew", "language": "en-US"}, "")
        self.assertEqual((choice.name, choice.refused), ("hebrew", ("language=en-US",)))

    def test_refusals_are_logged_with_what_was_asked_cut_to_a_line(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        choose_logged(self.profiles, "CA1", {"profile": "x" * 100 + "\n"}, "")
        choose_logged(self.profiles, "CA2", {"profile": "hebrew"}, "")
        refused = [e for e in events if "PROFILE_REFUSED" in e.get("log_format", "")]
        self.assertEqual(len(refused), 1)
        self.assertEqual((refused[0]["call"], refused[0]["log_level"]), ("CA1", LogLevel.warn))
        self.assertEqual(refused[0]["asked"], "profile=" + "x" * 64 + "...")
        choose_logged(self.profiles, "CA3", {"profile": "a\nb c"}, "")
        self.assertEqual(events[-1]["asked"], "profile=a?b?c", "one line, whatever the stream sent")


class PreflightTests(SynchronousTestCase):
    def check(self, text: str, **env: str):
        return preflight.check(settings(VOICED_PROFILES=write(self, text), **env), {})

    def test_two_languages_on_the_local_engines_start(self):
        self.assertEqual(self.check(TWO_LANGUAGES.replace('voice = "he-IL-Wavenet-A"\n', "")), [])

    def test_a_bad_file_stops_the_start_naming_the_file(self):
        e = self.assertRaises(ConfigError, self.check, "[profiles.he]\nlangauge = 'he-IL'\n")
        self.assertIn("profiles.toml: profile 'he': unknown key 'langauge'", str(e))

    def test_an_engine_not_configured_names_the_profile(self):
        e = self.assertRaises(ConfigError, self.check, TWO_LANGUAGES.replace('greeting', 'stt = "google"\ngreeting'))
        self.assertIn("profile 'hebrew': stt=google needs Google configured", str(e))
        e = self.assertRaises(ConfigError, self.check, "[profiles.dg]\nstt = 'deepgram'\n")
        self.assertIn("profile 'dg': stt=deepgram needs deepgram_api_key", str(e))
        e = self.assertRaises(ConfigError, self.check, "[profiles.hook]\nagent = 'webhook'\n")
        self.assertIn("profile 'hook': agent=webhook needs webhook_url", str(e))

    def test_a_language_voiced_has_no_phrases_for_is_refused(self):
        e = self.assertRaises(ConfigError, self.check, "[profiles.fr]\nlanguage = 'fr-FR'\nagent = 'openai'\n")
        self.assertIn("profile 'fr': language=fr-FR: voiced has no phrase catalog for it", str(e))

    def test_a_script_file_that_does_not_read_names_the_profile(self):
        e = self.assertRaises(ConfigError, self.check, "[profiles.x]\nscript = '/nonexistent.dialog'\n")
        self.assertIn("profile 'x': VOICED_SCRIPT: cannot read /nonexistent.dialog", str(e))
