"""VOICED_STT=deepgram's settings: the key from either variable, never shown, and clear errors."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from voiced.config import ConfigError, Settings

KEY = "dg-config-secret-42"


class DeepgramSettingsTests(TestCase):
    def test_the_key_from_deepgrams_own_variable_or_voiceds(self):
        s = Settings.load(environ={"VOICED_STT": "deepgram", "DEEPGRAM_API_KEY": KEY})
        self.assertEqual((s.stt_engine, s.deepgram_api_key), ("deepgram", KEY))
        s = Settings.load(environ={"VOICED_STT": "deepgram", "VOICED_DEEPGRAM_API_KEY": "mine",
                                   "DEEPGRAM_API_KEY": KEY})
        self.assertEqual(s.deepgram_api_key, "mine")  # voiced's own option wins
        s = Settings.load({"deepgram_api_key": "flag"}, environ={"VOICED_STT": "deepgram"})
        self.assertEqual(s.deepgram_api_key, "flag")

    def test_defaults(self):
        s = Settings.load(environ={"VOICED_STT": "deepgram", "DEEPGRAM_API_KEY": KEY})
        self.assertEqual((s.deepgram_url, s.deepgram_model, s.deepgram_endpointing_ms, s.deepgram_utterance_end_ms),
                         ("wss://api.deepgram.com/v1/listen", "nova-3", 300, 1000))

    def test_the_key_is_never_shown(self):
        s = Settings.load(environ={"VOICED_STT": "deepgram", "DEEPGRAM_API_KEY": KEY})
        self.assertNotIn(KEY, s.summary())
        self.assertIn("deepgram_api_key=<redacted>", s.summary())
        self.assertNotIn(KEY, repr(s))

    def test_deepgram_without_a_key_is_a_clear_error(self):
        with self.assertRaisesRegex(ConfigError, "stt=deepgram needs deepgram_api_key .*DEEPGRAM_API_KEY"):
            Settings.load(environ={"VOICED_STT": "deepgram"})

    def test_a_url_that_is_no_websocket_is_a_clear_error(self):
        with self.assertRaisesRegex(ConfigError, "deepgram_url must be a wss://"):
            Settings.load(environ={"VOICED_STT": "deepgram", "DEEPGRAM_API_KEY": KEY,
                                   "VOICED_DEEPGRAM_URL": "https://api.deepgram.com/v1/listen"})

    def test_utterance_end_below_deepgrams_minimum_is_refused(self):
        with self.assertRaisesRegex(ConfigError, "1000"):
            Settings.load(environ={"VOICED_DEEPGRAM_UTTERANCE_END_MS": "500"})
        self.assertEqual(Settings.load(environ={"VOICED_DEEPGRAM_UTTERANCE_END_MS": "0"}).deepgram_utterance_end_ms, 0)

    def test_an_unknown_engine_names_the_choices(self):
        with self.assertRaisesRegex(ConfigError, "VOICED_STT: 'deepgramm' is not one of auto, local, google, deepgram"):
            Settings.load(environ={"VOICED_STT": "deepgramm"})

    def test_a_fallback_chain(self):
        s = Settings.load(environ={"VOICED_STT": "deepgram, google", "DEEPGRAM_API_KEY": KEY})
        self.assertEqual((s.stt_engine, s.stt_engines), ("deepgram,google", ("deepgram", "google")))
        self.assertEqual(Settings.load(environ={}).stt_engines, ("local",))
        with self.assertRaisesRegex(ConfigError, "needs deepgram_api_key"):
            Settings.load(environ={"VOICED_STT": "google,deepgram"})
        with self.assertRaisesRegex(ConfigError, "names an engine twice"):
            Settings.load(environ={"VOICED_STT": "google,google"})
