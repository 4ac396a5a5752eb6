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

from tests.e2e.daemon import Daemon, EmulatorProcess, line, logged
from voiced.caller.client import new_sid, place_call


def metric(text: bytes, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text.decode(), re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@inlineCallbacks
def metrics_reach(daemon: Daemon, expected: dict[str, float], timeout_s: float = 10.0):
    """Once /metrics reads ``expected`` (or the deadline passes: the asserts that follow say
    what it read): the daemon ends its side of a call a moment after the caller hears the close."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = daemon.get("/metrics")[1].decode()
        read = {name: re.search(rf"^{name} (\S+)$", text, re.M) for name in expected}
        if all(m and float(m.group(1)) == expected[name] for name, m in read.items()):
            return
        yield deferLater(reactor, 0.1, lambda: None)


class WorkersTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def test_two_workers_share_the_port_metrics_and_readiness_and_a_killed_one_is_replaced(self):
        # Scripted recognition: four calls at once on the emulator's Whisper can outlast the final's
        # wait on a loaded machine, and this test is about the workers, not recognition.
        emulator = EmulatorProcess("--scripted", "--transcript=Goodbye.")
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
        self.assertEqual([ok and r.hung_up_by_bot for ok, r in reports], [True] * 4,
                         [(r.call_sid, r.closed_code, r.errors) if ok else r for ok, r in reports])
        yield metrics_reach(daemon, {"voiced_calls_total": 4.0})
        # Whichever worker answers /metrics, it counts every worker's calls.
        for _ in range(6):
            self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_total"), 4.0)

        pid = int(re.search(r"APP_START pid=(\d+) worker=0/2", "\n".join(starts)).group(1))
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(daemon.lines("APP_START")) < 3 or daemon.get("/health/ready")[0] != 200:
            self.assertLess(time.monotonic(), deadline, daemon.log())
            yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len((yield logged(daemon, "WORKER_EXIT", 1))), 1)  # the supervisor's line, its own writer
        self.assertIn("signal=SIGKILL", daemon.lines("WORKER_EXIT")[0])
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")], reply_timeout_s=30)
        self.assertTrue(report.hung_up_by_bot, report.errors)
        yield metrics_reach(daemon, {"voiced_calls_total": 5.0, "voiced_calls_active": 0.0})
        # The dead worker's counts stay in the sum (counters are cumulative); the new call adds one.
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_total"), 5.0)
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_active"), 0.0)
        self.assertEqual(daemon.stop(), 0)
        self.assertIn("WORKERS_STOPPED", daemon.log())


def app_starts(daemon: Daemon) -> list[tuple[int, int]]:
    """(worker index, pid) of every APP_START so far, in order."""
    return [(int(m.group(2)), int(m.group(1))) for m in
            (re.search(r"APP_START pid=(\d+) worker=(\d+)/", entry) for entry in daemon.lines("APP_START")) if m]


def carrier(daemon: Daemon, call_sid: str) -> tuple[int, int] | None:
    """(worker index, pid) of the worker that took the call, from its CALL_WORKER line."""
    for entry in daemon.lines("CALL_WORKER"):
        m = re.search(rf"CALL_WORKER call={call_sid} worker=(\d+) pid=(\d+)", entry)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def turns_answered(daemon: Daemon, call_sid: str) -> list[int]:
    return [int(m.group(1)) for m in (re.search(rf" TURN call={call_sid} turn=(\d+) ", entry)
                                      for entry in daemon.lines(" TURN ")) if m]


def process_state(pid: int) -> str:
    """R, S, T (stopped), Z ... from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def ready_status(daemon: Daemon) -> int | None:
    try:
        return daemon.get("/health/ready")[0]
    except OSError:  # a loaded machine's 5 s read timeout
        return None


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


class WorkerSteering:
    """Waiting on the daemon's log, and placing calls on the worker a test names."""

    @inlineCallbacks
    def until(self, daemon: Daemon, condition, what: str, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.assertLess(time.monotonic(), deadline, f"{what} after {timeout_s} s:\n{daemon.log()}")
            yield deferLater(reactor, 0.1, lambda: None)

    @inlineCallbacks
    def calls_on(self, daemon: Daemon, worker_pid: int, other_pid: int, scripts: list[list]):
        """Place one call per script, all taken by the worker ``worker_pid``. The workers share
        one accept queue and the kernel does not pick between them at random (one usually wins
        the race), so the other worker is paused (SIGSTOP) until these calls have started: it
        carries no call meanwhile, or only calls this test is about to kill. Returns
        [(call_sid, Deferred firing with (report, monotonic time it ended))]."""
        os.kill(other_pid, signal.SIGSTOP)
        self.addCleanup(_resume, other_pid)
        try:
            yield self.until(daemon, lambda: process_state(other_pid) == "T", f"worker pid {other_pid} not stopped")
            calls = []
            for script in scripts:
                sid = new_sid("CA")
                # A loaded machine's first transcriptions can take 20 s: wait long for replies.
                ended = place_call(reactor, daemon.media_url, script, call_sid=sid, reply_timeout_s=60,
                                   max_duration_s=180)
                calls.append((sid, ended.addCallback(lambda report: (report, time.monotonic()))))
            yield self.until(daemon, lambda: all(carrier(daemon, sid) for sid, _ in calls), "calls not started")
        finally:
            _resume(other_pid)
        for sid, _ in calls:
            self.assertEqual(carrier(daemon, sid)[1], worker_pid)
        return calls


class WorkerKilledMidCallTests(WorkerSteering, TestCase):
    """SIGKILL one of two workers while both carry calls: the other's calls go on, the dead one's
    end at once for the carrier (the TCP connection closes), and its replacement takes calls."""

    timeout = 300

    @inlineCallbacks
    def test_killed_worker_is_replaced_while_the_other_workers_calls_go_on(self):
        daemon = Daemon(args=["--workers", "2"])
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        pids = dict(app_starts(daemon))
        self.assertEqual(sorted(pids), [0, 1])
        victim, survivor = pids[0], pids[1]
        # Three turns after the greeting: the kill comes once every call has had its first answered.
        script = [line("Where are you located?"), line("Can I talk to a person?"), line("Thank you, goodbye.")]
        doomed = yield self.calls_on(daemon, victim, survivor, [script, script])
        surviving = yield self.calls_on(daemon, survivor, victim, [script, script])
        calls = doomed + surviving
        yield self.until(daemon, lambda: all(turns_answered(daemon, sid) for sid, _ in calls),
                         "not every call's first turn answered", timeout_s=120)
        self.assertEqual([sid for sid, ended in calls if ended.called], [], "a call ended before the kill")

        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        doomed_results = yield DeferredList([ended for _, ended in doomed])
        for (sid, _), (ok, (report, ended_at)) in zip(doomed, doomed_results):
            # The carrier's side: the TCP connection closes with the process (no WebSocket close,
            # hence 1006), at once, not when some timeout gives up on a silent call.
            self.assertTrue(report.connected, report.errors)
            self.assertEqual(report.closed_code, 1006, report.errors)
            self.assertTrue(any("connection lost" in e for e in report.errors), report.errors)
            self.assertLess(ended_at - killed_at, 10.0, f"call {sid} took this long to close")
            self.assertLess(len(report.turns), len(script), "the call was over before the kill")

        # The surviving worker's calls are not disturbed: every turn answered, the bot hangs up.
        surviving_results = yield DeferredList([ended for _, ended in surviving])
        for (sid, _), (ok, (report, _)) in zip(surviving, surviving_results):
            self.assertEqual(report.errors, [], sid)
            self.assertTrue(report.hung_up_by_bot, sid)
            self.assertEqual(report.closed_code, 1000, sid)
            self.assertEqual(len(report.turns), len(script), sid)
            # The worker's log line can reach the file after the caller has seen the close.
            yield self.until(daemon, lambda: daemon.lines(f"CALL_END call={sid} turns=3 "), f"no CALL_END for {sid}")
            self.assertEqual(turns_answered(daemon, sid), [1, 2, 3], sid)

        # The supervisor noticed, logged, and replaced the dead worker, and only it.
        yield self.until(daemon, lambda: len(app_starts(daemon)) == 3, "no replacement worker")
        exits = yield logged(daemon, "WORKER_EXIT", 1)  # the supervisor's line, its own writer
        self.assertEqual(len(exits), 1, exits)
        self.assertIn(f"WORKER_EXIT worker=0 pid={victim} signal=SIGKILL", exits[0])
        index, replacement = app_starts(daemon)[2]
        self.assertEqual(index, 0)
        self.assertNotIn(replacement, (victim, survivor))
        self.assertEqual(len(daemon.lines(f"WORKER_START worker=0 pid={replacement}")), 1)
        self.assertIn(process_state(survivor), ("R", "S"))
        yield self.until(daemon, lambda: ready_status(daemon) == 200, "not ready again")
        workers = daemon.get_json("/health/ready")["workers"]
        self.assertEqual((workers["ready"], workers["of"]), (2, 2))

        # The replacement takes new calls.
        [(sid, ended)] = yield self.calls_on(daemon, replacement, survivor, [[line("Goodbye.")]])
        report, _ = yield ended
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot)
        yield logged(daemon, f"CALL_END call={sid} ", 1)  # the log writer is a moment behind
        self.assertEqual(turns_answered(daemon, sid), [1])

        yield metrics_reach(daemon, {"voiced_calls_total": 5.0, "voiced_calls_active": 0.0})
        # Every call counted, the dead worker's included; none still active (its gauge died with it).
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_total"), 5.0)
        self.assertEqual(metric(daemon.get("/metrics")[1], "voiced_calls_active"), 0.0)
        self.assertEqual(daemon.stop(), 0)


class MaxCallsAcrossWorkersTests(WorkerSteering, TestCase):
    """``--max-calls`` is the daemon's total: a worker with room takes calls the other cannot,
    and a worker with none of the calls refuses once the others have them all."""

    timeout = 300

    @inlineCallbacks
    def test_max_calls_counts_every_workers_calls(self):
        daemon = Daemon(args=["--workers", "2", "--max-calls", "2"])
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        pids = dict(app_starts(daemon))
        busy, idle = pids[0], pids[1]
        # Both on worker 0: past half the limit on one worker, within the daemon's.
        script = [line("Where are you located?"), line("Thank you, goodbye.")]
        calls = yield self.calls_on(daemon, busy, idle, [script, script])
        # Worker 1 carries nothing, and still refuses: the daemon is full.
        os.kill(busy, signal.SIGSTOP)
        try:
            yield self.until(daemon, lambda: process_state(busy) == "T", "worker 0 not stopped")
            refused = yield place_call(reactor, daemon.media_url, [line("Hello")], connect_timeout_s=10)
        finally:
            _resume(busy)
        self.assertFalse(refused.connected, refused.errors)
        self.assertIn("503", " ".join(refused.errors))
        self.assertEqual(len((yield logged(daemon, "CALLS_FULL active_calls=2 max_calls=2", 1))), 1, daemon.log())
        for _, ended in calls:
            report, _ = yield ended
            self.assertTrue(report.hung_up_by_bot, report.errors)
        # Room again once they have ended, on whichever worker.
        yield self.until(daemon, lambda: metric(daemon.get("/metrics")[1], "voiced_calls_active") == 0.0,
                         "calls still active")
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")], reply_timeout_s=60)
        self.assertTrue(report.hung_up_by_bot, report.errors)
        self.assertEqual(daemon.stop(), 0)
