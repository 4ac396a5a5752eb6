"""End to end as Asterisk's chan_websocket: a real daemon (twistd) with a shared secret
and a journal, on the local engines, called by voiced-call's Asterisk wire (what
``Dial(WebSocket/voiced/c(ulaw)f(json))`` sends: MEDIA_START, binary mu-law, DTMF_END,
MEDIA_MARK_PROCESSED; Basic auth on the upgrade)."""

from __future__ import annotations

import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, line, logged, shared_daemon, shared_journal
from voiced.caller.carriers.asterisk import AsteriskWebSocket
from voiced.caller.carriers.base import HangUp
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine

SECRET = "asterisk-e2e-secret"


class ObservedAsterisk(AsteriskWebSocket):
    """The real wire; the test also keeps the carrier-neutral events it read."""

    seen: list = []

    def read(self, data: bytes, is_binary: bool) -> list:
        events = super().read(data, is_binary)
        ObservedAsterisk.seen.extend(e for e in events if not is_binary)
        return events


class AsteriskCallTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        # One daemon for these tests: each looks at its own calls, and counts from where it begins.
        self.journal = shared_journal("asterisk")
        self.daemon = shared_daemon(env={"VOICED_ASTERISK_SECRET": SECRET, "VOICED_JOURNAL": self.journal})
        self.url = f"ws://127.0.0.1:{self.daemon.port}/media/asterisk"

    @inlineCallbacks
    def test_a_call_greeting_turn_barge_in_dtmf_and_the_bots_hang_up(self):
        ObservedAsterisk.seen = []
        report = yield place_call(reactor, self.url, [
            line("Where are you located?"),
            line("Sorry, what time do you open on Saturday?", barge_in_ms=600),
            CallerLine(audio=b"", text="[dtmf 0]", dtmf="0"),
            line("Thank you, goodbye."),
        ], carrier=ObservedAsterisk, auth_token=SECRET, custom_parameters={"From": "+972501234567"},
            reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(report.carrier, "asterisk")
        call = report.call_sid
        bot = [e for e in self.daemon.lines(" BOT ") if f"call={call}" in e]
        self.assertIn("Riverside Clinic", bot[0], "the greeting is heard")
        self.assertTrue(any("42 River Road" in e for e in bot), "a turn is answered")
        # Barge-in: FLUSH_MEDIA, soon after the caller started talking over the bot.
        self.assertEqual(len(report.clears), 1)
        self.assertLessEqual(report.turns[1].clear_after_onset_ms, BARGE_IN_MS + 100)
        self.assertTrue(any(r.interrupted for r in report.replies))
        self.assertTrue(any("8 AM" in e for e in bot), "the interrupting question is answered")
        # DTMF reaches the agent; marks were Asterisk's echoes (JSON control, 22.8+).
        self.assertTrue(any(f"DTMF call={call} digit=0" in e for e in self.daemon.lines("DTMF")))
        self.assertTrue(any("receptionist" in e for e in bot))
        self.assertTrue(report.marks_echoed)
        self.assertTrue(any(f"call={call} carrier=asterisk audio=mulaw/8000 playout=carrier" in e
                            for e in self.daemon.lines("CARRIER")))
        # The bot's hang-up: a HANGUP command, then the close.
        self.assertIn(HangUp("HANGUP"), ObservedAsterisk.seen)
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        yield deferLater(reactor, 1.0, lambda: None)  # the journal's commit follows the call's end
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT carrier, call_sid, stream_sid, from_number, playout FROM calls "
                              "WHERE call_sid = ?", (call,)).fetchall()
        self.assertEqual(rows, [("asterisk", call, report.stream_sid, "+972501234567", "carrier")])

    @inlineCallbacks
    def test_a_wrong_or_missing_secret_is_refused_with_403(self):
        rejected = len(self.daemon.lines("MEDIA_REJECTED carrier=asterisk"))
        carried = self.daemon.lines("CARRIER call=")
        for secret in (None, "wrong"):
            report = yield place_call(reactor, self.url, [line("Hello?")], carrier="asterisk", auth_token=secret,
                                      max_duration_s=5)
            self.assertFalse(report.connected)
            self.assertTrue(any("403" in e for e in report.errors), report.errors)
        refused = yield logged(self.daemon, "MEDIA_REJECTED carrier=asterisk", rejected + 2)
        self.assertEqual(len(refused) - rejected, 2)
        self.assertEqual(self.daemon.lines("CARRIER call="), carried, "no call got through")

    @inlineCallbacks
    def test_an_older_asterisk_in_plain_text_gets_voiceds_own_playout(self):
        """Before 20.18 / 22.8 / 23.2 there is no MARK_MEDIA: voiced paces the bot's audio and
        fires its own marks (a MARK_MEDIA sent anyway would be an error in the report)."""
        report = yield place_call(reactor, self.url, [line("Thank you, goodbye.")], carrier=PlainTextAsterisk,
                                  auth_token=SECRET, reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(len(report.replies), 2)  # the greeting, the goodbye
        self.assertTrue(any(f"call={report.call_sid} carrier=asterisk audio=mulaw/8000 playout=local" in e
                            for e in self.daemon.lines("CARRIER")))
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)


class PlainTextAsterisk(AsteriskWebSocket):
    @classmethod
    def new_call(cls, setup, plain_text: bool = True):
        return super().new_call(setup, plain_text=True)
