import os

from twisted.trial.unittest import SynchronousTestCase

from voiced.config import ConfigError, Settings
from voiced.options import DEFAULT_LISTEN, OPTIONS
from voiced.tap import Options

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


class SettingsTests(SynchronousTestCase):
    def test_defaults(self):
        s = Settings.load({}, {})
        self.assertEqual((s.listen, s.eou_silence_ms, s.min_speech_ms, s.barge_in_ms), ((DEFAULT_LISTEN,), 240, 60, 360))
        self.assertEqual((s.stt_engine, s.tts_engine), ("local", "local"))

    def test_command_line_beats_environment_beats_default(self):
        env = {"VOICED_EOU_SILENCE_MS": "300", "VOICED_BARGE_IN_MS": "200", "VOICED_LISTEN": "tcp:1, tcp:2"}
        s = Settings.load({"eou_silence_ms": "500"}, env)
        self.assertEqual((s.eou_silence_ms, s.barge_in_ms, s.listen), (500, 200, ("tcp:1", "tcp:2")))

    def test_bad_values_name_their_source(self):
        e = self.assertRaises(ConfigError, Settings.load, {}, {"VOICED_VAD_AGGRESSIVENESS": "7"})
        self.assertIn("VOICED_VAD_AGGRESSIVENESS", str(e))
        e = self.assertRaises(ConfigError, Settings.load, {"stt": "azure"}, {})
        self.assertIn("--stt", str(e))

    def test_google_endpoint_selects_google_engines_unless_forced(self):
        s = Settings.load({}, {"VOICED_GOOGLE_ENDPOINT": "127.0.0.1:1", "VOICED_STT": "local"})
        self.assertEqual((s.stt_engine, s.tts_engine), ("local", "google"))

    def test_summary_redacts_secrets(self):
        s = Settings.load({}, {"VOICED_GOOGLE_CREDENTIALS_JSON": '{"private_key": "SECRET"}'})
        self.assertNotIn("SECRET", s.summary())
        self.assertNotIn("SECRET", repr(s))

    def test_phrases_follow_the_language_and_each_option_overrides_its_own(self):
        he = Settings.load({}, {"VOICED_LANGUAGE": "he-IL", "VOICED_FILLER_PHRASE": "שנייה אחת."}).phrase_catalog()
        self.assertEqual(he.source, "he")
        self.assertEqual(he["filler"], "שנייה אחת.")
        self.assertEqual(he["interim"], "סליחה, לרגע לא שמעתי אתכם. בואו ננסה שוב.")
        self.assertEqual(he["language_name"], "Hebrew")
        en = Settings.load({}, {}).phrase_catalog()
        self.assertEqual((en.source, en["filler"]), ("en", "One moment."))

    def test_every_option_is_documented_in_readme(self):
        with open(README, encoding="utf-8") as f:
            readme = f.read()
        for option in OPTIONS:
            self.assertIn(f"`{option.env}`", readme, f"{option.env} is missing from README's configuration table")


class TapOptionsTests(SynchronousTestCase):
    def test_listen_is_repeatable(self):
        options = Options()
        options.parseOptions(["--listen", "tcp:1", "--listen", "tcp:2", "--eou-silence-ms", "100"])
        self.assertEqual(options["settings"].listen, ("tcp:1", "tcp:2"))
        self.assertEqual(options["settings"].eou_silence_ms, 100)

    def test_bad_option_is_one_line_and_exit_1(self):
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--barge-in-ms", "abc"])
        self.assertIn("--barge-in-ms", str(e.code))


class WorkersSettingsTests(SynchronousTestCase):
    def test_workers_share_tcp_listeners_only(self):
        self.assertEqual(Settings.load({"workers": "2"}, {}).workers, 2)
        with self.assertRaises(ConfigError) as e:
            Settings.load({"workers": "2", "listen": ["ssl:8443:privateKey=k.pem"]}, {})
        self.assertIn("tcp:", str(e.exception))

    def test_a_worker_spec_round_trips_through_the_environment(self):
        from voiced.worker_spec import WORKER_ENV, WorkerSpec

        settings = Settings.load({"workers": "3", "max_calls": "100", "listen": ["tcp:0"]}, {})
        spec = WorkerSpec(1, 3, settings, ((7, 2),), None, "/tmp/x", 42)
        self.assertEqual(WorkerSpec.from_env({WORKER_ENV: spec.to_env()}), spec)
        self.assertIsNone(WorkerSpec.from_env({}))
