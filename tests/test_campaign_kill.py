"""A real SIGKILL half-way: a process runs a 50-row campaign over a journal file (the writer
thread, SQLite's durability), is killed after 25 dials, and a new process over the same files
finishes it. Each number is called once (twice for its busy retry), none forgotten."""

from __future__ import annotations

import json
import os
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from voiced.journal import store
from voiced.outbound import campaign_store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 50
SAFETY_TIMEOUT_S = 120  # a hung child fails the test instead of hanging it; not a speed bound


class Child(ProcessProtocol):
    def __init__(self, kill_after_dials: int | None = None) -> None:
        self.lines: list[str] = []
        self.stderr = b""
        self._buffer = b""
        self._kill_after = kill_after_dials
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.lines.append(line.decode())
            dials = sum(1 for text in self.lines if text.startswith("dialled"))
            if self._kill_after is not None and dials == self._kill_after:
                self._kill_after = None
                self.transport.signalProcess("KILL")

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


def spawn(test: TestCase, child: Child, *args: str) -> Deferred:
    env = {**os.environ, "PYTHONPATH": ROOT}
    reactor.spawnProcess(child, sys.executable, [sys.executable, "-m", "tests.fakes.campaign_child", *args],
                         env=env, path=ROOT)
    return child.ended.addTimeout(SAFETY_TIMEOUT_S, reactor)


class KillTests(TestCase):
    async def test_sigkill_half_way_then_restart(self):
        directory = tempfile.mkdtemp()
        journal, carrier = os.path.join(directory, "journal.sqlite3"), os.path.join(directory, "carrier.jsonl")
        self.addCleanup(lambda: [os.unlink(os.path.join(directory, n)) for n in os.listdir(directory)]
                        and os.rmdir(directory))
        first = Child(kill_after_dials=25)
        code = await spawn(self, first, journal, carrier, "--create", str(ROWS))
        self.assertIsNone(code, f"killed, not exited: {first.lines} {first.stderr.decode()}")
        conn = store.open_read_only(journal)
        (campaign_id,) = [r[0] for r in conn.execute("SELECT campaign_id FROM campaigns")]
        left = campaign_store.progress(conn, campaign_id)
        conn.close()
        self.assertGreater(left["states"]["pending"], 0, "killed half-way")
        self.assertEqual(left["state"], "running")

        second = Child()
        code = await spawn(self, second, journal, carrier)
        self.assertEqual(code, 0, second.stderr.decode())
        self.assertIn("running 1", second.lines)

        events = [json.loads(line) for line in open(carrier, encoding="utf-8")]
        dials: dict[str, list[dict]] = {}
        for event in events:
            if event["event"] == "dial":
                dials.setdefault(event["to"], []).append(event)
        expected = {f"+1555020{n:04d}": 2 if n % 10 == 7 else 1 for n in range(1, ROWS + 1)}
        self.assertEqual({to: len(d) for to, d in dials.items()}, expected,
                         "every number called once, twice for its busy retry; none twice, none forgotten")
        for to, made in dials.items():
            self.assertEqual([d["key"].rsplit("/", 1)[1] for d in made], [str(n + 1) for n in range(len(made))])
        # The calls-per-second limit, in each process: never more than 20 starts within 1 s.
        for pid in {e["pid"] for e in events if e["event"] == "dial"}:
            starts = sorted(e["t"] for e in events if e["event"] == "dial" and e["pid"] == pid)
            for i in range(len(starts) - 20):
                self.assertGreaterEqual(starts[i + 20] - starts[i], 1.0 - 1e-3)
        conn = store.open_read_only(journal)
        final = campaign_store.progress(conn, campaign_id)
        conn.close()
        self.assertEqual((final["state"], final["outcomes"], final["retried"]), ("done", {"answered": ROWS}, 5))
