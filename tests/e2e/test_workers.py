"""``--workers 2``: two voiced processes on one port, one metrics view, a killed worker replaced."""

from __future__ import annotations

import os
import re
import signal
import time

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon
from tests.e2e.test_calls import line
from tests.e2e.test_google import EmulatorProcess
from voiced.caller.client import place_call


def metric(text: bytes, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text.decode(), re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


class WorkersTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def test_two_workers_share_the_port_metrics_and_readiness_and_a_killed_one_is_replaced(self):
        emulator = EmulatorProcess()
        self.addCleanup(emulator.kill)
        daemon = Daemon(env=emulator.google_env(), args=["--workers", "2"])
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        starts = daemon.lines("APP_START")
        self.assertEqual(len(starts), 2, starts)
        self.assertEqual(sorted(re.search(r"worker=(\d/\d)", s).group(1) for s in starts), ["0/2", "1/2"])
        workers = daemon.get_json("/health/ready")["workers"]
        self.assertEqual((workers["ready"], workers["of"]), (2, 2))

        reports = yield DeferredList([place_call(reactor, daemon.media_url, [line("Goodbye.")], reply_timeout_s=30)
                                      for _ in range(4)], consumeErrors=True)
        self.assertEqual([ok and r.hung_up_by_bot for ok, r in reports], [True] * 4)
        yield deferLater(reactor, 2.5, lambda: None)
        # Whichever worker answers /metrics, it counts every worker's calls.
        for _ in range(6):
            self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_total"), 4.0)

        pid = int(re.search(r"APP_START pid=(\d+) worker=0/2", "\n".join(starts)).group(1))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(daemon.lines("APP_START")) < 3 or daemon.get("/health/ready")[0] != 200:
            self.assertLess(time.monotonic(), deadline, daemon.log())
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(daemon.lines("WORKER_EXIT")), 1)
        self.assertIn("signal=SIGKILL", daemon.lines("WORKER_EXIT")[0])
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")], reply_timeout_s=30)
        self.assertTrue(report.hung_up_by_bot, report.errors)
        yield deferLater(reactor, 2.5, lambda: None)
        # The dead worker's counts stay in the sum (counters are cumulative); the new call adds one.
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_total"), 5.0)
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_active"), 0.0)
        self.assertEqual(daemon.stop(), 0)
        self.assertIn("WORKERS_STOPPED", daemon.log())
