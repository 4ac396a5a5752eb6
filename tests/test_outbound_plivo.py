"""Dialling through Plivo: the Call API request against a loopback Plivo (tests/fakes/
plivo_rest.py, written from Plivo's API reference), retries only when Plivo surely placed
no call, the answer that matches the stream to its dial, and the signed ring/hang-up
callbacks on a real loopback server."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import make_http_client, start_server
from tests.fakes.plivo_rest import FakePlivo, stream_url_of
from tests.fakes.rest_control import FAST, capture_log_lines
from tests.testing.outbound import Root
from voiced.carrier import media_token
from voiced.carrier.plivo import wire
from voiced.carrier.plivo.answer import PlivoAnswer
from voiced.carrier.plivo.rest import PlivoRestError
from voiced.config import Settings
from voiced.outbound.carrier_status import PlivoStatus
from voiced.outbound.dialer import Dialer
from voiced.outbound.plivo_dial import PlivoDialer, dial_answered, dial_status
from voiced.outbound.request import DialRequest
from voiced.web import mount

AUTH_ID = "MAZDQ1ZDC5YZA1NWRKMJ"
TOKEN = "plivo-tok-5e3cret"
PUBLIC = "https://voice.example.com"
DIAL = "d-0123456789abcdef"


class PlivoDialerTests(TestCase):
    def setUp(self):
        self.plivo = FakePlivo(AUTH_ID, TOKEN, connect=False)
        self.server = start_server(self, self.plivo)
        self.logs = capture_log_lines(self, "voiced")

    def dialer(self, token: str = TOKEN) -> PlivoDialer:
        return PlivoDialer(make_http_client(self), reactor, AUTH_ID, token, PUBLIC,
                           api_base=self.server.url("").rstrip("/"), backoff=FAST)

    async def test_the_request_names_the_answer_and_the_callbacks_with_the_dial(self):
        request_uuid = await self.dialer().place(DIAL, DialRequest("+15550100", {"name": "Dana"}), "+15550111")
        self.assertEqual(request_uuid, self.plivo.calls[0].request_uuid)
        sent = self.plivo.received[0]
        self.assertEqual(sent.path, f"/v1/Account/{AUTH_ID}/Call/")
        self.assertEqual(sent.basic_auth(), (AUTH_ID, TOKEN))
        self.assertEqual(sent.headers["content-type"], "application/json")
        status_url = f"{PUBLIC}/plivo/status?dial={DIAL}"
        self.assertEqual(sent.json(), {
            "from": "15550111", "to": "15550100", "answer_url": f"{PUBLIC}/answer/plivo?voiced_dial={DIAL}",
            "answer_method": "POST", "ring_url": status_url, "ring_method": "POST", "hangup_url": status_url,
            "hangup_method": "POST"})

    async def test_machine_detection_is_asked_when_the_request_wants_it(self):
        await self.dialer().place(DIAL, DialRequest("+15550100", machine_detection=True), "+15550111")
        body = self.plivo.received[0].json()
        self.assertEqual((body["machine_detection"], body["machine_detection_url"]),
                         ("true", f"{PUBLIC}/plivo/status?dial={DIAL}"))

    async def test_503_is_retried_a_500_is_not_and_the_token_is_never_logged(self):
        self.plivo.fail_with(503)
        await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        self.assertEqual(len(self.plivo.received), 2)
        self.plivo.fail_with(500)
        e = await self.assertFailure(self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     PlivoRestError)
        self.assertEqual(str(e), "HTTP 500: please retry")
        self.assertEqual(len(self.plivo.received), 3, "a second request could ring the callee twice")
        self.assertFalse([line for line in self.logs if TOKEN in line])
        self.assertNotIn(TOKEN, repr(self.dialer()))

    async def test_wrong_credentials_are_a_clear_error(self):
        e = await self.assertFailure(self.dialer("wrong").place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     PlivoRestError)
        self.assertEqual(str(e), "HTTP 401: Authentication credentials invalid")

    def test_statuses(self):
        self.assertEqual([dial_status(s) for s in ("ringing", "in-progress", "completed", "busy", "timeout",
                                                    "no-answer", "cancel", "failed", "exploded")],
                         ["ringing", "answered", "completed", "busy", "no-answer", "no-answer", "canceled", "failed",
                          None])


class Carrier:
    carrier = "plivo"

    def place(self, dial_id, request, from_number):
        return succeed("req-" + dial_id)


class PlivoRoutesTests(TestCase):
    """The answer and the status callbacks of a dial, as Plivo sends them (tests.fakes.plivo_rest signs)."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        settings = Settings(plivo_auth_token=TOKEN, plivo_auth_id=AUTH_ID, public_url=PUBLIC, dial_from="+15550111")
        self.service = SimpleNamespace(settings=settings, dialer=Dialer(Carrier(), self.clock, settings.dial_from))
        root = Root()
        mount(root, "plivo/status", PlivoStatus(self.service))
        mount(root, "answer/plivo", PlivoAnswer(TOKEN, PUBLIC, self.clock, 300,
                                                dial_answered=lambda d, c: dial_answered(self.service, d, c)))
        self.server = start_server(self, root)
        self.signer = FakePlivo(AUTH_ID, TOKEN)
        self.logs = capture_log_lines(self, "voiced")

    async def post(self, path: str, params: dict[str, str], token: str = TOKEN) -> tuple[int, str]:
        headers = FakePlivo(AUTH_ID, token).sign(PUBLIC + path, params)
        response = await treq.post(self.server.url(path), data=params, headers=headers, persistent=False)
        return response.code, (await response.content()).decode()

    def dial(self) -> str:
        placed = self.service.dialer.dial(DialRequest("+15550100", {"name": "Dana"}))
        return self.successResultOf(placed)

    async def test_the_answer_names_the_call_and_streams_it_with_the_dial_under_the_token(self):
        dial_id = self.dial()
        code, xml = await self.post(f"/answer/plivo?voiced_dial={dial_id}",
                                    {"CallUUID": "call-1", "From": "15550111", "To": "15550100",
                                     "RequestUUID": "req-" + dial_id, "CallStatus": "in-progress"})
        self.assertEqual(code, 200, xml)
        query = {k: v[0] for k, v in parse_qs(urlsplit(stream_url_of(xml)).query).items()}
        self.assertEqual(query[wire.DIAL_PARAMETER], dial_id)
        subject = wire.token_subject("call-1", "15550111", "15550100", dial_id)
        self.assertIsNone(media_token.problem(TOKEN, subject, query[media_token.PARAMETER], self.clock.seconds()))
        self.assertIsNotNone(media_token.problem(TOKEN, wire.token_subject("call-1", "15550111", "15550100"),
                                                 query[media_token.PARAMETER], self.clock.seconds()),
                             "the token is bound to the dial")
        view = self.service.dialer.snapshot(dial_id)
        self.assertEqual((view["call_sid"], view["status"]), ("call-1", "answered"))
        self.assertIsNotNone(self.service.dialer.claim(dial_id, "call-1", "plivo"))

    async def test_signed_callbacks_build_the_history_and_a_bad_signature_is_403(self):
        dial_id = self.dial()
        path = f"/plivo/status?dial={dial_id}"
        base = {"CallUUID": "call-1", "RequestUUID": "req-" + dial_id, "From": "15550111", "To": "15550100"}
        self.assertEqual((await self.post(path, {**base, "CallStatus": "ringing"}))[0], 204)
        forged = {**base, "CallStatus": "completed"}
        self.assertEqual((await self.post(path, forged, token="not-the-token"))[0], 403)
        response = await treq.post(self.server.url(path), data=forged, persistent=False)
        self.assertEqual(response.code, 403, "unsigned")
        await response.content()
        self.assertTrue([line for line in self.logs if line.startswith("STATUS_REJECTED carrier=plivo")])
        self.assertEqual((await self.post(path, {**base, "CallStatus": "completed", "Duration": "42",
                                                 "HangupCause": "NORMAL_CLEARING"}))[0], 204)
        view = self.service.dialer.snapshot(dial_id)
        self.assertEqual([h["status"] for h in view["history"]], ["queued", "ringing", "completed"])
        self.assertEqual(view["history"][-1]["detail"], "duration_s=42 cause=NORMAL_CLEARING")
        machine = {**base, "Event": "MachineDetection", "Machine": "true", "IfMachine": "continue"}
        self.assertEqual((await self.post(path, machine))[0], 204)
        self.assertEqual(self.service.dialer.snapshot(dial_id)["answered_by"], "machine")
        self.assertEqual((await self.post(path, {**base, "CallStatus": "exploded"}))[0], 400)
        self.assertEqual((await self.post("/plivo/status?dial=nope", {**base, "CallStatus": "busy"}))[0], 400)
