"""Issue 8 against real twistd daemons: SIGTERM drains a call in progress and exits 0
with the call's record in the journal; kill -9 mid-call loses only that call, and the
restarted daemon delivers what the first one could not."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BIN, Daemon, caller_texts, line, logged
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from voiced.caller.client import place_call
from voiced.signing import verify


def journal_rows(path: str) -> list[tuple[str, int, str, float | None]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT call_sid, turn_count, end_reason, delivered_at FROM calls ORDER BY id").fetchall()
    finally:
        conn.close()


def records_cli(*args: str, journal: str) -> str:
    done = subprocess.run([os.path.join(BIN, "voiced-records"), "--journal", journal, *args], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


class DrainTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_sigterm_mid_call_drains_the_call_and_exits_0_with_its_record(self):
        journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        daemon = Daemon(env={"VOICED_JOURNAL": journal}, admin=True)
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        call = place_call(reactor, daemon.media_url, [line("What time do you open?"), line("Thank you, goodbye.")])
        yield deferLater(reactor, 4.5, lambda: None)  # the greeting has played; the caller is talking
        daemon.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        def ready_status() -> int:
            while time.monotonic() - signalled < 5:
                status, _ = daemon.get("/health/ready")
                if status == 503:
                    return status
                time.sleep(0.05)
            return status

        self.assertEqual((yield deferToThread(ready_status)), 503)
        self.assertLess(time.monotonic() - signalled, 1.0, "readiness turns 503 within a second")
        self.assertEqual(daemon.get("/health")[0], 200, "alive while draining: no liveness restart")
        refused = yield place_call(reactor, daemon.media_url, [line("Hello")], connect_timeout_s=5)
        self.assertFalse(refused.connected)
        self.assertIn("503", " ".join(refused.errors))

        report = yield call
        self.assertEqual(report.errors, [])
        self.assertEqual(len(report.replies), 3, "greeting, the turn in progress answered, the goodbye")
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        code = yield deferToThread(daemon.process.wait, 30)
        self.assertEqual(code, 0, daemon.log()[-3000:])
        self.assertEqual(len(daemon.lines("DRAIN_START")), 1)
        self.assertEqual(len(daemon.lines("DRAIN_DONE")), 1)
        rows = journal_rows(journal)
        self.assertEqual([(r[0], r[1]) for r in rows], [(report.call_sid, 2)])

    @inlineCallbacks
    def test_a_second_sigterm_stops_at_once(self):
        daemon = Daemon()
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        call = place_call(reactor, daemon.media_url, [line("What time do you open?")], max_duration_s=30)
        yield deferLater(reactor, 2.0, lambda: None)
        daemon.process.send_signal(signal.SIGTERM)
        yield deferLater(reactor, 0.5, lambda: None)
        daemon.process.send_signal(signal.SIGTERM)
        report = yield call
        self.assertEqual(report.closed_code, 1000, "the call still gets a proper close")
        code = yield deferToThread(daemon.process.wait, 15)
        self.assertEqual(code, 0)
        self.assertEqual(len(daemon.lines("DRAIN_ABORTED")), 1)


class CrashTests(TestCase):
    timeout = 150

    @inlineCallbacks
    def test_kill_9_mid_call_keeps_ended_calls_and_the_restart_delivers_them(self):
        journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        app = RecordingApp()  # answers 500 until told otherwise: nothing gets delivered
        receiver = start_server(self, app)
        env = {"VOICED_JOURNAL": journal, "VOICED_CALL_WEBHOOK_URL": receiver.url("/calls"),
               "VOICED_WEBHOOK_SECRET": "hook-secret"}
        first = Daemon(env=env)
        self.addCleanup(first.stop)
        first.wait_ready()
        ended = yield place_call(reactor, first.media_url, [line("Thank you, goodbye.")])
        self.assertTrue(ended.hung_up_by_bot)
        # What the daemon heard (tiny.en's words move with a 40 ms shift of where the capture starts).
        heard = yield logged(first, f"CALLER call={ended.call_sid} ", 1)
        [caller_text] = caller_texts(heard)
        yield app.request(0)  # its delivery was tried (and refused)
        cut = place_call(reactor, first.media_url, [line("What time do you open?")], max_duration_s=30)
        yield deferLater(reactor, 3.0, lambda: None)
        first.process.kill()
        yield cut
        yield deferToThread(first.process.wait, 10)
        self.assertEqual([r[0] for r in journal_rows(journal)], [ended.call_sid])

        app.answers.clear()
        app.default = Canned(status=204)
        delivered_before = len(app.received)
        second = Daemon(env=env)
        self.addCleanup(second.stop)
        second.wait_ready()
        self.assertEqual(len(second.lines("JOURNAL_OPEN")), 1)
        received = yield app.request(delivered_before)
        self.assertEqual(received.json()["call_sid"], ended.call_sid)
        self.assertTrue(verify("hook-secret", received.body, received.headers["x-voiced-signature"]))
        deadline = time.monotonic() + 10
        while journal_rows(journal)[0][3] is None and time.monotonic() < deadline:
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertIsNotNone(journal_rows(journal)[0][3], "marked delivered")

        # voiced-records reads the running daemon's journal.
        listing = yield deferToThread(records_cli, "list", journal=journal)
        self.assertIn(ended.call_sid, listing)
        shown = yield deferToThread(records_cli, "show", ended.call_sid, journal=journal)
        self.assertIn(f"caller: {caller_text}", shown)
        self.assertIn("TOTAL_LATENCY_MS=", shown)


class SecretsTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def test_no_secret_reaches_a_log_line_a_record_or_a_delivery(self):
        secrets = {"VOICED_TWILIO_AUTH_TOKEN": "twilio-secret-5e1f", "VOICED_WEBHOOK_SECRET": "hook-secret-77aa",
                   "OPENAI_API_KEY": "sk-openai-secret-9c3d", "TWILIO_AUTH_TOKEN": "twilio-secret-5e1f",
                   "TWILIO_ACCOUNT_SID": "ACsecretsoak"}
        journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        app = RecordingApp()
        app.default = Canned(status=204)
        receiver = start_server(self, app)
        daemon = Daemon(env={**secrets, "VOICED_PUBLIC_URL": "https://voice.example.com", "VOICED_JOURNAL": journal,
                             "VOICED_CALL_WEBHOOK_URL": receiver.url("/calls"), "VOICED_LOG_LEVEL": "debug",
                             "VOICED_TWILIO_API_BASE": receiver.url("").rstrip("/")})
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        report = yield place_call(reactor, daemon.media_url, [line("Thank you, goodbye.")],
                                  auth_token=secrets["VOICED_TWILIO_AUTH_TOKEN"],
                                  signed_url="wss://voice.example.com/media")
        self.assertTrue(report.hung_up_by_bot, report.errors)
        delivered = yield app.request(0)
        while delivered.path != "/calls":  # the hang-up's REST request comes first
            delivered = yield app.request(app.received.index(delivered) + 1)
        daemon.stop()
        with open(journal, "rb") as f:
            stored = f.read()
        for path in (journal + "-wal",):
            if os.path.exists(path):
                with open(path, "rb") as f:
                    stored += f.read()
        everything = daemon.log().encode() + stored + delivered.body
        self.assertIn(report.call_sid.encode(), everything)
        for name, value in secrets.items():
            if name != "TWILIO_ACCOUNT_SID":
                self.assertNotIn(value.encode(), everything, f"{name} leaked")
        self.assertNotIn(b"voicedToken", stored + delivered.body, "the media token is not kept in the record")
