"""End to end: ``python -m voiced.demo`` as a newcomer runs it (its own daemon on the
local engines, voiced-call placing the call) prints the bot's own words, exactly the
dialog's, not what the caller's Whisper made of them ("the river find clinic").

The daemon reads a short dialog (VOICED_SCRIPT, passed through the demo's environment)
with the front desk's name in it, so that the call takes seconds, not twenty."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import REPO
from voiced.agent.dialog import load_dialog

DIALOG = """\
[greeting]
say = Hello, Riverside Clinic front desk.
[reprompt]
say = Sorry?
[fallback]
say = I heard {text}.
[intent goodbye]
match = bye, goodbye, good bye
say = Thank you for calling the Riverside Clinic. Goodbye!
hangup = yes
"""


class DemoPrintTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dialog = os.path.join(tempfile.mkdtemp(prefix="voiced-demo-"), "short.dialog")
        with open(self.dialog, "w") as f:
            f.write(DIALOG)

    def run_demo(self, *say: str) -> str:
        out = os.path.join(os.path.dirname(self.dialog), "call.wav")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICED_", "TWILIO_"))}
        env["VOICED_SCRIPT"] = self.dialog
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        command = [sys.executable, "-m", "voiced.demo", "--no-stay", "--out", out]
        for text in say:
            command += ["--say", text]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=110)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        return done.stdout

    def test_the_bots_lines_are_the_dialogs_words(self):
        d = deferToThread(self.run_demo, "Thank you, goodbye.")

        def check(printed: str) -> None:
            dialog = load_dialog(self.dialog)
            goodbye = next(i for i in dialog.intents if i.name == "goodbye")
            bot = [line[len("[bot]    "):].split("   (")[0] for line in printed.splitlines()
                   if line.startswith("[bot]")]
            self.assertEqual(bot, [" ".join(dialog.greeting), " ".join(goodbye.reply)], printed)
            self.assertIn("(the bot's own words, from the daemon's console", printed)

        return d.addCallback(check)
