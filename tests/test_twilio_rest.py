"""Hang-up and transfer through Twilio's REST API, against a real HTTP server on loopback,
checked against what the official ``twilio`` package sends for the same updates."""

from __future__ import annotations

from urllib.parse import urlsplit

from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import Dial, VoiceResponse
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes.http_apps import Canned
from tests.fakes.rest_control import FAST, RestControlTestCase
from tests.testing.rest import ACCOUNT, CALL, CALL_RESOURCE, TOKEN, RecordingTwilioHttp
from voiced.call.control import CallControl, check_transfer_target
from voiced.carrier.twilio.rest import DEFAULT_API_BASE, DEFAULT_BACKOFF, TwilioCallControl, dial_twiml
from voiced.retry import Backoff


def what_twilio_sends(**update: str) -> dict:
    recorder = RecordingTwilioHttp()
    TwilioClient(ACCOUNT, TOKEN, http_client=recorder).calls(CALL).update(**update)
    [request] = recorder.requests
    return request


class TwilioCallControlTests(RestControlTestCase):
    log_namespace = "voiced.carrier.twilio.rest"

    def control(self, api_base: str | None = None, **kwargs) -> TwilioCallControl:
        kwargs.setdefault("backoff", FAST)
        return TwilioCallControl(self.http, reactor, ACCOUNT, TOKEN, api_base or self.server.url(""), **kwargs)

    def assertSameAsTwilio(self, received, twilio_request: dict) -> None:
        self.assertEqual(received.method, twilio_request["method"])
        self.assertEqual(received.path, urlsplit(twilio_request["uri"]).path)
        self.assertEqual(received.form(), {name: [value] for name, value in twilio_request["data"].items()})
        self.assertEqual(received.basic_auth(), tuple(twilio_request["auth"]))
        self.assertEqual(received.headers["content-type"], "application/x-www-form-urlencoded")
        self.assertEqual(received.headers["accept"], twilio_request["headers"]["Accept"])

    async def test_complete_sends_what_the_twilio_package_sends(self) -> None:
        self.app.answer(Canned.json(CALL_RESOURCE))
        self.assertIs(await self.control().complete(CALL), True)
        [received] = self.app.received
        self.assertEqual(received.path, f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json")
        self.assertEqual(received.form(), {"Status": ["completed"]})
        self.assertEqual(received.basic_auth(), (ACCOUNT, TOKEN))
        self.assertSameAsTwilio(received, what_twilio_sends(status="completed"))
        self.assertEqual(self.logs, [f"TWILIO_REST_OK call={CALL} action=complete"])

    async def test_transfer_to_a_number_sends_what_the_twilio_package_sends(self) -> None:
        self.app.answer(Canned.json(CALL_RESOURCE))
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), True)
        [received] = self.app.received
        self.assertEqual(received.form(), {"Twiml": ["<Response><Dial>+15550003333</Dial></Response>"]})
        twiml = VoiceResponse()
        twiml.dial("+15550003333")
        self.assertSameAsTwilio(received, what_twilio_sends(twiml=twiml.to_xml(xml_declaration=False)))

    async def test_transfer_to_a_sip_uri_uses_the_sip_noun(self) -> None:
        self.app.answer(Canned.json(CALL_RESOURCE))
        target = "sip:desk@pbx.example.com;transport=tls&x=1"
        self.assertIs(await self.control().transfer(CALL, target), True)
        dial = Dial()
        dial.sip(target)
        twiml = VoiceResponse()
        twiml.append(dial)
        expected = twiml.to_xml(xml_declaration=False)
        self.assertIn("&amp;", expected)
        self.assertEqual(dial_twiml(target), expected)
        self.assertSameAsTwilio(self.app.received[0], what_twilio_sends(twiml=expected))

    async def test_503_is_retried_then_succeeds(self) -> None:
        self.app.answer(Canned(status=503), Canned(status=503), Canned.json(CALL_RESOURCE))
        self.assertIs(await self.control().complete(CALL), True)
        self.assertEqual(len(self.app.received), 3)
        self.assertEqual(self.logs, [
            f"TWILIO_REST_RETRY call={CALL} status=503 attempt=1 action=complete delay_ms=10",
            f"TWILIO_REST_RETRY call={CALL} status=503 attempt=2 action=complete delay_ms=20",
            f"TWILIO_REST_OK call={CALL} action=complete",
        ])

    async def test_429_is_retried(self) -> None:
        self.app.answer(Canned.json({"code": 20429, "message": "Too Many Requests", "status": 429}, status=429),
                        Canned.json(CALL_RESOURCE))
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), True)
        self.assertEqual(len(self.app.received), 2)
        self.assertIn(f"TWILIO_REST_RETRY call={CALL} status=429 attempt=1 action=transfer", self.logs[0])

    async def test_400_is_not_retried(self) -> None:
        self.app.answer(Canned.json({"code": 21220, "message": "Call is not in-progress. Cannot redirect.",
                                     "more_info": "https://www.twilio.com/docs/errors/21220", "status": 400},
                                    status=400))
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), False)
        self.assertEqual(len(self.app.received), 1)
        self.assertEqual(self.logs, [
            f"TWILIO_REST_FAILED call={CALL} action=transfer error=TwilioRestError: "
            "HTTP 400: code=21220 Call is not in-progress. Cannot redirect.",
        ])

    async def test_a_final_failure_fires_false_and_is_logged(self) -> None:
        self.app.answer(*[Canned(status=500, body=b"internal error")] * 4)
        self.assertIs(await self.control().complete(CALL), False)
        self.assertEqual(len(self.app.received), 4)  # the first try and 3 retries
        self.assertEqual(len([line for line in self.logs if line.startswith("TWILIO_REST_RETRY")]), 3)
        self.assertEqual(self.logs[-1], f"TWILIO_REST_FAILED call={CALL} action=complete "
                                        "error=TwilioRestError: HTTP 500: internal error")
        self.assertFalse(any(TOKEN in line for line in self.logs))

    async def test_connection_errors_are_retried(self) -> None:
        closed = self.server.url("")
        await self.server.stop()
        control = self.control(api_base=closed, backoff=Backoff(0.01, 0.01, attempts=1))
        self.assertIs(await control.complete(CALL), False)
        self.assertEqual(len(self.logs), 2)
        self.assertIn("status=ConnectionRefusedError attempt=1", self.logs[0])
        self.assertIn(f"TWILIO_REST_FAILED call={CALL} action=complete error=ConnectionRefusedError", self.logs[-1])

    async def test_a_request_that_never_answers_times_out_and_is_retried(self) -> None:
        self.app.answer(Canned(hang=True), Canned.json(CALL_RESOURCE))
        self.assertIs(await self.control(request_timeout_s=0.2).complete(CALL), True)
        await self.app.received[0].lost
        self.assertIn("status=TimeoutError attempt=1", self.logs[0])

    async def test_cancelling_closes_the_request_and_fires_false(self) -> None:
        self.app.answer(Canned(hang=True), Canned.json(CALL_RESOURCE))
        done = self.control().complete(CALL)
        received = await self.app.request(0)
        done.cancel()
        self.assertIs(await done, False)
        await received.lost
        self.assertEqual(len(self.app.received), 1)
        self.assertIn("TWILIO_REST_FAILED", self.logs[-1])
        self.assertIn("cancelled", self.logs[-1])

    def test_an_invalid_target_is_refused_before_any_request(self) -> None:
        control = self.control()
        for target in ["reception", "", "15550003333", "+1 555 000 3333", "+0123", "+1555</Dial><Hangup/>",
                       "sip:<desk>@pbx", "sip:desk @pbx", "tel:+15550003333"]:
            self.assertRaises(ValueError, control.transfer, CALL, target)
        self.assertEqual(self.app.received, [])

    def test_the_call_sid_cannot_escape_its_path(self) -> None:
        self.assertEqual(self.control(api_base="https://api.example.com/").call_url("CA1/../../x?y"),
                         f"https://api.example.com/2010-04-01/Accounts/{ACCOUNT}/Calls/CA1%2F..%2F..%2Fx%3Fy.json")

    def test_the_token_is_not_in_the_repr(self) -> None:
        self.assertNotIn(TOKEN, repr(self.control()))

    def test_needs_credentials(self) -> None:
        self.assertRaises(ValueError, TwilioCallControl, self.http, reactor, ACCOUNT, "")
        self.assertRaises(ValueError, TwilioCallControl, self.http, reactor, "", TOKEN)

    def test_is_a_call_control(self) -> None:
        control: CallControl = self.control()
        self.assertTrue(callable(control.complete) and callable(control.transfer))


class DefaultsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(DEFAULT_API_BASE, "https://api.twilio.com")
        self.assertEqual((DEFAULT_BACKOFF.initial_s, DEFAULT_BACKOFF.max_s, DEFAULT_BACKOFF.attempts),
                         (0.5, 4.0, 4))
        self.assertGreater(DEFAULT_BACKOFF.jitter, 0)

    def test_transfer_targets(self) -> None:
        for good in ["+15550003333", "+442071838750", "sip:alice@example.com", "sips:bob@10.0.0.1:5061"]:
            self.assertEqual(check_transfer_target(good), good)
        self.assertRaises(ValueError, check_transfer_target, None)
