"""End to end over Vonage's Voice API WebSocket: a real daemon (twistd) with the Vonage
signature secret, the local engines, calls placed by voiced-call's Vonage wire (binary
16 kHz L16 frames, websocket:dtmf, notify echoes, websocket:cleared), the NCCO answer,
and the journal."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, line, logged, shared_daemon, shared_journal
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine
from voiced.carrier import media_token
from voiced.carrier.vonage.signature import sign_hs256

SECRET = "e2e-vonage-signature-secret"


class VonageCallTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        # One daemon for these tests: each looks at its own calls, and counts from where it begins.
        self.journal = shared_journal("vonage")
        self.daemon = shared_daemon(env={"VOICED_VONAGE_SIGNATURE_SECRET": SECRET, "VOICED_JOURNAL": self.journal})
        self.url = f"ws://127.0.0.1:{self.daemon.port}/media/vonage"

    def call_lines(self, word: str, call_id: str) -> list[str]:
        return [entry for entry in self.daemon.lines(word) if f"call={call_id}" in entry]

    @inlineCallbacks
    def test_a_call_greeting_turn_barge_in_dtmf_and_the_bots_hang_up(self):
        report = yield place_call(reactor, self.url, [
            line("Where are you located?"),
            line("Sorry, what time do you open on Saturday?", barge_in_ms=600),
            CallerLine(b"", "[dtmf 0]", dtmf="0"),
            line("Goodbye."),
        ], carrier="vonage", auth_token=SECRET)
        self.assertEqual(report.errors, [])
        call = report.call_sid
        yield logged(self.daemon, f"CALL_END call={call} ", 1)  # the log writer is a moment behind
        # Whisper hears Vonage's 16 kHz as it came, the turn machine its 8 kHz mu-law copy.
        self.assertIn("carrier=vonage audio=pcm_s16le/16000 playout=carrier stt_audio=pcm_s16le/16000",
                      self.call_lines("CARRIER", call)[0])
        bot = self.call_lines(" BOT ", call)
        self.assertIn("Riverside Clinic", bot[0])  # the greeting
        self.assertIn("42 River Road", bot[1])  # a turn answered
        # Barge-in: the second question cut the address short with Vonage's clear.
        self.assertEqual(len(report.clears), 1)
        self.assertLessEqual(report.turns[1].clear_after_onset_ms, BARGE_IN_MS + 100)
        self.assertTrue(any(reply.interrupted for reply in report.replies))
        self.assertIn("8 AM", bot[2])
        # The key press reached the script agent, which answers 0 with a receptionist.
        self.assertEqual(len(self.call_lines("DTMF", call)), 1)
        self.assertIn("receptionist", bot[3])
        # The bot's goodbye played to the end (notify echoed), then it closed the socket: Vonage's hang-up.
        self.assertIn("actions=EndCall", bot[4])
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        self.assertGreater(len(report.marks_echoed), 4)
        record = yield self.journal_record(call)
        self.assertEqual(record[:2], ("vonage", report.stream_sid))

    @inlineCallbacks
    def journal_record(self, call_id: str):
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
                row = db.execute("SELECT carrier, stream_sid, playout FROM calls WHERE call_sid = ?",
                                 (call_id,)).fetchone()
            if row is not None or time.monotonic() > deadline:
                return row
            yield deferLater(reactor, 0.2, lambda: None)  # the journal's commit follows the call's end

    @inlineCallbacks
    def test_only_what_vonage_signed_gets_in(self):
        media_rejected = len(self.daemon.lines("MEDIA_REJECTED"))
        answer_rejected = len(self.daemon.lines("ANSWER_REJECTED"))
        # The NCCO answer: 403 without Vonage's JWT; with it, the NCCO and a media token for the call.
        query = {"to": "447700900000", "from": "447700900001", "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                 "conversation_uuid": "CON-3fa85f64-5717-4562-b3fc-2c963f66afa6"}
        answer_url = f"http://127.0.0.1:{self.daemon.port}/answer/vonage?{urllib.parse.urlencode(query)}"
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(answer_url, timeout=5)
        self.assertEqual(caught.exception.code, 403)
        digest = hashlib.sha256(json.dumps(query, separators=(",", ":")).encode()).hexdigest()
        jwt = sign_hs256({"iat": int(time.time()), "jti": "e2e", "iss": "Vonage", "payload_hash": digest}, SECRET)
        request = urllib.request.Request(answer_url, headers={"Authorization": f"Bearer {jwt}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            [connect] = json.loads(response.read())
        endpoint = connect["endpoint"][0]
        self.assertEqual((endpoint["uri"], endpoint["content-type"], endpoint["authorization"]),
                         (f"wss://127.0.0.1:{self.daemon.port}/media/vonage", "audio/l16;rate=16000",
                          {"type": "vonage"}))
        token = endpoint["headers"].pop(media_token.PARAMETER)
        self.assertEqual(endpoint["headers"], query)
        # The media socket: a forged upgrade is refused 403; no media token closes 1008 before any call.
        forged = yield place_call(reactor, self.url, [line("Goodbye.")], carrier="vonage", auth_token="wrong")
        self.assertFalse(forged.connected)
        self.assertIn("403", " ".join(forged.errors))
        unsigned = yield place_call(reactor, self.url, [line("Goodbye.")], carrier="vonage", reply_timeout_s=3)
        self.assertEqual(unsigned.closed_code, 1008)
        self.assertEqual(unsigned.replies, [])
        # The stream of the call the NCCO was made for gets in with its token.
        signed = yield place_call(reactor, self.url, [line("Goodbye.")], carrier="vonage", auth_token=SECRET,
                                  call_sid=query["uuid"], custom_parameters={media_token.PARAMETER: token})
        self.assertTrue(signed.hung_up_by_bot, signed.errors)
        refused = yield logged(self.daemon, "MEDIA_REJECTED", media_rejected + 2)
        self.assertEqual(len(refused) - media_rejected, 2)
        self.assertEqual(len(self.daemon.lines("ANSWER_REJECTED")) - answer_rejected, 1)
        self.assertEqual(self.daemon.get_json("/health")["active_calls"], 0)
