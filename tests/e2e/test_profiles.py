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
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BIN, Daemon
from tests.e2e.test_calls import constructions
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
HEBREW_GREETING = load_dialog("", "he-IL").greeting[0]
ENGLISH_GREETING = load_dialog("", "en-US").greeting[0]


def voiced_call(daemon: Daemon, call_sid: str, *args: str) -> dict:
    """voiced-call (the CLI, Twilio's side) says nothing: it hears the greeting and hangs up."""
    done = subprocess.run([os.path.join(BIN, "voiced-call"), daemon.media_url, "--call-sid", call_sid, *args,
                           "--hangup-grace", "1", "--json", "--no-transcribe"],
                          capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        raise AssertionError(f"voiced-call exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout)


class ProfilesTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="voiced-e2e-profiles-")
        path = os.path.join(directory, "profiles.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(PROFILES)
        self.journal = os.path.join(directory, "calls.db")
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
        for call_sid, *args in calls:
            report = yield deferToThread(voiced_call, self.daemon, call_sid, *args)
            self.assertEqual(report["calls"][0]["errors"], [], report)

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
