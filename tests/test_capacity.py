"""Capacity: calls beyond max_calls are refused before any call state, never accepted and left deaf."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.call_counts import CallCounts
from voiced.carrier.base import Refused
from voiced.config import CALLS_PER_WORKER, Settings
from voiced.service import VoicedService


class MaxCallsTests(SynchronousTestCase):
    def test_upgrades_beyond_max_calls_get_503_until_a_call_ends(self) -> None:
        service = VoicedService(Settings.load({}, {"VOICED_MAX_CALLS": "2"}), reactor=Clock())
        service.ready = True
        service.calls.update({"call-1", "call-2"})  # type: ignore[arg-type]
        denied = self.assertRaises(Refused, service.admit)
        self.assertEqual(denied.status, 503)
        self.assertEqual(service.metrics.calls_refused_total._value.get(), 1)
        service.calls.discard("call-2")  # type: ignore[arg-type]
        service.admit()  # room again: no exception

    def test_default_is_sized_for_the_machine(self) -> None:
        import os

        self.assertEqual(Settings.load({}, {}).call_limit, CALLS_PER_WORKER)
        cores = os.cpu_count() or 1
        self.assertEqual(Settings.load({"workers": str(cores + 1)}, {}).call_limit, CALLS_PER_WORKER * cores)
        self.assertEqual(Settings.load({}, {"VOICED_MAX_CALLS": "7"}).call_limit, 7)


class CallCountsTests(SynchronousTestCase):
    def test_each_worker_sees_the_others_calls(self) -> None:
        import os

        path = os.path.join(self.mktemp())
        supervisor = CallCounts(path, 3)  # creates the file: no calls yet
        workers = [CallCounts(path, 3) for _ in range(3)]
        self.assertEqual([w.others(i) for i, w in enumerate(workers)], [0, 0, 0])
        workers[0].publish(0, 5)
        workers[2].publish(2, 7)
        self.assertEqual([w.others(i) for i, w in enumerate(workers)], [7, 12, 5])
        supervisor.publish(2, 0)  # worker 2 died: its calls ended with it
        self.assertEqual(workers[1].others(1), 5)
        for counts in workers + [supervisor]:
            counts.close()
