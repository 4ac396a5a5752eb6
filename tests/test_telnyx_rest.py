"""Hang-up and transfer through Telnyx Call Control, against a real HTTP server on loopback
that answers as Telnyx's API reference documents (``{"data": {"result": "ok"}}``, errors
as ``{"errors": [{code, title, detail}]}``)."""

from __future__ import annotations

from twisted.internet import reactor

from tests.fakes.http_apps import Canned
from tests.fakes.rest_control import FAST, RestControlTestCase
from voiced.call.control import CallControl
from voiced.carrier.telnyx.rest import DEFAULT_API_BASE, TelnyxCallControl, error_detail
from voiced.retry import Backoff

API_KEY = "KEY0123456789ABCDEF_secret"
CALL = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"
OK = Canned.json({"data": {"result": "ok"}})


def telnyx_error(status: int, code: str, title: str, detail: str) -> Canned:
    return Canned.json({"errors": [{"code": code, "title": title, "detail": detail}]}, status=status)


class TelnyxCallControlTests(RestControlTestCase):
    log_namespace = "voiced.carrier.telnyx.rest"

    def control(self, api_base: str | None = None, **kwargs) -> TelnyxCallControl:
        kwargs.setdefault("backoff", FAST)
        return TelnyxCallControl(self.http, reactor, API_KEY, api_base or self.server.url(""), **kwargs)

    def assertCommand(self, received, action: str) -> dict:
        self.assertEqual(received.method, "POST")
        self.assertEqual(received.path, f"/v2/calls/{CALL}/actions/{action}")
        self.assertEqual(received.headers["authorization"], f"Bearer {API_KEY}")
        self.assertEqual(received.headers["content-type"], "application/json")
        self.assertEqual(received.headers["accept"], "application/json")
        body = received.json()
        self.assertRegex(body.pop("command_id"), r"^[0-9a-f-]{36}$")
        return body

    async def test_hangup(self) -> None:
        self.app.answer(OK)
        self.assertIs(await self.control().complete(CALL), True)
        [received] = self.app.received
        self.assertEqual(self.assertCommand(received, "hangup"), {})
        self.assertEqual(self.logs, [f"TELNYX_REST_OK call={CALL} action=hangup"])

    async def test_transfer_to_a_number_or_a_sip_uri(self) -> None:
        self.app.answer(OK, OK)
        self.assertIs(await self.control().transfer(CALL, "+18005550100"), True)
        self.assertIs(await self.control().transfer(CALL, "sip:desk@pbx.example.com;transport=tls"), True)
        self.assertEqual(self.assertCommand(self.app.received[0], "transfer"), {"to": "+18005550100"})
        self.assertEqual(self.assertCommand(self.app.received[1], "transfer"),
                         {"to": "sip:desk@pbx.example.com;transport=tls"})

    async def test_503_is_retried_with_the_same_command_id(self) -> None:
        self.app.answer(Canned(status=503), telnyx_error(429, "10011", "Too many requests", "slow down"), OK)
        self.assertIs(await self.control().complete(CALL), True)
        self.assertEqual(len(self.app.received), 3)
        self.assertEqual(len({r.json()["command_id"] for r in self.app.received}), 1, "Telnyx ignores a repeat")
        self.assertEqual(self.logs, [
            f"TELNYX_REST_RETRY call={CALL} status=503 attempt=1 action=hangup delay_ms=10",
            f"TELNYX_REST_RETRY call={CALL} status=429 attempt=2 action=hangup delay_ms=20",
            f"TELNYX_REST_OK call={CALL} action=hangup",
        ])

    async def test_a_call_that_already_ended_is_hung_up(self) -> None:
        self.app.answer(telnyx_error(422, "90018", "Call has already ended",
                                     "This call is no longer active and can't receive commands."))
        self.assertIs(await self.control().complete(CALL), True)
        self.assertEqual(len(self.app.received), 1)
        self.assertIn("already ended", self.logs[0])

    async def test_a_4xx_is_final_and_logged_with_telnyx_s_error(self) -> None:
        self.app.answer(telnyx_error(422, "90018", "Call has already ended", "no longer active"))
        self.assertIs(await self.control().transfer(CALL, "+18005550100"), False)
        self.assertEqual(len(self.app.received), 1)
        self.assertEqual(self.logs, [f"TELNYX_REST_FAILED call={CALL} action=transfer error=TelnyxRestError: "
                                     "HTTP 422: code=90018 Call has already ended: no longer active"])
        self.assertFalse(any(API_KEY in line for line in self.logs))

    async def test_a_final_failure_fires_false(self) -> None:
        self.app.answer(*[Canned(status=500, body=b"internal error")] * 4)
        self.assertIs(await self.control().complete(CALL), False)
        self.assertEqual(len(self.app.received), 4)
        self.assertEqual(self.logs[-1], f"TELNYX_REST_FAILED call={CALL} action=hangup "
                                        "error=TelnyxRestError: HTTP 500: internal error")

    async def test_connection_errors_are_retried(self) -> None:
        closed = self.server.url("")
        await self.server.stop()
        control = self.control(api_base=closed, backoff=Backoff(0.01, 0.01, attempts=1))
        self.assertIs(await control.complete(CALL), False)
        self.assertIn("status=ConnectionRefusedError attempt=1", self.logs[0])

    async def test_a_request_that_never_answers_times_out_and_is_retried(self) -> None:
        self.app.answer(Canned(hang=True), OK)
        self.assertIs(await self.control(request_timeout_s=0.2).complete(CALL), True)
        await self.app.received[0].lost
        self.assertIn("status=TimeoutError attempt=1", self.logs[0])

    def test_an_invalid_target_is_refused_before_any_request(self) -> None:
        for target in ["reception", "", "+1 555", "sip:<desk>@pbx", "tel:+15550003333"]:
            self.assertRaises(ValueError, self.control().transfer, CALL, target)
        self.assertEqual(self.app.received, [])

    def test_the_call_id_cannot_escape_its_path(self) -> None:
        self.assertEqual(self.control(api_base="https://api.example.com/").action_url("v3:a/../../x?y", "hangup"),
                         "https://api.example.com/v2/calls/v3:a%2F..%2F..%2Fx%3Fy/actions/hangup")

    def test_the_key_is_not_in_the_repr_and_is_needed(self) -> None:
        self.assertNotIn(API_KEY, repr(self.control()))
        self.assertRaises(ValueError, TelnyxCallControl, self.http, reactor, "")
        control: CallControl = self.control()
        self.assertTrue(callable(control.complete) and callable(control.transfer))

    def test_defaults_and_error_bodies(self) -> None:
        self.assertEqual(DEFAULT_API_BASE, "https://api.telnyx.com")
        self.assertEqual(error_detail(b"not json at all"), ((), "not json at all"))
        self.assertEqual(error_detail(b'{"errors":"x"}'), ((), ""))
        self.assertEqual(error_detail(b'{"errors":[{"code":"1","title":"T"},7]}'), (("1",), "code=1 T"))
