"""End to end: a real daemon with VOICED_AGENT=webhook, the user's application as a real
HTTP server on loopback, calls over a real WebSocket."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, line
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from voiced.caller.client import place_call
from voiced.signing import verify

SECRET = "s3cret-for-tests"


class WebhookAgentCallTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.app = RecordingApp()
        self.server = start_server(self, self.app)
        self.twilio = RecordingApp()  # Twilio's REST API, on loopback
        self.twilio.answer(Canned.json({"sid": "CA", "status": "completed"}))
        twilio = start_server(self, self.twilio)
        self.daemon = Daemon(env={
            "VOICED_AGENT": "webhook",
            "VOICED_WEBHOOK_URL": self.server.url("/voice"),
            "VOICED_WEBHOOK_SECRET": SECRET,
            "VOICED_GREETING": "Hello, this is Acme.",
            "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
            "TWILIO_AUTH_TOKEN": "rest-token",
            "VOICED_TWILIO_API_BASE": twilio.url("").rstrip("/"),
        })
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    @inlineCallbacks
    def test_a_call_driven_by_the_webhook(self):
        self.app.answer(
            Canned.json({"say": "We open at nine."}, delay_s=4.0),  # slow: the filler goes first
            Canned(status=500, body=b"oops"),  # failing: the apology, and the call goes on
            Canned.json({"say": ["Thanks for calling.", "Goodbye!"], "actions": [{"type": "end_call"}]}),
        )
        report = yield place_call(
            reactor, self.daemon.media_url,
            [line("What time do you open?"), line("Are you there?"), line("Goodbye.")],
            custom_parameters={"From": "+15550001111", "To": "+15550002222", "tenant": "acme"},
            # A caller who, after "One moment.", waits for the answer (voiced-call speaks after a pause).
            pause_ms=3500, reply_gap_ms=4500, reply_timeout_s=10,
        )
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot, "end_call hangs up once the goodbye has played")
        self.assertEqual(report.closed_code, 1000)
        # ... and completes the call through Twilio's REST API.
        completed = yield self.twilio.request(0)
        self.assertEqual(completed.path, f"/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/"
                                         f"{report.call_sid}.json")
        self.assertEqual(completed.form(), {"Status": ["completed"]})
        self.assertEqual(completed.basic_auth(), ("AC0123456789abcdef0123456789abcdef", "rest-token"))

        self.assertEqual(len(self.app.received), 3)
        for request in self.app.received:
            self.assertTrue(verify(SECRET, request.body, request.headers.get("x-voiced-signature")))
        first, _, third = (r.json() for r in self.app.received)
        self.assertEqual(first["call"], {"sid": report.call_sid, "from": "+15550001111", "to": "+15550002222",
                                         "parameters": {"From": "+15550001111", "To": "+15550002222",
                                                        "tenant": "acme"}, "language": "en-US",
                                         "carrier": "twilio", "direction": "inbound", "variables": {},
                                         "dial_id": ""})
        self.assertEqual((first["turn"], first["event"]), (1, None))
        self.assertIn("open", first["text"].lower())
        self.assertEqual(first["history"], [{"role": "bot", "text": "Hello, this is Acme.", "interrupted": False}])
        # The third request's history has the answer the caller heard, not the filler or the apology.
        bot_lines = [h["text"] for h in third["history"] if h["role"] == "bot"]
        self.assertEqual(bot_lines, ["Hello, this is Acme.", "We open at nine."])
        self.assertEqual([h["role"] for h in third["history"]], ["bot", "caller", "bot", "caller"])

        slow, failed = report.turns[0], report.turns[1]
        # Measured from each turn's transcript (under load the transcript itself may be slow).
        turn_one = [entry for entry in self.daemon.lines(" TURN ") if " turn=1 " in entry][0]
        stt_final_ms = int(turn_one.split("STT_FINAL_MS=")[1].split()[0])
        self.assertLess(slow.first_reply_audio_ms - stt_final_ms, 2500, "the filler long before the 4 s answer")
        # The apology within 3 s of the turn's transcript (under load the transcript itself may be slow).
        turn_two = [entry for entry in self.daemon.lines(" TURN ") if " turn=2 " in entry][0]
        stt_final_ms = int(turn_two.split("STT_FINAL_MS=")[1].split()[0])
        self.assertLess(failed.first_reply_audio_ms - stt_final_ms, 3000, turn_two)
        self.assertEqual(len(self.daemon.lines("FILLER call=")), 1)
        self.assertEqual(len(self.daemon.lines("AGENT_FAILED call=")), 1)
        self.assertIn("HTTP 500", self.daemon.lines("AGENT_FAILED call=")[0])
