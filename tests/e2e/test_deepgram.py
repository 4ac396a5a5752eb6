"""End to end with VOICED_STT=deepgram: a real daemon (twistd, a separate process) hears the
caller through the loopback Deepgram (tests/fakes/deepgram_server.py, in this process: a
real WebSocket server speaking /v1/listen), and the call is placed by voiced-call's library
over a real WebSocket with Twilio's framing and timing."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, EmulatorProcess, constructions, line, logged
from tests.fakes.deepgram_server import DeepgramFake
from voiced.caller.client import place_call

KEY = "dg-e2e-secret-0123456789abcdef"
QUESTION, GOODBYE = "What time do you open?", "Thank you, goodbye."


class DeepgramCallTests(TestCase):
    timeout = 120

    def start(self, fake: DeepgramFake, **env: str) -> Daemon:
        fake.listen()
        self.addCleanup(fake.stop)
        # DEEPGRAM_API_KEY, Deepgram's own variable: the daemon reads it as --deepgram-api-key.
        daemon = Daemon(env={"VOICED_STT": "deepgram", "VOICED_DEEPGRAM_URL": fake.url, "DEEPGRAM_API_KEY": KEY,
                             **env})
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        return daemon

    def call_lines(self, daemon: Daemon, word: str, call_sid: str) -> list[str]:
        return [entry for entry in daemon.lines(word) if f"call={call_sid}" in entry]

    @inlineCallbacks
    def test_a_call_heard_through_deepgram(self):
        fake = DeepgramFake(api_key=KEY, script=[QUESTION, GOODBYE])
        daemon = self.start(fake)
        self.assertIn("stt=deepgram", daemon.lines("READY")[0])
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION), line(GOODBYE)])
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "the bot should hang up after its goodbye")
        self.assertEqual(len(report.replies), 3)  # greeting, hours, goodbye
        # Deepgram's transcript reached the agent, and its answer played.
        bot = self.call_lines(daemon, " BOT ", report.call_sid)
        self.assertIn("Monday to Friday", bot[1])
        caller = self.call_lines(daemon, " CALLER ", report.call_sid)
        self.assertIn(QUESTION, caller[0])
        self.assertRegex(daemon.log(), rf"TURN call={report.call_sid} turn=1 STT_FIRST_PARTIAL_MS=\d+")
        # One WebSocket for the call, asked for the phone's own audio; voiced's end of turn
        # sent Finalize, the end of the call CloseStream.
        yield fake.when(lambda: fake.streams and fake.streams[0].closed_code is not None)
        [stream] = fake.streams
        self.assertEqual((stream.query["encoding"], stream.query["sample_rate"], stream.query["model"]),
                         ("mulaw", "8000", "nova-3"))
        self.assertGreaterEqual(stream.finalizes, 2)
        self.assertTrue(stream.close_stream)
        self.assertEqual(daemon.lines("STT_RETRY") + daemon.lines("STT_DEGRADED"), [])
        self.assertEqual(constructions(daemon).get("stt_deepgram_engine"), 1.0)
        self.assertNotIn(KEY, daemon.log())

    @inlineCallbacks
    def test_a_refused_key_names_the_call_and_the_call_goes_on(self):
        fake = DeepgramFake(api_key="the-right-key", script=[QUESTION])
        daemon = self.start(fake)
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION), line(GOODBYE)], reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        [degraded] = daemon.lines("STT_DEGRADED")
        self.assertIn(f"call={report.call_sid}", degraded)
        self.assertIn("HTTP 401", degraded)
        # Whisper (the bundled tiny.en) heard the rest of the call: the turns were answered.
        self.assertTrue(report.hung_up_by_bot, "the call should go on without Deepgram")
        self.assertNotIn(KEY, daemon.log())

    @inlineCallbacks
    def test_deepgram_failing_mid_call_the_turns_go_on_through_google(self):
        emulator = EmulatorProcess()
        self.addCleanup(emulator.kill)
        fake = DeepgramFake(api_key=KEY, script=[QUESTION, GOODBYE])
        fake.fail_after(8000 * 3, "reset")  # 3 s into the call: Deepgram's connection is reset
        daemon = self.start(fake, **emulator.google_env(VOICED_STT="deepgram,google", VOICED_TTS="local"))
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION), line(GOODBYE)], reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "every turn should be answered, the last by Google")
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        turns = self.call_lines(daemon, " TURN ", report.call_sid)
        self.assertEqual(len(turns), 2)
        bot = self.call_lines(daemon, " BOT ", report.call_sid)
        self.assertIn("Monday to Friday", bot[1])
        [moved] = daemon.lines("STT_FALLBACK")
        self.assertIn(f"call={report.call_sid} from=deepgram to=google", moved)
        metrics = daemon.get("/metrics")[1].decode()
        self.assertRegex(metrics, r'voiced_stt_engine_served_total\{engine="google"\} [1-9]')
        self.assertNotIn(KEY, daemon.log())
