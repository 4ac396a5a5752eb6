"""Hang-up and transfer through Plivo's REST API, against a real HTTP server on loopback
answering as Plivo documents (hang-up: DELETE .../Call/{uuid}/ -> 204; transfer: POST
.../Call/{uuid}/ with legs/aleg_url -> 202 "call transferred"; errors {"api_id", "error"}),
the requests checked against what plivo-python's ``calls.hangup``/``calls.transfer`` send."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from tests.fakes.http_apps import Canned
from tests.fakes.rest_control import FAST, RestControlTestCase
from voiced.call.control import CallControl
from voiced.carrier.plivo.rest import DEFAULT_API_BASE, DEFAULT_BACKOFF, PlivoCallControl
from voiced.retry import Backoff

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TOKEN = "tok-9f8e7d6c5b4a"
CALL = "0e6c8a3c-1b1a-4f53-9d54-5a9f0e0d4c11"
PUBLIC = "https://voice.example.com"
TRANSFERRED = Canned.json({"message": "call transferred", "api_id": "08c94608-58bd-11e1-86da-adf28403fe48"},
                          status=202)
NOT_FOUND = Canned.json({"api_id": "5a9fcb68-582d-11e1-86da-6ff39efcb949", "error": "call not found"}, status=404)


class PlivoCallControlTests(RestControlTestCase):
    log_namespace = "voiced.carrier.plivo.rest"

    def control(self, api_base: str | None = None, public_url: str = PUBLIC, **kwargs) -> PlivoCallControl:
        kwargs.setdefault("backoff", FAST)
        return PlivoCallControl(self.http, reactor, AUTH_ID, TOKEN, public_url, api_base or self.server.url(""),
                                **kwargs)

    async def test_complete_is_the_documented_delete(self) -> None:
        self.app.answer(Canned(status=204))
        self.assertIs(await self.control().complete(CALL), True)
        [received] = self.app.received
        self.assertEqual((received.method, received.path), ("DELETE", f"/v1/Account/{AUTH_ID}/Call/{CALL}/"))
        self.assertEqual(received.basic_auth(), (AUTH_ID, TOKEN))
        self.assertEqual(received.headers["accept"], "application/json")
        self.assertEqual(received.body, b"")
        self.assertEqual(self.logs, [f"PLIVO_REST_OK call={CALL} action=complete"])

    async def test_a_call_already_over_counts_as_hung_up(self) -> None:
        self.app.answer(NOT_FOUND)
        self.assertIs(await self.control().complete(CALL), True)
        self.assertEqual(self.logs, [f"PLIVO_REST_OK call={CALL} action=complete (the call was already over)"])

    async def test_transfer_points_plivo_at_the_answer_urls_dial(self) -> None:
        self.app.answer(TRANSFERRED)
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), True)
        [received] = self.app.received
        self.assertEqual((received.method, received.path), ("POST", f"/v1/Account/{AUTH_ID}/Call/{CALL}/"))
        self.assertTrue(received.headers["content-type"].startswith("application/json"))
        self.assertEqual(received.json(), {"legs": "aleg", "aleg_url": f"{PUBLIC}/answer/plivo?transfer=%2B15550003333",
                                           "aleg_method": "POST"})
        self.assertEqual(received.basic_auth(), (AUTH_ID, TOKEN))

    async def test_a_sip_target_is_quoted_into_the_url(self) -> None:
        self.app.answer(TRANSFERRED)
        self.assertIs(await self.control().transfer(CALL, "sip:desk@pbx.example.com;transport=tls&x=1"), True)
        self.assertEqual(self.app.received[0].json()["aleg_url"],
                         f"{PUBLIC}/answer/plivo?transfer=sip%3Adesk%40pbx.example.com%3Btransport%3Dtls%26x%3D1")

    async def test_transfer_needs_the_public_url(self) -> None:
        self.assertIs(await self.control(public_url="").transfer(CALL, "+15550003333"), False)
        self.assertEqual(self.app.received, [])
        self.assertIn("no public_url", self.logs[0])

    async def test_503_and_429_are_retried_then_succeed(self) -> None:
        self.app.answer(Canned(status=503), Canned.json({"api_id": "x", "error": "too many requests"}, status=429),
                        Canned(status=204))
        self.assertIs(await self.control().complete(CALL), True)
        self.assertEqual(len(self.app.received), 3)
        self.assertEqual(self.logs, [
            f"PLIVO_REST_RETRY call={CALL} status=503 attempt=1 action=complete delay_ms=10",
            f"PLIVO_REST_RETRY call={CALL} status=429 attempt=2 action=complete delay_ms=20",
            f"PLIVO_REST_OK call={CALL} action=complete",
        ])

    async def test_400_is_final_and_reports_plivos_error(self) -> None:
        self.app.answer(Canned.json({"api_id": "x", "error": "invalid aleg_url"}, status=400))
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), False)
        self.assertEqual(len(self.app.received), 1)
        self.assertEqual(self.logs, [f"PLIVO_REST_FAILED call={CALL} action=transfer error=PlivoRestError: "
                                     "HTTP 400: invalid aleg_url"])

    async def test_a_404_on_transfer_is_a_failure(self) -> None:
        self.app.answer(NOT_FOUND)
        self.assertIs(await self.control().transfer(CALL, "+15550003333"), False)

    async def test_a_final_failure_fires_false_without_the_token(self) -> None:
        self.app.answer(*[Canned(status=500, body=b"internal error")] * 4)
        self.assertIs(await self.control().complete(CALL), False)
        self.assertEqual(len(self.app.received), 4)  # the first try and 3 retries
        self.assertEqual(self.logs[-1], f"PLIVO_REST_FAILED call={CALL} action=complete "
                                        "error=PlivoRestError: HTTP 500: internal error")
        self.assertFalse(any(TOKEN in line for line in self.logs))

    async def test_connection_errors_are_retried(self) -> None:
        closed = self.server.url("")
        await self.server.stop()
        control = self.control(api_base=closed, backoff=Backoff(0.01, 0.01, attempts=1))
        self.assertIs(await control.complete(CALL), False)
        self.assertEqual(len(self.logs), 2)
        self.assertIn("status=ConnectionRefusedError attempt=1", self.logs[0])

    async def test_a_request_that_never_answers_times_out_and_is_retried(self) -> None:
        self.app.answer(Canned(hang=True), Canned(status=204))
        self.assertIs(await self.control(request_timeout_s=0.2).complete(CALL), True)
        await self.app.received[0].lost
        self.assertIn("status=TimeoutError attempt=1", self.logs[0])

    async def test_cancelling_closes_the_request_and_fires_false(self) -> None:
        self.app.answer(Canned(hang=True), Canned(status=204))
        done = self.control().complete(CALL)
        received = await self.app.request(0)
        done.cancel()
        self.assertIs(await done, False)
        await received.lost
        self.assertEqual(len(self.app.received), 1)
        self.assertIn("cancelled", self.logs[-1])

    def test_an_invalid_target_is_refused_before_any_request(self) -> None:
        control = self.control()
        for target in ["reception", "", "15550003333", "+1555</Dial><Hangup/>", "sip:<desk>@pbx"]:
            self.assertRaises(ValueError, control.transfer, CALL, target)
        self.assertEqual(self.app.received, [])

    def test_the_call_uuid_cannot_escape_its_path(self) -> None:
        self.assertEqual(self.control(api_base="https://api.example.com/").call_url("c1/../../x?y"),
                         f"https://api.example.com/v1/Account/{AUTH_ID}/Call/c1%2F..%2F..%2Fx%3Fy/")

    def test_the_token_is_not_in_the_repr(self) -> None:
        self.assertNotIn(TOKEN, repr(self.control()))

    def test_needs_credentials_and_an_http_base(self) -> None:
        self.assertRaises(ValueError, PlivoCallControl, self.http, reactor, AUTH_ID, "")
        self.assertRaises(ValueError, PlivoCallControl, self.http, reactor, "", TOKEN)
        self.assertRaises(ValueError, PlivoCallControl, self.http, reactor, AUTH_ID, TOKEN, api_base="ftp://x")

    def test_is_a_call_control(self) -> None:
        control: CallControl = self.control()
        self.assertTrue(callable(control.complete) and callable(control.transfer))


class DefaultsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        self.assertEqual(DEFAULT_API_BASE, "https://api.plivo.com")
        self.assertEqual((DEFAULT_BACKOFF.initial_s, DEFAULT_BACKOFF.max_s, DEFAULT_BACKOFF.attempts), (0.5, 4.0, 4))
