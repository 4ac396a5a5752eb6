"""Placing a call: the request (checked against what the official ``twilio`` package sends
for the same ``calls.create``), against a loopback Twilio REST API; retries and refusals;
the Dialer's status history and its matching of a media stream to its dial."""

from __future__ import annotations

from twilio.rest import Client as TwilioClient
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import make_http_client, start_server
from tests.fakes.rest_control import FAST, capture_log_lines
from tests.fakes.twilio_rest import FakeTwilio, parse_twiml
from tests.testing.rest import RecordingTwilioHttp
from tests.testing.outbound import CarrierAtHand
from voiced.carrier import media_token
from voiced.carrier.base import CallStart
from voiced.outbound.dialer import Dialer, DialError, call_direction, moves_to
from voiced.outbound.request import BadDialRequest, DialRequest, is_dial_id
from voiced.outbound.twilio_dial import TwilioDialError, TwilioDialer, dial_status, status_detail
from voiced.retry import Backoff

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-5e3cret-9f8e7d"
PUBLIC = "https://voice.example.com"
DIAL = "d-0123456789abcdef"


class DialRequestTests(SynchronousTestCase):
    def test_a_good_body(self):
        request = DialRequest.parse({"to": "+972501234567", "variables": {"name": "Dana", "n": 3},
                                     "from": "+15550111"})
        self.assertEqual(request, DialRequest("+972501234567", {"name": "Dana", "n": "3"}, "+15550111"))

    def test_bad_bodies_say_what_is_wrong(self):
        cases = [
            ([], "JSON object"),
            ({}, '"to" is required'),
            ({"to": "0501234567"}, "E.164"),
            ({"to": "+15550100", "from": "me"}, '"from" must be an E.164'),
            ({"to": "+15550100", "variables": ["Dana"]}, "object of names"),
            ({"to": "+15550100", "variables": {"first name": "Dana"}}, "is not a name"),
            ({"to": "+15550100", "variables": {"name": {"first": "Dana"}}}, "string or a number"),
            ({"to": "+15550100", "variables": {"name": "x" * 501}}, "longer than 500"),
            ({"to": "+15550100", "callback": "http://x"}, "unknown field(s): callback"),
        ]
        for body, expected in cases:
            e = self.assertRaises(BadDialRequest, DialRequest.parse, body)
            self.assertIn(expected, str(e), body)

    def test_statuses_map_twilios_and_only_move_forward(self):
        self.assertEqual(dial_status("in-progress"), "answered")
        self.assertEqual(dial_status("no-answer"), "no-answer")
        self.assertIsNone(dial_status("exploded"))
        self.assertTrue(moves_to("ringing", "answered"))
        self.assertFalse(moves_to("answered", "ringing"), "a late ringing is history, not news")
        self.assertTrue(moves_to("ringing", "busy"))
        self.assertFalse(moves_to("completed", "failed"), "a final status is final")
        self.assertEqual(status_detail({"CallDuration": "12", "SequenceNumber": "3", "CallSid": "CA1"}),
                         "duration_s=12 seq=3")


class TwilioDialerTests(TestCase):
    def setUp(self):
        self.twilio = FakeTwilio(ACCOUNT, TOKEN, connect=False)
        self.server = start_server(self, self.twilio)
        self.logs = capture_log_lines(self, "voiced")

    def dialer(self, backoff: Backoff = FAST) -> TwilioDialer:
        return TwilioDialer(make_http_client(self), reactor, ACCOUNT, TOKEN, self.server.url("").rstrip("/"), PUBLIC,
                            TOKEN, 300, backoff=backoff)

    async def test_the_request_is_what_the_twilio_package_sends(self):
        request = DialRequest("+15550100", {"name": "Dana"}, machine_detection=True)
        sid = await self.dialer().place(DIAL, request, "+15550111")
        self.assertEqual(sid, self.twilio.calls[0].sid)
        sent = self.twilio.received[0]
        form = sent.form()

        recording = RecordingTwilioHttp()
        client = TwilioClient(ACCOUNT, TOKEN, http_client=recording)
        client.api.base_url = self.server.url("").rstrip("/")
        client.calls.create(to="+15550100", from_="+15550111", twiml=form["Twiml"][0],
                            status_callback=f"{PUBLIC}/twilio/status?dial={DIAL}",
                            status_callback_event=["initiated", "ringing", "answered", "completed"],
                            status_callback_method="POST", machine_detection="DetectMessageEnd", async_amd="true",
                            async_amd_status_callback=f"{PUBLIC}/twilio/amd?dial={DIAL}",
                            async_amd_status_callback_method="POST")
        theirs = recording.requests[0]
        self.assertEqual(theirs["method"], "POST")
        self.assertEqual(theirs["uri"], self.server.url(sent.path))
        self.assertEqual(theirs["auth"], sent.basic_auth())
        self.assertEqual({k: v if isinstance(v, list) else [v] for k, v in theirs["data"].items()}, form)
        self.assertTrue(sent.headers["content-type"].startswith("application/x-www-form-urlencoded"))

    async def test_the_twiml_streams_to_voiced_with_the_dial_id_and_a_token_for_it(self):
        await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        form = self.twilio.received[0].form()
        url, parameters = parse_twiml(form["Twiml"][0])
        self.assertEqual(url, "wss://voice.example.com/media")
        self.assertEqual(parameters["voiced_dial"], DIAL)
        self.assertEqual((parameters["From"], parameters["To"]), ("+15550111", "+15550100"))
        self.assertIsNone(media_token.problem(TOKEN, DIAL, parameters[media_token.PARAMETER], reactor.seconds()))
        self.assertNotIn("MachineDetection", form, "no AMD unless asked")
        self.assertEqual(form["StatusCallbackEvent"], ["initiated", "ringing", "answered", "completed"])

    async def test_429_and_503_are_retried_and_the_token_is_never_logged(self):
        self.twilio.fail_with(503, 429)
        sid = await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        self.assertTrue(sid.startswith("CA"))
        self.assertEqual(len(self.twilio.received), 3)
        retries = [line for line in self.logs if line.startswith("DIAL_RETRY")]
        self.assertEqual([r.split()[2] for r in retries], ["status=503", "status=429"])
        self.assertFalse([line for line in self.logs if TOKEN in line])
        self.assertNotIn(TOKEN, repr(self.dialer()))

    async def test_a_final_4xx_is_a_clear_error_at_once(self):
        self.twilio.fail_with((400, {"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
                                     "status": 400}))
        e = await self.assertFailure(self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     TwilioDialError)
        self.assertEqual(str(e), "HTTP 400: code=21211 The 'To' number +1555 is not a valid phone number.")
        self.assertEqual(len(self.twilio.received), 1)

    async def test_503_until_the_retries_run_out_fails(self):
        self.twilio.fail_with(503, 503, 503)
        e = await self.assertFailure(self.dialer(Backoff(0.01, 0.02, attempts=2)).place(
            DIAL, DialRequest("+15550100"), "+15550111"), TwilioDialError)
        self.assertEqual(e.status, 503)
        self.assertEqual(len(self.twilio.received), 3)

    async def test_a_500_is_not_sent_again_twilio_may_have_placed_the_call(self):
        self.twilio.fail_with(500)
        e = await self.assertFailure(self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     TwilioDialError)
        self.assertEqual(e.status, 500)
        self.assertEqual(len(self.twilio.received), 1, "a second request could ring the callee twice")

    async def test_wrong_credentials_are_refused(self):
        dialer = TwilioDialer(make_http_client(self), reactor, ACCOUNT, "not-the-token",
                              self.server.url("").rstrip("/"), PUBLIC, "", 300, backoff=FAST)
        e = await self.assertFailure(dialer.place(DIAL, DialRequest("+15550100"), "+15550111"), TwilioDialError)
        self.assertIn("HTTP 401", str(e))
        self.assertFalse([line for line in self.logs if "not-the-token" in line])


class DialerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.carrier = CarrierAtHand()
        self.dialer = Dialer(self.carrier, self.clock, "+15550111")
        self.told: list[tuple[str, str]] = []
        self.dialer.add_status_listener(lambda dial_id, status: self.told.append((dial_id, status)))

    def placed(self, variables=None) -> str:
        dialed = self.dialer.dial(DialRequest("+15550100", variables or {"name": "Dana"}))
        dial_id, _, from_number, d = self.carrier.placed[-1]
        self.assertTrue(is_dial_id(dial_id))
        self.assertEqual(from_number, "+15550111")
        d.callback("CA1")
        self.assertEqual(self.successResultOf(dialed), dial_id)
        return dial_id

    def test_history_and_listeners(self):
        dialed = self.dialer.dial(DialRequest("+15550100"))
        dial_id, _, _, d = self.carrier.placed[0]
        self.clock.advance(1)
        # Twilio may call back before its answer to the request arrives.
        self.assertTrue(self.dialer.status(dial_id, "initiated", "seq=0", "CA1"))
        self.assertEqual(self.told, [], "not accepted yet: no news")
        d.callback("CA1")
        self.assertEqual(self.successResultOf(dialed), dial_id)
        for status in ("ringing", "answered", "ringing", "completed"):
            self.clock.advance(1)
            self.dialer.status(dial_id, status, call_sid="CA1")
        view = self.successResultOf(self.dialer.describe(dial_id))
        self.assertEqual([h["status"] for h in view["history"]],
                         ["queued", "initiated", "ringing", "answered", "ringing", "completed"])
        self.assertEqual(view["status"], "completed")
        self.assertEqual(view["direction"], "outbound")
        # The early "initiated" is told once the dial is accepted (a campaign must hear an early "busy").
        self.assertEqual(self.told, [(dial_id, s) for s in ("queued", "initiated", "ringing", "answered", "completed")])
        self.assertFalse(self.dialer.status(dial_id, "ringing", call_sid="CA-someone-else"))
        self.assertFalse(self.dialer.status("d-ffffffffffffffff", "ringing"))

    def test_a_refused_dial_fails_clearly_and_is_forgotten(self):
        dialed = self.dialer.dial(DialRequest("+15550100"))
        dial_id, _, _, d = self.carrier.placed[0]
        d.errback(TwilioDialError(400, "code=21211 bad number"))
        e = self.failureResultOf(dialed, DialError).value
        self.assertEqual(str(e), "twilio did not place the call: HTTP 400: code=21211 bad number")
        self.assertFalse(self.dialer.known(dial_id))

    def test_no_caller_id_is_refused_before_any_request(self):
        dialer = Dialer(self.carrier, self.clock, "")
        self.assertRaises(DialError, dialer.dial, DialRequest("+15550100"))
        self.assertEqual(self.carrier.placed, [])

    def test_a_stream_is_matched_to_its_dial_once(self):
        dial_id = self.placed({"name": "Dana"})

        def start(call_id="CA1", dial=dial_id, carrier="twilio"):
            return CallStart(carrier, call_id, "MZ1", custom_parameters={"voiced_dial": dial})

        self.assertEqual(call_direction(self.dialer, start(call_id="CA2")), {}, "another call's stream")
        self.assertEqual(call_direction(self.dialer, start(carrier="telnyx")), {})
        self.assertEqual(call_direction(self.dialer, start(dial="d-ffffffffffffffff")), {})
        self.assertEqual(call_direction(self.dialer, start()),
                         {"direction": "outbound", "variables": {"name": "Dana"}, "dial_id": dial_id})
        self.assertEqual(call_direction(self.dialer, start()), {}, "a second stream for the same dial")
        self.assertEqual(call_direction(None, start()), {}, "a daemon that places no calls")
        self.assertEqual(call_direction(self.dialer, CallStart("twilio", "CA9", "MZ9")), {})

    def test_stop_cancels_placements_in_flight(self):
        dialed = self.dialer.dial(DialRequest("+15550100"))
        self.dialer.stop()
        self.assertIn("cancelled", str(self.failureResultOf(dialed, DialError).value))


class DialCommandTests(SynchronousTestCase):
    def run_cli(self, *argv: str) -> tuple[int, str]:
        import io
        import sys

        from voiced.outbound import cli

        err = io.StringIO()
        self.patch(sys, "stderr", err)
        return cli.main(list(argv), io.StringIO()), err.getvalue()

    def test_bad_arguments_exit_2_saying_why(self):
        for argv, expected in ((["0501234567", "--token", "t"], "NUMBER must be an E.164"),
                               (["--token", "t"], "give the number to call"),
                               (["+15550100", "--var", "9x=y", "--token", "t"], "is not a name"),
                               (["+15550100", "--from", "me", "--token", "t"], "--from must be an E.164"),
                               (["+15550100", "--token", ""], "give --token")):
            code, err = self.run_cli(*argv)
            self.assertEqual(code, 2, argv)
            self.assertIn(expected, err)

    def test_a_daemon_that_is_not_there_is_a_clear_error(self):
        from voiced.demo import free_port

        code, err = self.run_cli("+15550100", "--var", "name=Dana", "--token", "t",
                                 "--admin-url", f"http://127.0.0.1:{free_port()}")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach", err)
