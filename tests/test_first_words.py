"""Who speaks first: an outbound call's greeting waits for the callee's "Hello?" (or a
short silence); an inbound call's plays at once. Real ``Call``s on a Clock
(tests/turn_harness.py)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.turn_harness import CallOnALine, logged, voice
from voiced.call.first_words import FirstWords
from voiced.call.turn import State

GREETING = "Hello there."


class FirstWordsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.greeted: list[float] = []
        self.first = FirstWords("CA1", self.clock, 2.5, lambda: self.greeted.append(self.clock.seconds()))

    def test_the_end_of_the_first_utterance_releases_the_greeting(self):
        self.clock.advance(1.0)
        self.first.speech_started(1.0)
        self.clock.advance(2.0)  # past the timeout: they are still saying hello
        self.assertEqual(self.greeted, [])
        self.first.speech_ended(3.0)
        self.assertEqual(self.greeted, [3.0])
        self.first.speech_started(4.0)
        self.first.speech_ended(4.5)
        self.assertEqual(self.greeted, [3.0], "once")

    def test_silence_releases_it_after_the_timeout(self):
        self.clock.advance(2.49)
        self.assertEqual(self.greeted, [])
        self.clock.advance(0.01)
        self.assertEqual(self.greeted, [2.5])
        self.assertFalse(self.first.holding)

    def test_closed_it_never_greets(self):
        self.first.close()
        self.clock.advance(10)
        self.assertEqual(self.greeted, [])


class InboundCallTests(CallOnALine):
    def test_an_inbound_call_greets_at_once(self):
        self.make_call()
        self.assertEqual(self.tts.spoken, [GREETING])
        self.assertEqual(self.call.state, State.GREETING)


class OutboundCallTests(CallOnALine):
    direction = "outbound"

    def test_the_callee_says_hello_then_the_bot_greets_and_hello_is_no_turn(self):
        lines = logged(self, "FIRST_WORDS")
        self.make_call(outbound_hello_timeout_ms=2500)
        self.silence(40)  # 0.8 s of the phone picked up
        self.assertEqual(self.tts.spoken, [], "nothing said over the callee's answer")
        self.hear(voice(), 25)  # "Hello?" ...
        self.silence(5)
        self.assertEqual(self.tts.spoken, [])
        self.silence(10)  # ... the end of their utterance
        self.assertEqual(self.tts.spoken, [GREETING])
        self.assertEqual(self.transport.sent.count(("clear",)), 0)
        self.assertEqual(lines[0]["reason"], "hello")
        self.play_out()
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertEqual(self.conversation.asked, [], "the hello is not a turn for the agent")
        self.caller_turn("what time do you open")
        self.assertEqual(self.conversation.asked, ["what time do you open"])

    def test_a_silent_callee_is_greeted_after_the_timeout(self):
        self.make_call(outbound_hello_timeout_ms=2500)
        self.silence(120)  # 2.4 s
        self.clock.advance(0.09)
        self.assertEqual(self.tts.spoken, [])
        self.clock.advance(0.02)
        self.assertEqual(self.tts.spoken, [GREETING])

    def test_a_long_answer_past_the_timeout_is_waited_for_whole(self):
        self.make_call(outbound_hello_timeout_ms=2500)
        self.silence(100)  # 2 s
        self.hear(voice(), 100)  # speaking from 2 s to 4 s: past the timeout
        self.assertEqual(self.tts.spoken, [])
        self.assertEqual(self.transport.sent, [], "no barge-in over a greeting not yet said")
        self.silence(15)
        self.assertEqual(self.tts.spoken, [GREETING])

    def test_no_timeout_means_the_bot_speaks_first_as_on_inbound_calls(self):
        self.make_call(outbound_hello_timeout_ms=0)
        self.assertEqual(self.tts.spoken, [GREETING])

    def test_a_hang_up_while_holding_ends_the_wait(self):
        self.make_call(outbound_hello_timeout_ms=2500)
        self.call.close("websocket closed")
        self.clock.advance(5)
        self.assertEqual(self.tts.spoken, [])
