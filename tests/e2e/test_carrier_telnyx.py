"""Telnyx end to end: a real daemon (twistd) with the Telnyx public key, media secret and
API key set, a fake Telnyx Call Control API on loopback, and calls placed by voiced-call's
library speaking Telnyx's media streaming wire (``--carrier telnyx``) on the local engines.

The call goes as on Telnyx: the TeXML answer request, signed with Ed25519, returns the
stream URL and the call's media token, which the stream's ``start`` hands back; then
the greeting, a turn, a barge-in stopped with Telnyx's ``clear``, a DTMF key answered by
the agent, and the bot's goodbye ending the call through Call Control's hang-up."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, Daemon, line, logged
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine
from voiced.carrier.telnyx.signature import sign

API_KEY = "KEYe2e0123456789"
MEDIA_SECRET = "e2e-media-secret"


class TelnyxCallTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.telnyx_api = RecordingApp()
        self.telnyx_api.answer(*[Canned.json({"data": {"result": "ok"}})] * 4)
        api = start_server(self, self.telnyx_api)
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        self.daemon = Daemon(env={
            "VOICED_TELNYX_PUBLIC_KEY": base64.b64encode(self.private.public_key().public_bytes_raw()).decode(),
            "VOICED_TELNYX_MEDIA_SECRET": MEDIA_SECRET,
            "VOICED_TELNYX_API_KEY": API_KEY,
            "VOICED_TELNYX_API_BASE": api.url(""),
            "VOICED_JOURNAL": self.journal,
        })
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()
        self.media_url = f"ws://127.0.0.1:{self.daemon.port}/media/telnyx"

    def answer(self, form: dict[str, str], timestamp: int | None = None, signer=None) -> tuple[int, str]:
        """POST the TeXML voice webhook as Telnyx does: a form, signed over "timestamp|body"."""
        body = urllib.parse.urlencode(form).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"telnyx-timestamp": stamp,
                   "telnyx-signature-ed25519": sign(signer or self.private, stamp, body),
                   "content-type": "application/x-www-form-urlencoded"}
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/answer/telnyx", data=body,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def bot_lines(self, call_id: str) -> list[str]:
        return [entry for entry in self.daemon.lines(" BOT ") if f"call={call_id}" in entry]

    @inlineCallbacks
    def test_signed_answer_then_a_whole_call(self):
        call_id = "v3:e2e" + os.urandom(8).hex()
        form = {"AccountSid": "acct-1", "CallSid": call_id, "From": "+15550100", "To": "+15550199"}
        self.assertEqual(self.answer(form, signer=Ed25519PrivateKey.generate())[0], 403, "a bad signature")
        self.assertEqual(self.answer(form, timestamp=int(time.time()) - 400)[0], 403, "a stale timestamp")
        status, texml = self.answer(form)
        self.assertEqual(status, 200)
        self.assertIn(f'<Stream url="wss://127.0.0.1:{self.daemon.port}/media/telnyx"', texml)
        self.assertIn('bidirectionalMode="rtp"', texml)
        token = re.search(r'<Parameter name="voicedToken" value="([^"]+)"/>', texml).group(1)

        report = yield place_call(reactor, self.media_url, [
            line("What time do you open?"),
            line("Sorry, where are you located?", barge_in_ms=600),
            CallerLine(audio=b"", text="[dtmf 0]", dtmf="0"),
            line("Goodbye."),
        ], carrier="telnyx", call_sid=call_id, custom_parameters={"voicedToken": token}, hangup_grace_s=8)
        self.assertEqual(report.errors, [])
        self.assertEqual(report.carrier, "telnyx")
        yield logged(self.daemon, f"CALL_END call={call_id} ", 1)  # the log writer is a moment behind
        bot = self.bot_lines(call_id)
        self.assertIn("Riverside Clinic", bot[0], "the greeting")
        self.assertTrue(any("8 AM" in entry for entry in bot), "the first turn answered")
        # The barge-in: Telnyx's clear arrives within a few frames of the caller's speech onset.
        self.assertGreaterEqual(len(report.clears), 1)
        barge = report.turns[1]
        self.assertIsNotNone(barge.clear_after_onset_ms)
        self.assertLessEqual(barge.clear_after_onset_ms, BARGE_IN_MS + 100)
        self.assertTrue(any(reply.interrupted for reply in report.replies))
        self.assertTrue(any("42 River Road" in entry for entry in bot[2:]),
                        "the interrupting question is answered")
        self.assertTrue(any(f"DTMF call={call_id} digit=0" in entry for entry in self.daemon.lines("DTMF")))
        self.assertTrue(any("receptionist" in entry for entry in bot), "the agent answers the key")
        # The goodbye: Call Control's hang-up, then the stream ends (the fake API cannot close it:
        # the daemon's grace closes it with 1000, as it would were Telnyx slow).
        self.assertIn("actions=EndCall", bot[-1])
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        hangups = [r for r in self.telnyx_api.received if r.path == f"/v2/calls/{call_id}/actions/hangup"]
        self.assertEqual(len(hangups), 1, [r.path for r in self.telnyx_api.received])
        self.assertEqual(hangups[0].headers["authorization"], f"Bearer {API_KEY}")
        self.assertTrue((yield logged(self.daemon, f"TELNYX_REST_OK call={call_id} action=hangup", 1)))

        rows = yield self.journal_rows(call_id)
        self.assertEqual(rows, [(call_id, "telnyx")], "the record names the carrier and its call id")

    @inlineCallbacks
    def test_a_stream_without_the_answers_token_is_refused(self):
        report = yield place_call(reactor, self.media_url, [line("Hello")], carrier="telnyx")
        self.assertEqual(report.closed_code, 1008)
        self.assertEqual(report.replies, [])
        self.assertTrue((yield logged(self.daemon, "MEDIA_REJECTED", 1)))
        forged = yield place_call(reactor, self.media_url, [line("Hello")], carrier="telnyx",
                                  auth_token="not-the-media-secret")
        self.assertEqual(forged.closed_code, 1008)

    @inlineCallbacks
    def journal_rows(self, call_id: str, wait_s: float = 5.0):
        deadline = time.monotonic() + wait_s
        while True:
            conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)
            try:
                rows = conn.execute("SELECT call_sid, carrier FROM calls WHERE call_sid = ?", (call_id,)).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                conn.close()
            if rows or time.monotonic() > deadline:
                return rows
            yield deferLater(reactor, 0.1, lambda: None)
