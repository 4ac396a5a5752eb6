"""End to end: an outbound call. ``voiced-dial +15550100 --var name=Dana`` asks a real
daemon (twistd, local engines) to place a call; the daemon asks Twilio's REST API, here
a loopback fake (tests/fakes/twilio_rest.py) that answers as Twilio does, posts signed
status callbacks and opens the call's media stream as Twilio would, with the callee
saying "Hello?". The bot greets only then, with the call's variable, and the journal
holds the outbound call and its status history."""

from __future__ import annotations

import io
import os
import sys

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import REPO, Daemon, dialling_through, logged
from tests.fakes.twilio_rest import FakeTwilio
from voiced.caller.session import CallerLine
from voiced.journal import cli as records
from voiced.journal import dials, store
from voiced.tts.local import EspeakSynthesizer

ACCOUNT = "AC" + "5e" * 16
TOKEN = "twilio-auth-token-e2e"
ADMIN = "admin-token-e2e"
DIALOG = """[greeting]
say = Hello {name}, this is Riverside Clinic calling about your appointment.
[reprompt]
say = Sorry, I didn't catch that.
[fallback]
say = I heard you say: {text}.
[intent bye]
match = goodbye, bye
say = Goodbye {name}.
hangup = yes
"""


class OutboundCallTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        hello = EspeakSynthesizer("en-US").synthesize_blocking("Hello?")
        # The callee picks up and, hearing nothing, says "Hello?" after 1.5 s; then listens.
        self.twilio = FakeTwilio(ACCOUNT, TOKEN, lines=[CallerLine(hello, "Hello?")], reply_timeout_s=1.5)
        rundir, env = dialling_through(self, self.twilio, ADMIN, "voiced-e2e-outbound-")
        self.journal, self.admin_url = env["VOICED_JOURNAL"], env["VOICED_PUBLIC_URL"]
        script = os.path.join(rundir, "reminder.dialog")
        with open(script, "w", encoding="utf-8") as f:
            f.write(DIALOG)
        self.daemon = Daemon(env={
            **env, "VOICED_SCRIPT": script,
            # Long enough that only the callee's "Hello?" can release the greeting.
            "VOICED_OUTBOUND_HELLO_TIMEOUT_MS": "10000",
            # Who speaks first without answering-machine detection (FirstWords); tests/e2e/test_amd.py has it on.
            "VOICED_AMD": "off",
        })
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def dial(self, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICED_")}
        env.update(PYTHONPATH=REPO, VOICED_ADMIN_TOKEN=ADMIN, VOICED_ADMIN_URL=self.admin_url)
        return getProcessOutputAndValue(sys.executable, ["-m", "voiced.outbound.cli", *args], env=env, path=REPO)

    async def test_voiced_dial_places_the_call_the_callee_speaks_first_and_the_journal_keeps_it(self):
        out, err, code = await self.dial("+15550100", "--var", "name=Dana", "--wait")
        report = await self.twilio.calls[0].done
        printed = out.decode().splitlines()
        self.assertEqual(code, 0, (printed, err.decode(), self.daemon.log()[-3000:]))
        dial_id = printed[0]
        self.assertRegex(dial_id, r"^d-[0-9a-f]{16}$")
        self.assertEqual([line.split()[1] for line in printed[1:]],
                         ["queued", "initiated", "ringing", "answered", "completed"])

        call = self.twilio.calls[0]
        self.assertEqual((call.field("To"), call.field("From")), ("+15550100", "+15550111"))
        self.assertEqual(call.parameters["voiced_dial"], dial_id)
        self.assertEqual([code for _, code in call.callbacks], [204] * 4, "every signed callback accepted")
        self.assertEqual(report.errors, [])
        self.assertTrue(report.connected)
        # The bot waited for the callee: its first words came after the end of "Hello?".
        hello = report.turns[0]
        self.assertIsNotNone(hello.speech_end_s)
        self.assertGreater(report.replies[0].first_audio_s, hello.speech_end_s)
        await logged(self.daemon, f"CALL_END call={call.sid} ", 1)  # the log writer is a moment behind
        self.assertEqual(len(self.daemon.lines("FIRST_WORDS")), 1)
        self.assertIn("greeting_after=hello", self.daemon.lines("FIRST_WORDS")[0])
        greeting = [line for line in self.daemon.lines(" BOT ") if f"call={call.sid}" in line]
        self.assertTrue(greeting, self.daemon.log()[-3000:])
        self.assertIn("Hello Dana, this is Riverside Clinic", greeting[0])

        self.assertEqual(self.daemon.stop(), 0)
        conn = store.open_read_only(self.journal)
        rows = store.calls_by_sid(conn, call.sid)
        self.assertEqual([(r["direction"], r["dial_id"]) for r in rows], [("outbound", dial_id)])
        self.assertEqual([e["status"] for e in dials.events(conn, dial_id)],
                         ["queued", "initiated", "ringing", "answered", "completed"])
        conn.close()
        shown = io.StringIO()
        self.assertEqual(records.main(["--journal", self.journal, "show", dial_id], shown), 0)
        self.assertIn("status completed", shown.getvalue())
        self.assertIn('variables {"name": "Dana"}', shown.getvalue())

    async def test_voiced_dial_without_the_token_is_refused(self):
        env_token = self.dial("+15550100", "--token", "wrong")
        out, err, code = await env_token
        self.assertEqual(code, 1)
        self.assertIn("HTTP 401", err.decode())
        self.assertEqual(self.twilio.calls, [])
