"""End to end: the Hebrew line voiced was made for, with VOICED_LANGUAGE=he-IL and nothing
else Hebrew-specific, on the Google engines against `voiced-emulator`, which returns
scripted Hebrew transcripts in order (its energy-based mode: no model hears Hebrew here).

What the caller hears is checked in the daemon's BOT and PHRASE lines and in the journal:
the greeting, every answer, the filler, the apology and the idle goodbye are the Hebrew
dialog's and the Hebrew phrase catalog's texts, and every caller turn is answered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, EmulatorProcess, line, logged
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from voiced.agent.dialog import load_dialog
from voiced.caller.client import place_call
from voiced.config import Settings

HOURS_QUESTION = "מתי אתם פתוחים?"
GOODBYE = "תודה, להתראות"
CATALOG = Settings.load({}, {"VOICED_LANGUAGE": "he-IL"}).phrase_catalog()
DIALOG = load_dialog("", "he-IL")


def journal_turns(path: str) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT caller_text, reply_text, event FROM turns ORDER BY call_id, seq").fetchall()


class HebrewLineTests(TestCase):
    timeout = 180

    def start(self, *transcripts: str, **env: str) -> Daemon:
        emulator = EmulatorProcess("--scripted", *(f"--transcript=he-IL={t}" for t in transcripts))
        self.addCleanup(emulator.kill)
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-hebrew-"), "calls.db")
        daemon = Daemon(env=emulator.google_env(VOICED_LANGUAGE="he-IL", VOICED_JOURNAL=self.journal, **env))
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        return daemon

    def bot_lines(self, daemon: Daemon, call_sid: str) -> list[str]:
        return [e for e in daemon.lines(" BOT ") if f"call={call_sid}" in e]

    @inlineCallbacks
    def test_the_script_agent_answers_in_hebrew_and_hangs_up_with_the_hebrew_goodbye(self):
        daemon = self.start(HOURS_QUESTION, GOODBYE)
        # The scripted emulator hears speech by its energy: any voice asks the scripted questions.
        report = yield place_call(reactor, daemon.media_url, [line("What time do you open?"), line("Goodbye.")],
                                  reply_timeout_s=15)
        yield deferLater(reactor, 1.0, lambda: None)  # the journal's commit follows the call's end
        self.assertTrue(report.hung_up_by_bot, (report.errors, daemon.log()[-4000:]))
        ended = yield logged(daemon, "CALL_END", 1)  # every line of the call is written before it
        greeting, hours, goodbye = self.bot_lines(daemon, report.call_sid)
        self.assertIn(" ".join(DIALOG.greeting), greeting)
        self.assertIn(DIALOG.intents[0].reply[0], hours)  # [intent hours]
        self.assertIn("להתראות", goodbye)
        self.assertIn("turns=2", "".join(ended))
        turns = journal_turns(self.journal)
        self.assertEqual([t[0] for t in turns], [HOURS_QUESTION, GOODBYE])
        self.assertEqual(turns[0][1], " ".join(DIALOG.intents[0].reply))
        self.assertFalse(daemon.lines("CONFIG_WARNING"), "he-IL on Google needs no tuning")

    @inlineCallbacks
    def test_filler_apology_and_idle_goodbye_are_the_hebrew_catalogs(self):
        app = RecordingApp()
        server = start_server(self, app)
        app.answer(
            Canned.json({"say": "אנחנו פותחים בשמונה."}, delay_s=3.0),  # slow: the filler goes first
            Canned(status=500, body=b"oops"),  # failing: the apology, and the call goes on
        )
        daemon = self.start(HOURS_QUESTION, "אתם שם?", VOICED_AGENT="webhook", VOICED_WEBHOOK_URL=server.url("/voice"),
                            VOICED_IDLE_REPROMPT_MS="6000", VOICED_IDLE_MAX_REPROMPTS="0")
        # After its two questions the caller stays silent: the idle goodbye ends the call.
        report = yield place_call(reactor, daemon.media_url, [line("What time do you open?"), line("Are you there?")],
                                  pause_ms=3500, reply_gap_ms=4500, reply_timeout_s=15, hangup_grace_s=20)
        yield deferLater(reactor, 1.0, lambda: None)
        self.assertTrue(report.hung_up_by_bot, (report.errors, daemon.log()[-4000:]))
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        self.assertIn(CATALOG["greeting"], self.bot_lines(daemon, report.call_sid)[0])
        phrases = {e.split(" kind=")[1].split()[0]: e for e in daemon.lines("PHRASE") if report.call_sid in e}
        self.assertEqual(sorted(phrases), ["apology", "filler", "idle_goodbye"], daemon.log()[-6000:])
        for kind, entry in phrases.items():
            self.assertIn(repr(CATALOG[kind]), entry)
        bot = " ".join(self.bot_lines(daemon, report.call_sid))
        for text in (CATALOG["filler"], "אנחנו פותחים בשמונה.", CATALOG["apology"], CATALOG["idle_goodbye"]):
            self.assertIn(text, bot)
        first = app.received[0].json()
        self.assertEqual((first["text"], first["call"]["language"]), (HOURS_QUESTION, "he-IL"))
        turns = journal_turns(self.journal)
        self.assertEqual([t[0] for t in turns], [HOURS_QUESTION, "אתם שם?"])
        self.assertEqual(turns[0][1], "אנחנו פותחים בשמונה.")
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
            record = json.loads(db.execute("SELECT record FROM calls").fetchone()[0])
        self.assertIn("HTTP 500", record["turns"][1]["agent_error"])
