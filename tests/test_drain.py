"""The graceful stop on a Clock: the drain's decisions, and the call's drain goodbye."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.turn import CallWithAgent
from voiced.drain import Drain


class FakeCall:
    def __init__(self):
        self.goodbyes = 0

    def drain_goodbye(self):
        self.goodbyes += 1


class FakeService:
    def __init__(self, calls=0):
        self.calls = {FakeCall() for _ in range(calls)}


class DrainTests(SynchronousTestCase):
    def make(self, calls):
        self.clock = Clock()
        self.service = FakeService(calls)
        self.stops = []
        self.drain = Drain(self.service.calls, self.clock, 300, stop=lambda: self.stops.append(self.clock.seconds()),
                           goodbye_grace_s=15)
        return self.drain

    def test_no_calls_stops_at_once(self):
        self.make(0).on_signal("SIGTERM")
        self.assertEqual(self.stops, [0])

    def test_waits_for_the_last_call_to_end(self):
        drain = self.make(2)
        drain.on_signal("SIGTERM")
        self.assertTrue(drain.draining)
        self.clock.advance(100)
        self.service.calls.pop()
        drain.call_ended()
        self.assertEqual(self.stops, [])
        self.clock.advance(20)
        self.service.calls.pop()
        drain.call_ended()
        self.assertEqual(self.stops, [120])
        self.clock.advance(1000)
        self.assertEqual(self.stops, [120], "the timeout was cancelled")

    def test_timeout_plays_the_goodbye_then_stops_after_a_grace(self):
        drain = self.make(2)
        calls = list(self.service.calls)
        drain.on_signal("SIGTERM")
        self.clock.advance(299.9)
        self.assertEqual([c.goodbyes for c in calls], [0, 0])
        self.clock.advance(0.1)
        self.assertEqual([c.goodbyes for c in calls], [1, 1])
        self.assertEqual(self.stops, [])
        self.service.calls.clear()  # the goodbyes played and the sockets closed
        drain.call_ended()
        self.assertEqual(self.stops, [300])

    def test_a_goodbye_that_never_ends_is_bounded(self):
        drain = self.make(1)
        drain.on_signal("SIGTERM")
        self.clock.advance(300)
        self.clock.advance(15)
        self.assertEqual(self.stops, [315])

    def test_second_signal_stops_at_once_and_only_once(self):
        drain = self.make(1)
        drain.on_signal("SIGTERM")
        self.clock.advance(5)
        drain.on_signal("SIGINT")
        self.assertEqual(self.stops, [5])
        self.service.calls.clear()
        drain.call_ended()
        self.clock.advance(1000)
        self.assertEqual(self.stops, [5])


class DrainGoodbyeTests(CallWithAgent, SynchronousTestCase):
    def test_drain_goodbye_cuts_the_reply_and_hangs_up_after_the_cached_phrase(self):
        self.make_call(idle_reprompt_ms=0)
        self.conversation.answers.append(lambda sink: sink.text("A very long story begins here. And goes on."))
        self.say("tell me a story")
        self.call.on_mark("r2.start")
        self.transport.sent.clear()
        self.call.drain_goodbye()
        self.assertEqual(self.transport.sent[0], ("clear",))
        self.frames("v" * 20)  # the caller cannot talk over the goodbye
        self.assertNotIn(("clear",), self.transport.sent[1:])
        self.echo_all_marks()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.call.drain_goodbye()  # a second one (a late timer) does nothing
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_the_drain_phrase_is_in_the_phrase_cache_list(self):
        from voiced.call.model import TurnSettings

        settings = TurnSettings()
        self.assertIn(settings.drain_goodbye_phrase, settings.phrases())
