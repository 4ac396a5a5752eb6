"""voiced.lag on a Clock: lateness observed per tick, a stall logged once, the loop's round trip."""

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from voiced.lag import LagMonitor


class LagMonitorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.samples: list[tuple[str, float]] = []
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def stalls(self) -> list[dict]:
        return [e for e in self.events if "REACTOR_STALL" in e.get("log_format", "")]

    def test_lateness_is_observed_and_a_stall_logged_once_per_episode(self) -> None:
        monitor = LagMonitor(self.clock, lambda kind, ms: self.samples.append((kind, round(ms))), stall_ms=250)
        monitor.start()
        self.clock.advance(0.1)  # on time
        self.clock.advance(0.4)  # the reactor was busy 300 ms past the tick's due time
        self.clock.advance(0.4)  # and again: the same episode
        self.clock.advance(0.1)  # caught up
        self.clock.advance(0.5)  # a new stall
        self.assertEqual(self.samples, [("reactor", 0), ("reactor", 300), ("reactor", 300), ("reactor", 0),
                                        ("reactor", 400)])
        self.assertEqual([round(e["lag"]) for e in self.stalls()], [300, 400])
        monitor.stop()
        self.clock.advance(1)
        self.assertEqual(len(self.samples), 5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_round_trip_at_a_time_and_none_without_a_loop(self) -> None:
        pending: list = []
        have_loop = [False]

        def round_trip(done) -> bool:
            if have_loop[0]:
                pending.append(done)
            return have_loop[0]

        monitor = LagMonitor(self.clock, lambda kind, ms: self.samples.append((kind, round(ms))), round_trip)
        monitor.start()
        self.clock.advance(0.1)  # no loop yet: nothing sent, nothing observed
        have_loop[0] = True
        self.clock.advance(0.1)
        self.clock.advance(0.1)  # the first trip is still out: no second one
        self.assertEqual(len(pending), 1)
        self.clock.advance(0.03)
        pending.pop()()  # back on the reactor 130 ms after it left
        self.clock.advance(0.07)
        self.assertEqual(len(pending), 1)
        self.assertIn(("speech_loop", 130), self.samples)
        monitor.stop()

    def test_a_loop_that_never_answers_is_logged_as_a_stall_once(self) -> None:
        pending: list = []
        monitor = LagMonitor(self.clock, lambda kind, ms: self.samples.append((kind, round(ms))),
                             lambda done: pending.append(done) or True, stall_ms=250)
        monitor.start()
        for _ in range(10):  # a second without the trip coming back
            self.clock.advance(0.1)
        stalls = [e for e in self.events if "SPEECH_LOOP_STALL" in e.get("log_format", "")]
        self.assertEqual([round(e["ms"]) for e in stalls], [300])
        self.assertEqual(len(pending), 1)
        pending.pop()()  # it ran at last: the long trip is observed, and trips go on
        self.assertIn(("speech_loop", 900), self.samples)
        self.clock.advance(0.1)
        self.assertEqual(len(pending), 1)
        monitor.stop()

    def test_a_trip_that_returns_at_once_does_not_block_the_next(self) -> None:
        trips = []

        def round_trip(done) -> bool:
            trips.append(1)
            done()
            return True

        monitor = LagMonitor(self.clock, lambda kind, ms: None, round_trip)
        monitor.start()
        self.clock.advance(0.1)
        self.clock.advance(0.1)
        self.assertEqual(len(trips), 2)
        monitor.stop()
