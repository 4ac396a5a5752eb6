"""End to end: one daemon on the local engines with a profiles file (VOICED_PROFILES), an
English profile on the default front desk and a Hebrew one on the Hebrew dialog voiced
ships. Calls placed by the real caller (``voiced-call --param profile=hebrew``, none, and
``--param profile=nope``) each run in their profile's language: the greeting each caller
hears (the daemon's BOT lines and the journal) is its dialog's, the journal names the
profile, a name outside the allow-list gets the default with PROFILE_REFUSED in the log,
and no call builds anything (voiced_constructions_total stays flat).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BIN, Daemon, EmulatorProcess, constructions, logged
from voiced.agent.dialog import load_dialog

PROFILES = """
default = "english"

[profiles.english]
language = "en-US"

[profiles.hebrew]
language = "he-IL"
agent = "script"

[numbers]
"+97225550100" = "hebrew"
"""
HEBREW_DIALOG, ENGLISH_DIALOG = load_dialog("", "he-IL"), load_dialog("", "en-US")
HEBREW_GREETING, ENGLISH_GREETING = HEBREW_DIALOG.greeting[0], ENGLISH_DIALOG.greeting[0]


def voiced_call(daemon: Daemon, call_sid: str, *args: str) -> dict:
    """voiced-call (the CLI, Twilio's side): without a --say it hears the greeting and hangs up."""
    done = subprocess.run([os.path.join(BIN, "voiced-call"), daemon.media_url, "--call-sid", call_sid, *args,
                           "--hangup-grace", "1", "--json", "--no-transcribe"],
                          capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        raise AssertionError(f"voiced-call exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout)


def profiles_file(text: str) -> str:
    path = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-profiles-"), "profiles.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


class ProfilesTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        path = profiles_file(PROFILES)
        self.journal = os.path.join(os.path.dirname(path), "calls.db")
        self.daemon = Daemon(env={"VOICED_PROFILES": path, "VOICED_JOURNAL": self.journal})
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def bot_lines(self, call_sid: str) -> list[str]:
        return [entry for entry in self.daemon.lines(" BOT ") if f"call={call_sid}" in entry]

    def journal_calls(self) -> dict[str, tuple[str, str, str]]:
        """call sid -> (the profile column, the record's profile, the record's language)."""
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT call_sid, profile, record FROM calls").fetchall()
        return {sid: (profile, json.loads(record)["profile"], json.loads(record)["language"])
                for sid, profile, record in rows}

    @inlineCallbacks
    def journal_of(self, count: int):
        """The journal's calls, once all ``count`` are committed (each follows its call's end)."""
        for _ in range(150):
            calls = self.journal_calls()
            if len(calls) >= count:
                return calls
            yield deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"the journal has {len(self.journal_calls())} calls, not {count}")

    @inlineCallbacks
    def test_two_languages_on_one_daemon_and_a_refused_profile(self):
        ready = self.daemon.lines("PROFILES ")
        self.assertEqual(len(ready), 1, ready)
        self.assertIn("hebrew=(language=he-IL stt=local tts=local agent=script)", ready[0])
        before = constructions(self.daemon)

        calls = [("CAhebrew", "--param", "profile=hebrew"), ("CAenglish",), ("CAnope", "--param", "profile=nope"),
                 ("CAnumber", "--to", "+97225550100")]
        # At once, as calls come: each is its own voiced-call process, and the daemon keeps them apart.
        reports = yield gatherResults([deferToThread(voiced_call, self.daemon, call_sid, *args)
                                       for call_sid, *args in calls], consumeErrors=True)
        for report in reports:
            self.assertEqual(report["calls"][0]["errors"], [], report)
        for call_sid, *_ in calls:  # the log writer is a moment behind the hang-ups (each greeting's BOT line)
            yield logged(self.daemon, f"CALL_END call={call_sid} ", 1)

        self.assertEqual(constructions(self.daemon), before, "a call only borrows what the warm-up built")
        self.assertIn(HEBREW_GREETING, self.bot_lines("CAhebrew")[0])
        self.assertIn(ENGLISH_GREETING, self.bot_lines("CAenglish")[0])
        self.assertIn(ENGLISH_GREETING, self.bot_lines("CAnope")[0])
        self.assertIn(HEBREW_GREETING, self.bot_lines("CAnumber")[0])
        refused = self.daemon.lines("PROFILE_REFUSED")
        self.assertEqual(len(refused), 1, refused)
        self.assertIn("call=CAnope asked=profile=nope profile=english", refused[0])
        chosen = {sid: [e for e in self.daemon.lines("CALL_PROFILE") if f"call={sid}" in e] for sid, *_ in calls}
        self.assertIn("profile=hebrew by=parameter language=he-IL", chosen["CAhebrew"][0])
        self.assertIn("profile=hebrew by=number", chosen["CAnumber"][0])

        journal = yield self.journal_of(len(calls))
        hebrew, english = ("hebrew", "hebrew", "he-IL"), ("english", "english", "en-US")
        self.assertEqual(journal, {"CAhebrew": hebrew, "CAenglish": english, "CAnope": english, "CAnumber": hebrew})


class ProfilesOnGoogleTests(TestCase):
    """Both profiles on Google STT and TTS (``voiced-emulator``, which scripts its transcripts by
    the stream's language code): each call's stream asks for its own language, so the Hebrew
    call hears the Hebrew transcript and the Hebrew dialog's answer, the English call the English."""

    timeout = 180

    @inlineCallbacks
    def test_each_call_streams_and_answers_in_its_profiles_language(self):
        emulator = EmulatorProcess("--scripted", "--transcript=he-IL=מתי אתם פתוחים?",
                                   "--transcript=en-US=What time do you open?")
        self.addCleanup(emulator.kill)
        daemon = Daemon(env=emulator.google_env(VOICED_PROFILES=profiles_file(PROFILES)))
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        # The scripted emulator hears speech by its energy: any voice asks the scripted question.
        reports = yield gatherResults([deferToThread(voiced_call, daemon, call_sid, "--say", "What time do you open?",
                                                     *args)
                                       for call_sid, *args in (("CAhe", "--param", "profile=hebrew"), ("CAen",))],
                                      consumeErrors=True)
        for report in reports:
            self.assertEqual(report["calls"][0]["errors"], [], report)
        for call_sid in ("CAhe", "CAen"):  # the log writer is a moment behind the hang-ups (the answers' BOT lines)
            yield logged(daemon, f"CALL_END call={call_sid} ", 1)

        def bot(call_sid: str) -> list[str]:
            return [e for e in daemon.lines(" BOT ") if f"call={call_sid}" in e]

        def caller(call_sid: str) -> list[str]:
            return [e for e in daemon.lines(" CALLER ") if f"call={call_sid}" in e]

        self.assertIn("מתי אתם פתוחים?", caller("CAhe")[0])
        self.assertIn("What time do you open?", caller("CAen")[0])
        hebrew_hours, english_hours = HEBREW_DIALOG.intents[0], ENGLISH_DIALOG.intents[0]
        self.assertEqual((hebrew_hours.name, english_hours.name), ("hours", "hours"))
        self.assertIn(HEBREW_GREETING, bot("CAhe")[0])
        self.assertIn(hebrew_hours.reply[0], bot("CAhe")[1])
        self.assertIn(ENGLISH_GREETING, bot("CAen")[0])
        self.assertIn(english_hours.reply[0], bot("CAen")[1])
        ready = daemon.lines("PROFILES ")[0]
        self.assertIn("hebrew=(language=he-IL stt=google tts=google agent=script)", ready)
