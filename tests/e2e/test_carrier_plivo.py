"""End to end as Plivo: a real daemon (twistd) signed with a Plivo auth token and REST
credentials pointing at a loopback Plivo, its answer URL fetched as Plivo fetches it
(X-Plivo-Signature-V3), and the call streamed to the URL that answer gave by voiced-call
speaking Plivo's Audio Streams protocol, on the local engines."""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlencode, urlsplit, urlunsplit

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, Daemon, line, logged
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine
from voiced.carrier.plivo.signature import plivo_signature

TOKEN = "e2e-plivo-auth-token"
AUTH_ID = "MAE2EPLIVOTEST000000"
PUBLIC = "https://voice.example.com"


class PlivoCallTests(TestCase):
    timeout = 150

    def setUp(self) -> None:
        self.rest = RecordingApp()  # Plivo's REST API, answering as Plivo documents a hang-up
        self.rest.answer(Canned(status=204))
        server = start_server(self, self.rest)
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        self.daemon = Daemon(env={"VOICED_PLIVO_AUTH_TOKEN": TOKEN, "VOICED_PLIVO_AUTH_ID": AUTH_ID,
                                  "VOICED_PUBLIC_URL": PUBLIC, "VOICED_PLIVO_API_BASE": server.url(""),
                                  "VOICED_JOURNAL": self.journal})
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def answer(self, form: dict[str, str], token: str = TOKEN) -> tuple[int, str]:
        """POST the answer URL as Plivo does, signed for the public URL it was configured with."""
        nonce = uuid.uuid4().hex
        signature = plivo_signature(token, "POST", PUBLIC + "/answer/plivo", nonce, {k: [v] for k, v in form.items()})
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/answer/plivo",
                                         data=urlencode(form).encode(),
                                         headers={"X-Plivo-Signature-V3": signature,
                                                  "X-Plivo-Signature-V3-Nonce": nonce})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stream_url(self, xml: str) -> str:
        """The <Stream> URL of the answer, reached on loopback (the proxy in front of voiced's job)."""
        url = urlsplit(re.search(r"<Stream [^>]*>([^<]+)</Stream>", xml).group(1).replace("&amp;", "&"))
        self.assertEqual((url.scheme, url.netloc, url.path), ("wss", "voice.example.com", "/media/plivo"))
        return urlunsplit(("ws", f"127.0.0.1:{self.daemon.port}", url.path, url.query, ""))

    def journal_row(self, call_id: str) -> tuple[str, str] | None:
        conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT call_sid, carrier FROM calls WHERE call_sid = ?", (call_id,)).fetchone()
        finally:
            conn.close()

    @inlineCallbacks
    def test_a_plivo_call_greeting_turn_barge_in_dtmf_and_hang_up(self):
        call_uuid = str(uuid.uuid4())
        status, xml = self.answer({"CallUUID": call_uuid, "From": "+15551234", "To": "+15559876",
                                   "Direction": "inbound", "Event": "StartApp"})
        self.assertEqual(status, 200, xml)
        report = yield place_call(reactor, self.stream_url(xml), [
            line("Where are you located?"),
            line("Sorry, what time do you open on Saturday?", barge_in_ms=600),
            CallerLine(b"", "[dtmf 0]", dtmf="0"),
            line("Thank you, goodbye."),
        ], carrier="plivo", call_sid=call_uuid)
        self.assertEqual(report.errors, [])
        self.assertEqual(report.carrier, "plivo")
        bot = [entry for entry in self.daemon.lines(" BOT ") if f"call={call_uuid}" in entry]
        self.assertIn("Riverside Clinic", bot[0], "the greeting is heard")
        self.assertTrue(any("8 AM" in entry for entry in bot), "the turn after the barge-in is answered")
        # Plivo's playedStream echoes time the playback, as Twilio's marks do.
        turns = [entry for entry in self.daemon.lines(" TURN ") if f"call={call_uuid}" in entry]
        self.assertRegex(turns[1], r"turn=2 .*TOTAL_LATENCY_MS=\d+ PLAYBACK_START_MS=\d+$")
        self.assertEqual(self.daemon.lines("PROTOCOL_ERROR"), [])
        # Barge-in: the reply being cut is dropped with Plivo's clearAudio, within a frame or so of detection.
        self.assertEqual(len(report.clears), 1)
        self.assertLessEqual(report.turns[1].clear_after_onset_ms, BARGE_IN_MS + 100)
        self.assertTrue(any(r.interrupted for r in report.replies))
        # DTMF reaches the agent, whose answer to the key is played.
        self.assertEqual(len(self.daemon.lines(f"DTMF call={call_uuid} digit=0")), 1)
        self.assertTrue(any("receptionist" in entry for entry in bot))
        # The bot's hang-up: the stream closes 1000 and Plivo's REST API is told to hang up the call.
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        hang_up = yield self.rest.request(0)
        self.assertEqual((hang_up.method, hang_up.path), ("DELETE", f"/v1/Account/{AUTH_ID}/Call/{call_uuid}/"))
        self.assertEqual(hang_up.basic_auth(), (AUTH_ID, TOKEN))
        deadline = time.monotonic() + 10
        while self.journal_row(call_uuid) is None and time.monotonic() < deadline:
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.journal_row(call_uuid), (call_uuid, "plivo"))

    @inlineCallbacks
    def test_unsigned_requests_and_streams_without_a_valid_token_are_refused(self):
        form = {"CallUUID": "c-1", "From": "+15551234", "To": "+15559876"}
        self.assertEqual(self.answer(form, token="wrong-token")[0], 403)
        request = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}/answer/plivo",
                                         data=urlencode(form).encode())
        with self.assertRaises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen(request, timeout=5)
        self.assertEqual(unsigned.exception.code, 403)
        status, xml = self.answer(form)
        self.assertEqual(status, 200)
        url = self.stream_url(xml)
        no_token = yield place_call(reactor, url.split("?")[0] + "?call=c-1", [line("Goodbye.")], carrier="plivo",
                                    call_sid="c-1")
        forged = yield place_call(reactor, url.replace("from=%2B15551234", "from=%2B15550000"), [line("Goodbye.")],
                                  carrier="plivo", call_sid="c-1")
        for report in (no_token, forged):
            self.assertFalse(report.connected)
            self.assertIn("403", " ".join(report.errors))
        self.assertEqual(len((yield logged(self.daemon, "MEDIA_REJECTED carrier=plivo", 2))), 2)
        self.assertEqual(len(self.daemon.lines("ANSWER_REJECTED carrier=plivo")), 2)
