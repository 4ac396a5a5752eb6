"""End to end with VOICED_TTS=elevenlabs,local and elevenlabs,google: a real daemon (twistd, a
separate process) speaks through the loopback ElevenLabs (tests/fakes/tts_servers.py, in this
process: a real HTTP server speaking /v1/text-to-speech/{voice_id}/stream); then ElevenLabs fails
mid-call and the chain's next engine (espeak, the last resort; or Google TTS, served by
``voiced-emulator``) speaks the same sentences: the caller hears every reply either way."""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, EmulatorProcess, constructions, line, logged
from tests.fakes.tts_servers import Answer, TTSFake, speech_for
from voiced.caller.client import place_call

KEY = "el-e2e-secret-0123456789abcdef"
# No intent of the front desk matches: the fallback's "I heard you say: {text}." is synthesized live.
UNKNOWN, UNKNOWN_TOO, GOODBYE = "Tell me about the weather.", "Do you sell flowers?", "Thank you, goodbye."


@inlineCallbacks
def wait_ready(daemon: Daemon, timeout_s: float = 90.0):
    """Daemon.wait_ready, without blocking this reactor: the daemon's warm-up synthesizes its fixed
    phrases through the fake, which answers from this process."""
    for _ in range(int(timeout_s / 0.2)):
        if daemon.process.poll() is not None:
            raise AssertionError(f"daemon exited ({daemon.process.returncode}):\n{daemon.log()}")
        try:
            if daemon.get("/health/ready")[0] == 200:
                return
        except OSError:
            pass
        yield deferLater(reactor, 0.2, lambda: None)
    raise AssertionError(f"daemon not ready after {timeout_s} s:\n{daemon.log()}")


def served(daemon: Daemon) -> dict[str, float]:
    _, body = daemon.get("/metrics")
    found = re.findall(r'^voiced_tts_engine_served_total\{engine="([^"]+)"\} (\S+)$', body.decode(), re.M)
    return {engine: float(value) for engine, value in found}


class TTSVendorCallTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_elevenlabs_speaks_then_fails_mid_call_and_espeak_takes_over(self):
        fake = TTSFake("elevenlabs", api_key=KEY)
        fake.listen()
        self.addCleanup(fake.stop)
        daemon = Daemon(env={"VOICED_TTS": "elevenlabs,local", "VOICED_ELEVENLABS_BASE_URL": fake.url,
                             "ELEVENLABS_API_KEY": KEY})
        self.addCleanup(daemon.stop)
        yield wait_ready(daemon)
        self.assertIn("tts=elevenlabs", daemon.lines("READY")[0])
        warmed = len(fake.exchanges)  # the fixed phrases, synthesized once at start-up
        self.assertGreater(warmed, 0)

        # ElevenLabs answers the first live sentence, then fails for good: mid-call.
        def fail_after_the_first_live_sentence(exchange) -> None:
            if exchange.text.startswith("I heard you say"):
                fake.default = Answer.status(500)

        fake.on_exchange = fail_after_the_first_live_sentence
        lines = [line(UNKNOWN), line(UNKNOWN_TOO), line(GOODBYE)]
        report = yield place_call(reactor, daemon.media_url, lines, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "the call should go on without ElevenLabs")
        self.assertEqual(len(report.replies), 4)  # greeting (cached), two live answers, goodbye
        live = [e for e in fake.exchanges[warmed:] if e.text.startswith("I heard you say")]
        self.assertGreaterEqual(len(live), 2, [e.text for e in fake.exchanges[warmed:]])
        # The first answer is ElevenLabs' audio, as it streamed; the second was asked of it (and
        # retried), then espeak spoke it.
        self.assertTrue(speech_for(live[0].text, "mulaw")[:800] in report.bot_audio, "ElevenLabs' audio not heard")
        self.assertFalse(speech_for(live[1].text, "mulaw")[:800] in report.bot_audio, "a failed request was heard")
        self.assertEqual(fake.problems, [])
        [fallback] = daemon.lines("TTS_FALLBACK")
        self.assertIn(f"call={report.call_sid} engine=elevenlabs", fallback)
        self.assertIn("HTTP 500", fallback)
        self.assertEqual(served(daemon).get("elevenlabs"), 1.0)
        self.assertGreaterEqual(served(daemon).get("local", 0), 1)
        self.assertEqual(constructions(daemon).get("tts_elevenlabs"), 1.0)
        self.assertNotIn(KEY, daemon.log())

    @inlineCallbacks
    def test_elevenlabs_fails_mid_call_and_google_speaks_every_sentence(self):
        emulator = EmulatorProcess()
        self.addCleanup(emulator.kill)
        fake = TTSFake("elevenlabs", api_key=KEY)
        fake.listen()
        self.addCleanup(fake.stop)
        self.addCleanup(deferLater, reactor, 2.5, lambda: None)  # Autobahn's close timers outlive a call
        daemon = Daemon(env=emulator.google_env(VOICED_STT="local", VOICED_TTS="elevenlabs,google",
                                                VOICED_ELEVENLABS_BASE_URL=fake.url, ELEVENLABS_API_KEY=KEY))
        self.addCleanup(daemon.stop)
        yield wait_ready(daemon)
        self.assertIn("tts=elevenlabs,google", daemon.lines("READY")[0])
        warmed = len(fake.exchanges)
        self.assertEqual(syntheses(emulator), [], "ElevenLabs spoke every phrase at warm-up")

        def fail_after_the_first_live_sentence(exchange) -> None:
            if exchange.text.startswith("I heard you say"):
                fake.default = Answer.status(500)

        fake.on_exchange = fail_after_the_first_live_sentence
        lines = [line(UNKNOWN), line(UNKNOWN_TOO), line(GOODBYE)]
        report = yield place_call(reactor, daemon.media_url, lines, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "the call should go on without ElevenLabs")
        # Every sentence the bot said (its BOT lines) reached the caller, whole and in order.
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        said = [entry for entry in daemon.lines(" BOT ") if f"call={report.call_sid}" in entry]
        self.assertEqual(len(said), 4, said)  # greeting (cached), two live answers, goodbye
        self.assertEqual(len(report.replies), len(said))
        self.assertFalse(any(reply.interrupted for reply in report.replies))
        live = [e for e in fake.exchanges[warmed:] if e.text.startswith("I heard you say")]
        self.assertGreaterEqual(len(live), 2, [e.text for e in fake.exchanges[warmed:]])
        self.assertIn(live[0].text, said[1])
        self.assertIn(live[1].text, said[2])
        self.assertTrue(speech_for(live[0].text, "mulaw")[:800] in report.bot_audio, "ElevenLabs' audio not heard")
        self.assertFalse(speech_for(live[1].text, "mulaw")[:800] in report.bot_audio, "a failed request was heard")
        # The failed sentence went to Google, once: the emulator synthesized it and the caller heard all of it.
        [google_bytes] = syntheses(emulator)
        self.assertGreaterEqual(len(report.replies[2].audio), google_bytes - WAV_HEADER_MAX)
        [fallback] = daemon.lines("TTS_FALLBACK")
        self.assertIn(f"call={report.call_sid} engine=elevenlabs", fallback)
        self.assertIn("HTTP 500", fallback)
        self.assertIn("speaking with google", fallback)
        self.assertEqual(served(daemon), {"elevenlabs": 1.0, "google": 1.0}, "espeak never spoke")
        self.assertEqual(fake.problems, [])
        self.assertNotIn(KEY, daemon.log())


#: Google wraps MULAW in a WAV header, of a length that varies (voiced.google.tts).
WAV_HEADER_MAX = 100


def syntheses(emulator: EmulatorProcess) -> list[int]:
    """The bytes of each synthesis the emulator answered."""
    return [int(n) for n in re.findall(r"synthesis \d+: \S+, (\d+) bytes", emulator.log())]
