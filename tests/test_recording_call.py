"""What a recorded call adds to the call itself: the consent announcement before the
greeting (a cached phrase, kept out of the agent's history) and each transcript line's
time from the call's start (its recording's time zero). On a Clock, a real Call."""

from __future__ import annotations

from twisted.internet.task import Clock

from twisted.trial.unittest import SynchronousTestCase

from tests.testing.turn import (
    SILENT, VOICED, VOICED_PCM, FakeConversation, FakeSTT, FakeTTS, RecordingMetrics, RecordingTransport,
)
from voiced.agent.base import CallInfo, Said
from voiced.call.turn import Call, State, TurnSettings
from voiced.config import ConfigError, Settings
from voiced.tts.speaker import PhraseCache, Speaker
from voiced.turns.eou import EndOfUtterance

NOTICE = "This call is recorded."


class RecordedCallTests(SynchronousTestCase):
    def make_call(self, announcement: str = NOTICE) -> Call:
        self.clock = Clock()
        self.clock.advance(1000)
        self.transport = RecordingTransport()
        self.stt = FakeSTT(False)
        self.tts = FakeTTS()
        self.conversation = FakeConversation()
        self.metrics = RecordingMetrics()
        eou = EndOfUtterance(self.clock, lambda pcm: pcm == VOICED_PCM, eou_silence_ms=240, min_speech_ms=60)
        self.call = Call(CallInfo("CA1", "MZ1"), self.clock, self.transport, self.stt,
                         Speaker(self.tts, None, PhraseCache()), self.conversation, eou, self.metrics,
                         TurnSettings(announcement_phrase=announcement))
        self.call.start()
        return self.call

    def frames(self, pattern: str) -> None:
        for ch in pattern:
            self.clock.advance(0.02)
            self.call.on_media(VOICED if ch == "v" else SILENT)

    def finish_greeting(self) -> None:
        for name in self.transport.marks():
            self.call.on_mark(name)
        self.transport.sent.clear()
        self.assertEqual(self.call.state, State.LISTENING)

    def test_the_announcement_plays_first_and_is_not_conversation(self) -> None:
        self.make_call()
        self.assertEqual(self.tts.spoken, [NOTICE, "Hello there."])
        self.assertEqual(self.transport.marks(), ["g1.start", "g1.s0", "g1.s1", "g1.end"])
        self.finish_greeting()
        self.assertEqual(list(self.call.history), [Said("bot", "Hello there.")])

    def test_no_announcement_by_default(self) -> None:
        self.make_call(announcement="")
        self.assertEqual(self.tts.spoken, ["Hello there."])

    def test_the_announcement_is_a_cached_phrase(self) -> None:
        self.assertIn(NOTICE, TurnSettings(announcement_phrase=NOTICE).phrases())
        self.assertNotIn("", TurnSettings().phrases())

    def test_it_needs_recordings(self) -> None:
        self.assertRaises(ConfigError, Settings.load, {}, {"VOICED_RECORDING_ANNOUNCEMENT": NOTICE})
        settings = Settings.load({}, {"VOICED_RECORDING_ANNOUNCEMENT": NOTICE, "VOICED_RECORDINGS": "/tmp/r"})
        self.assertEqual((settings.recordings, settings.recording_retention_days), ("/tmp/r", 30))

    def test_each_line_says_when_it_was_said(self) -> None:
        self.make_call(announcement="")
        started = self.call.record.started_at
        self.finish_greeting()
        self.clock.advance(2.0)
        self.frames("v" * 25 + "." * 12)  # the voice's first frame arrives 2.02 s into the call
        self.clock.advance(0.3)
        self.call.on_transcript("what time do you open", True)
        self.assertEqual(self.call.state, State.SPEAKING)
        turn = self.call.record.turns[0]
        self.assertEqual(turn.caller_at_s, 2.0)  # the frame's start
        reply_sent = self.clock.seconds() - started
        self.assertEqual(turn.bot_at_s, round(reply_sent, 3))  # the line was quiet: it plays at once
