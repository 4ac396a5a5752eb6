"""End to end: each way a call ends is recorded in words an operator reads, the same in
the console (its calls API, or its event stream) and in the journal (the SQLite file):
``bot hung up after goodbye``, ``caller hung up``, ``carrier ended the stream``, ``idle
timeout``, ``max call duration``, ``drain``, ``error: ...``.

Real daemons (twistd) on the local engines, real calls over WebSockets with voiced-call's
caller. A short dialog and short goodbyes keep each call to a few seconds; the reasons
whose options agree share one daemon."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sqlite3
import tempfile
import urllib.error
import urllib.request

from autobahn.twisted.websocket import WebSocketClientProtocol, connectWS
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, line, patient_client_factory
from voiced.caller.carriers.base import CallSetup
from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.client import place_call
from voiced.caller.console_feed import open_console_feed
from voiced.carrier.link import MAX_PROTOCOL_ERRORS

CONSOLE_TOKEN = "e2e-end-reasons"
VONAGE_SECRET = "e2e-end-reasons-vonage-secret"  # a Vonage caller hangs up by closing, without a message

DIALOG = """\
[greeting]
say = Hi.
[reprompt]
say = Sorry?
[fallback]
say = I heard {text}.
[intent goodbye]
match = bye, goodbye, good bye
say = Bye!
hangup = yes
"""

# A test fails fast rather than waiting out the defaults, and every goodbye is short.
QUICK = {"VOICED_IDLE_GOODBYE_PHRASE": "Bye now.", "VOICED_TIME_LIMIT_PHRASE": "Time is up.",
         "VOICED_DRAIN_GOODBYE_PHRASE": "We are closing.", "VOICED_CONSOLE_TOKEN": CONSOLE_TOKEN}


def _dialog_file() -> str:
    fd, path = tempfile.mkstemp(prefix="voiced-e2e-", suffix=".dialog")
    with os.fdopen(fd, "w") as f:
        f.write(DIALOG)
    return path


def start_daemon(env: dict[str, str]) -> tuple[Daemon, str]:
    """A daemon with its journal; returns it and the journal's path."""
    journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
    daemon = Daemon(env={**QUICK, "VOICED_SCRIPT": _dialog_file(), "VOICED_JOURNAL": journal, **env})
    daemon.wait_ready()
    return daemon, journal


_shared: tuple[Daemon, str] | None = None


def shared_daemon() -> tuple[Daemon, str]:
    """One daemon for the reasons whose options agree (trial has no setUpClass): the idle
    reprompt is short, and a caller that speaks answers well within it."""
    global _shared
    if _shared is None:
        _shared = start_daemon({"VOICED_IDLE_REPROMPT_MS": "1500", "VOICED_IDLE_MAX_REPROMPTS": "0",
                                "VOICED_VONAGE_SIGNATURE_SECRET": VONAGE_SECRET})
        atexit.register(_shared[0].stop)
    return _shared


def console_end_reason(daemon: Daemon, call_sid: str) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/console/api/calls/{call_sid}",
                                     headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    return body["summary"]["end_reason"] if not body["live"] else None


def journal_end_reason(journal: str, call_sid: str) -> str | None:
    if not os.path.exists(journal):
        return None
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        row = db.execute("SELECT end_reason FROM calls WHERE call_sid = ?", (call_sid,)).fetchone()
    return row[0] if row else None


@inlineCallbacks
def eventually(read, *args, timeout_s: float = 5.0):
    """``read(*args)`` once it is not None: the record follows the close by a moment."""
    for _ in range(int(timeout_s / 0.1)):
        value = read(*args)
        if value is not None:
            return value
        yield deferLater(reactor, 0.1, lambda: None)
    return read(*args)


@inlineCallbacks
def assert_recorded(test: TestCase, daemon: Daemon, journal: str, call_sid: str, reason: str):
    """The console's calls API and the journal both give ``reason``."""
    in_console = yield eventually(console_end_reason, daemon, call_sid)
    in_journal = yield eventually(journal_end_reason, journal, call_sid)
    test.assertEqual((in_console, in_journal), (reason, reason), daemon.lines(f"call={call_sid}"))


class EndReasonTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_bot_hung_up_after_goodbye(self):
        daemon, journal = shared_daemon()
        report = yield place_call(reactor, daemon.media_url, [line("Goodbye.")], hangup_grace_s=10)
        self.assertTrue(report.hung_up_by_bot)
        yield assert_recorded(self, daemon, journal, report.call_sid, "bot hung up after goodbye")

    @inlineCallbacks
    def test_carrier_ended_the_stream(self):
        """Twilio tells a caller's hang-up with a stop message, then closes."""
        daemon, journal = shared_daemon()
        report = yield place_call(reactor, daemon.media_url, [], hangup_grace_s=0.2)
        self.assertFalse(report.hung_up_by_bot)
        # voiced's close, crossing the caller's, arrives whole: not a reset (1006)
        self.assertEqual((report.errors, report.closed_code), ([], 1000))
        yield assert_recorded(self, daemon, journal, report.call_sid, "carrier ended the stream")

    @inlineCallbacks
    def test_caller_hung_up(self):
        """Vonage just closes the WebSocket when the caller hangs up."""
        daemon, journal = shared_daemon()
        report = yield place_call(reactor, f"ws://127.0.0.1:{daemon.port}/media/vonage", [], carrier="vonage",
                                  auth_token=VONAGE_SECRET, hangup_grace_s=0.2)
        self.assertEqual((report.errors, report.hung_up_by_bot), ([], False))
        yield assert_recorded(self, daemon, journal, report.call_sid, "caller hung up (close 1000)")

    @inlineCallbacks
    def test_idle_timeout(self):
        daemon, journal = shared_daemon()
        report = yield place_call(reactor, daemon.media_url, [], hangup_grace_s=10)
        self.assertTrue(report.hung_up_by_bot, "the bot hangs up on a silent caller")
        yield assert_recorded(self, daemon, journal, report.call_sid, "idle timeout")

    @inlineCallbacks
    def test_error_closes_the_stream_and_says_why(self):
        """A stream that keeps breaking Twilio's protocol (a start again and again) is closed."""
        daemon, journal = shared_daemon()
        wire = TwilioStream.new_call(CallSetup())
        closed: Deferred[int | None] = Deferred()

        class Flooding(WebSocketClientProtocol):
            def onOpen(self) -> None:
                for message in wire.opening():
                    self.sendMessage(message.encode())
                for _ in range(MAX_PROTOCOL_ERRORS):
                    self.sendMessage(wire.start().encode())

            def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
                closed.callback(code)

        factory = patient_client_factory(daemon.media_url)
        factory.protocol = Flooding
        connectWS(factory)
        code = yield closed
        self.assertEqual(code, 4003)
        yield assert_recorded(self, daemon, journal, wire.call_id,
                                   "error: too many malformed messages (close 4003)")


class LimitTests(TestCase):
    """A daemon of its own: its call limit would end every other test's call."""

    timeout = 60

    @inlineCallbacks
    def test_max_call_duration(self):
        daemon, journal = start_daemon({"VOICED_MAX_CALL_S": "2"})
        self.addCleanup(daemon.stop)
        report = yield place_call(reactor, daemon.media_url, [], hangup_grace_s=10)
        self.assertTrue(report.hung_up_by_bot)
        yield assert_recorded(self, daemon, journal, report.call_sid, "max call duration")

    @inlineCallbacks
    def test_drain(self):
        """SIGTERM drains: the call outlives the drain timeout, hears the goodbye, and the daemon
        exits. The console is gone by then: its event stream told the end as it happened."""
        daemon, journal = start_daemon({"VOICED_DRAIN_TIMEOUT_S": "1"})
        self.addCleanup(daemon.stop)
        feed = yield ensureDeferred(open_console_feed(
            reactor, f"http://127.0.0.1:{daemon.port}/console/api/events", CONSOLE_TOKEN))
        self.addCleanup(feed.close)
        call = place_call(reactor, daemon.media_url, [], hangup_grace_s=10)
        yield deferLater(reactor, 0.5, lambda: None)  # the call is up: the greeting plays
        daemon.process.send_signal(signal.SIGTERM)
        report = yield call
        self.assertTrue(report.hung_up_by_bot)
        yield feed.when_ended([report.call_sid], 5.0)
        self.assertEqual(feed.end_reason(report.call_sid), "drain")
        in_journal = yield eventually(journal_end_reason, journal, report.call_sid)
        self.assertEqual(in_journal, "drain")
