"""End to end over Exotel's Voicebot protocol: a real daemon (twistd) on the local engines
with its Exotel credentials set, and voiced-call speaking as Exotel's applet (8 kHz PCM
in 100 ms chunks, basic-auth credentials on the upgrade): the greeting heard, a turn
answered, a barge-in stopped with Exotel's clear, a DTMF key reaching the agent, the
bot's hang-up closing the stream (the flow's next applet ends an Exotel call), the
journal's record naming the carrier; wrong credentials refused with 403."""

from __future__ import annotations

import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, line, logged, shared_daemon, shared_journal
from voiced.audio import silence_ulaw
from voiced.caller.carriers.exotel import CHUNK_MS
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine

SECRET = "voiced-e2e:0f6b2c9a"


class ExotelCallTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        # One daemon for these tests: each looks at its own calls, and counts from where it begins.
        self.journal = shared_journal("exotel")
        self.daemon = shared_daemon(env={"VOICED_EXOTEL_SECRET": SECRET, "VOICED_JOURNAL": self.journal})
        self.url = f"ws://127.0.0.1:{self.daemon.port}/media/exotel"

    def lines_of(self, word: str, call_sid: str) -> list[str]:
        return [entry for entry in self.daemon.lines(word) if f"call={call_sid}" in entry]

    @inlineCallbacks
    def test_a_call_over_exotel(self):
        report = yield place_call(reactor, self.url, [
            line("What time do you open?"),
            line("Sorry, where are you located?", barge_in_ms=600),
            CallerLine(audio=silence_ulaw(300), text="[0]", dtmf="0"),
            line("Thank you, goodbye."),
        ], carrier="exotel", auth_token=SECRET, custom_parameters={"campaign": "e2e"})
        self.assertEqual(report.errors, [], "every message the daemon sent kept Exotel's protocol and chunk rules")
        self.assertEqual(report.carrier, "exotel")
        yield logged(self.daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        bot = self.lines_of(" BOT ", report.call_sid)
        self.assertIn("Riverside Clinic", bot[0], "the greeting")
        self.assertTrue(report.replies[0].audio, "the greeting was heard")
        self.assertTrue(any("8 AM" in entry for entry in bot), "the turn is answered")
        # The question's first words came before the barge-in was decided (Exotel's chunks make
        # that 100 ms later than on other carriers): the transcript still begins with them.
        self.assertTrue(any("River Road" in entry for entry in bot), "the interrupting question is answered")
        self.assertEqual(len(report.clears), 1, "the barge-in stops the bot with Exotel's clear")
        self.assertTrue(any(r.interrupted for r in report.replies))
        barge = report.turns[1]
        self.assertIsNotNone(barge.clear_after_onset_ms)
        # barge_in_ms, plus Exotel's 100 ms chunks (speech is heard when its chunk is full, and the
        # sustained-speech check lands a chunk late at worst), plus the network's share
        self.assertLessEqual(barge.clear_after_onset_ms, BARGE_IN_MS + 2 * CHUNK_MS + 100)
        self.assertEqual(len(self.lines_of("DTMF", report.call_sid)), 1)
        self.assertTrue(any("receptionist" in entry for entry in bot), "the key reaches the agent")
        self.assertIn("actions=EndCall", bot[-1])
        self.assertTrue(report.hung_up_by_bot, "the bot hangs up by closing the stream")
        self.assertEqual(report.closed_code, 1000)
        self.assertTrue(report.marks_echoed, "Exotel's mark echoes drive the reply's timing")
        [carrier_line] = self.lines_of("CARRIER", report.call_sid)
        self.assertIn("carrier=exotel audio=pcm_s16le/8000 playout=carrier", carrier_line)

        yield deferLater(reactor, 1.0, lambda: None)  # the journal's commit follows the call's end
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT carrier, stream_sid, parameters, end_reason FROM calls WHERE call_sid = ?",
                              (report.call_sid,)).fetchall()
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][:2], ("exotel", report.stream_sid))
        self.assertEqual(rows[0][3], "bot hung up after goodbye")
        self.assertIn("e2e", rows[0][2])

    @inlineCallbacks
    def test_wrong_credentials_are_refused_403(self):
        rejected = len(self.daemon.lines("MEDIA_REJECTED carrier=exotel"))
        report = yield place_call(reactor, self.url, [line("Hello?")], carrier="exotel", auth_token="voiced-e2e:guess")
        self.assertFalse(report.connected)
        self.assertIn("403", " ".join(report.errors))
        refused = yield logged(self.daemon, "MEDIA_REJECTED carrier=exotel", rejected + 1)
        self.assertEqual(len(refused) - rejected, 1)
        self.assertEqual(self.daemon.get_json("/health")["active_calls"], 0)
