"""The HTTP face of outbound calls on a real loopback server: ``POST /calls`` and
``GET /calls/{id}`` behind the admin bearer token, and Twilio's status callbacks,
signed by the official ``twilio`` package's ``RequestValidator``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import treq
from twilio.request_validator import RequestValidator
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import start_server
from tests.fakes.rest_control import capture_log_lines
from tests.testing.outbound import Root
from voiced.agent.base import CallInfo
from voiced.call.record import CallHub, CallRecord
from voiced.config import Settings
from voiced.console.calls import CallsView, HubRecentCalls
from voiced.outbound.request import DialRequest
from voiced.outbound.dialer import Dialer
from voiced.outbound.twilio_dial import TwilioDialError
from voiced.web import add_admin_routes, mount

TOKEN = "tw-token-77"
ADMIN = "admin-secret-42"
PUBLIC = "https://voice.example.com"


class Carrier:
    carrier = "twilio"

    def __init__(self):
        self.answers: list = []
        self.placed: list = []

    def place(self, dial_id, request, from_number):
        self.placed.append((dial_id, request, from_number))
        answer = self.answers.pop(0) if self.answers else "CA" + dial_id[2:]
        if isinstance(answer, Exception):
            d: Deferred = Deferred()
            d.errback(answer)
            return d
        return succeed(answer)


class RoutesTestCase(TestCase):
    admin_token = ADMIN

    def setUp(self):
        from voiced.outbound.resources import TwilioStatus

        self.carrier = Carrier()
        settings = Settings(admin_token=self.admin_token, twilio_auth_token=TOKEN, public_url=PUBLIC,
                            dial_from="+15550111")
        self.service = SimpleNamespace(settings=settings, dialer=Dialer(self.carrier, reactor, settings.dial_from),
                                       ready=True)
        root = Root()
        add_admin_routes(root, self.service)
        mount(root, "twilio/status", TwilioStatus(self.service))
        self.server = start_server(self, root)
        self.logs = capture_log_lines(self, "voiced")

    async def call(self, method, path, body=None, token=ADMIN, raw=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        response = await treq.request(method, self.server.url(path), data=data, headers=headers, persistent=False)
        text = await response.content()
        return response.code, json.loads(text) if text else None


class CallsRouteTests(RoutesTestCase):
    async def test_placing_a_call_and_reading_its_history(self):
        status, answer = await self.call("POST", "/calls", {"to": "+9725012345678", "variables": {"name": "Dana"}})
        self.assertEqual(status, 201)
        self.assertEqual(answer["status"], "queued")
        dial_id = answer["id"]
        self.assertRegex(dial_id, r"^d-[0-9a-f]{16}$")
        _, request, from_number = self.carrier.placed[0]
        self.assertEqual((request.to, request.variables, from_number), ("+9725012345678", {"name": "Dana"}, "+15550111"))
        status, view = await self.call("GET", f"/calls/{dial_id}")
        self.assertEqual(status, 200)
        self.assertEqual((view["status"], view["direction"], view["call_sid"]), ("queued", "outbound", "CA" + dial_id[2:]))
        self.assertEqual([h["status"] for h in view["history"]], ["queued"])
        status, _ = await self.call("GET", "/calls/d-ffffffffffffffff")
        self.assertEqual(status, 404)
        status, _ = await self.call("GET", "/calls/../health")
        self.assertEqual(status, 404)

    async def test_the_token_is_required(self):
        for token in ("", "wrong"):
            status, answer = await self.call("POST", "/calls", {"to": "+15550100"}, token=token)
            self.assertEqual(status, 401, token)
            self.assertIn("bearer token", answer["error"])
            status, _ = await self.call("GET", "/calls/d-0123456789abcdef", token=token)
            self.assertEqual(status, 401)
        self.assertEqual(self.carrier.placed, [])

    async def test_bad_requests_say_why(self):
        cases = [(b"{not json", "not JSON"), (b'{"to": "0501234567"}', "E.164"),
                 (b'{"to": "+15550100", "variables": {"9x": "y"}}', "is not a name"), (b"[]", "JSON object")]
        for raw, reason in cases:
            status, answer = await self.call("POST", "/calls", raw=raw)
            self.assertEqual(status, 400, raw)
            self.assertIn(reason, answer["error"])
        self.assertEqual(self.carrier.placed, [])

    async def test_a_carrier_refusal_is_a_502_with_the_reason(self):
        self.carrier.answers.append(TwilioDialError(400, "code=21211 The 'To' number is not valid"))
        status, answer = await self.call("POST", "/calls", {"to": "+15550100"})
        self.assertEqual(status, 502)
        self.assertEqual(answer["error"], "twilio did not place the call: HTTP 400: code=21211 The 'To' number is "
                                          "not valid")


    async def test_a_daemon_not_ready_places_no_call(self):
        self.service.ready = False
        status, answer = await self.call("POST", "/calls", {"to": "+15550100"})
        self.assertEqual(status, 503)
        self.assertIn("not ready", answer["error"])
        self.assertEqual(self.carrier.placed, [])


class ConsoleViewTests(SynchronousTestCase):
    def test_the_call_view_says_the_direction_and_the_dials_history(self):
        hub = CallHub()
        dialer = Dialer(Carrier(), reactor, "+15550111")
        dial_id = self.successResultOf(dialer.dial(DialRequest("+15550100", {"name": "Dana"})))
        dialer.status(dial_id, "ringing")
        info = CallInfo("CA" + dial_id[2:], "MZ1", direction="outbound", dial_id=dial_id)
        record = CallRecord.begin(info, 1000.0)
        hub.call_event(record, "start", {})
        view = CallsView(hub, HubRecentCalls(hub), lambda: {}, lambda: 1001.0, dial_of=dialer.snapshot)
        call = view.call(info.call_id)
        self.assertEqual(call["summary"]["direction"], "outbound")
        self.assertEqual([h["status"] for h in call["dial"]["history"]], ["queued", "ringing"])
        hub.call_event(CallRecord.begin(CallInfo("CA2", "MZ2"), 1000.0), "start", {})
        self.assertIsNone(view.call("CA2")["dial"])
        self.assertEqual(view.call("CA2")["summary"]["direction"], "inbound")


class NoAdminTokenTests(RoutesTestCase):
    admin_token = ""

    async def test_without_a_configured_token_calls_are_refused_503_saying_what_to_set(self):
        status, answer = await self.call("POST", "/calls", {"to": "+15550100"})
        self.assertEqual(status, 503)
        self.assertIn("VOICED_ADMIN_TOKEN", answer["error"])
        self.assertEqual(self.carrier.placed, [])


class StatusCallbackTests(RoutesTestCase):
    async def post_status(self, dial_id, call_sid, status, signature=None, **extra):
        path = f"/twilio/status?dial={dial_id}"
        params = {"CallSid": call_sid, "CallStatus": status, "AccountSid": "ACx", "SequenceNumber": "1", **extra}
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
        response = await treq.post(self.server.url(path), data=params, headers={"X-Twilio-Signature": signature},
                                   persistent=False)
        await response.content()
        return response.code

    async def test_signed_callbacks_build_the_history_and_a_bad_signature_is_403(self):
        _, answer = await self.call("POST", "/calls", {"to": "+15550100"})
        dial_id = answer["id"]
        sid = "CA" + dial_id[2:]
        for status in ("initiated", "ringing", "in-progress"):
            self.assertEqual(await self.post_status(dial_id, sid, status), 204)
        self.assertEqual(await self.post_status(dial_id, sid, "completed", signature="bm90IGl0"), 403)
        self.assertEqual(await self.post_status(dial_id, sid, "completed", signature=""), 403)
        self.assertTrue([line for line in self.logs if line.startswith("STATUS_REJECTED")])
        self.assertEqual(await self.post_status(dial_id, sid, "completed", CallDuration="42"), 204)
        _, view = await self.call("GET", f"/calls/{dial_id}")
        self.assertEqual([h["status"] for h in view["history"]],
                         ["queued", "initiated", "ringing", "answered", "completed"])
        self.assertEqual(view["history"][-1]["detail"], "duration_s=42 seq=1")

    async def test_unknown_dials_are_ignored_and_nonsense_is_400(self):
        self.assertEqual(await self.post_status("d-ffffffffffffffff", "CA1", "ringing"), 204)
        self.assertTrue([line for line in self.logs if line.startswith("STATUS_IGNORED")])
        self.assertEqual(await self.post_status("d-ffffffffffffffff", "CA1", "exploded"), 400)
        self.assertEqual(await self.post_status("nope", "CA1", "ringing"), 400)
