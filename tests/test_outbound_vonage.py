"""Dialling through Vonage: the Voice API request against a loopback Vonage (tests/fakes/
vonage_rest.py, which checks the application JWT with the public key), retries only when
Vonage surely placed no call, and the signed event callbacks on a real loopback server."""

from __future__ import annotations

import json
from types import SimpleNamespace

import treq
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.fakes.http_apps import make_http_client, start_server
from tests.fakes.rest_control import FAST, capture_log_lines
from tests.fakes.vonage_rest import FakeVonage, signed_webhook_jwt
from tests.testing.outbound import Root
from voiced.carrier import media_token
from voiced.carrier.vonage.rest import VonageRestError
from voiced.config import Settings
from voiced.outbound.carrier_status import VonageStatus
from voiced.outbound.dialer import Dialer
from voiced.outbound.request import DialRequest
from voiced.outbound.vonage_dial import VonageDialer, dial_call_id, dial_status
from voiced.web import mount

APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SECRET = "vonage-signature-secret-0123456789"
PUBLIC = "https://voice.example.com"
DIAL = "d-0123456789abcdef"


class VonageDialerTests(TestCase):
    def setUp(self):
        self.vonage = FakeVonage(APP_ID, KEY.public_key(), SECRET, connect=False)
        self.server = start_server(self, self.vonage)
        self.logs = capture_log_lines(self, "voiced")

    def dialer(self, key: rsa.RSAPrivateKey = KEY) -> VonageDialer:
        return VonageDialer(make_http_client(self), reactor, APP_ID, key, PUBLIC, SECRET, 300, 16000,
                            api_base=self.server.url("").rstrip("/"), backoff=FAST)

    async def test_the_request_connects_the_call_to_voiced_naming_the_dial(self):
        call_uuid = await self.dialer().place(DIAL, DialRequest("+15550100", {"name": "Dana"}), "+15550111")
        self.assertEqual(call_uuid, self.vonage.calls[0].uuid)
        body = self.vonage.received[0].json()
        self.assertEqual((body["to"], body["from"]), ([{"type": "phone", "number": "15550100"}],
                                                      {"type": "phone", "number": "15550111"}))
        self.assertEqual((body["event_url"], body["event_method"]), ([f"{PUBLIC}/vonage/status?dial={DIAL}"], "POST"))
        [connect] = body["ncco"]
        [endpoint] = connect["endpoint"]
        self.assertEqual((connect["action"], endpoint["type"], endpoint["uri"], endpoint["content-type"]),
                         ("connect", "websocket", "wss://voice.example.com/media/vonage", "audio/l16;rate=16000"))
        headers = endpoint["headers"]
        self.assertEqual(headers["voiced_dial"], DIAL)
        self.assertIsNone(media_token.problem(SECRET, DIAL, headers[media_token.PARAMETER], reactor.seconds()))
        self.assertEqual(endpoint["authorization"], {"type": "vonage"})
        self.assertNotIn("machine_detection", body)

    async def test_503_is_retried_a_500_is_not_and_the_key_is_never_shown(self):
        self.vonage.fail_with(503)
        await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        self.assertEqual(len(self.vonage.received), 2)
        self.vonage.fail_with(500)
        e = await self.assertFailure(self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     VonageRestError)
        self.assertEqual(str(e), "HTTP 500: Please retry")
        self.assertEqual(len(self.vonage.received), 3, "a second request could ring the callee twice")
        self.assertNotIn("PRIVATE", repr(self.dialer()))

    async def test_a_token_signed_with_another_key_is_refused(self):
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        e = await self.assertFailure(self.dialer(other).place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     VonageRestError)
        self.assertEqual(str(e), "HTTP 401: Unauthorized invalid token")

    def test_statuses(self):
        self.assertEqual([dial_status(s) for s in ("started", "ringing", "answered", "completed", "busy",
                                                    "cancelled", "unanswered", "timeout", "rejected", "failed",
                                                    "human", "machine")],
                         ["initiated", "ringing", "answered", "completed", "busy", "canceled", "no-answer",
                          "no-answer", "busy", "failed", None, None])


class Carrier:
    carrier = "vonage"

    def place(self, dial_id, request, from_number):
        return succeed("uuid-" + dial_id)


class VonageEventTests(TestCase):
    def setUp(self):
        settings = Settings(vonage_signature_secret=SECRET, public_url=PUBLIC, dial_from="+15550111")
        self.service = SimpleNamespace(settings=settings, clock=reactor,
                                       dialer=Dialer(Carrier(), Clock(), settings.dial_from))
        root = Root()
        mount(root, "vonage/status", VonageStatus(self.service))
        self.server = start_server(self, root)
        self.logs = capture_log_lines(self, "voiced")

    async def post(self, path: str, event: dict, secret: str = SECRET, body: bytes | None = None) -> int:
        signed = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {signed_webhook_jwt(secret, signed)}"}
        response = await treq.post(self.server.url(path), data=signed if body is None else body, headers=headers,
                                   persistent=False)
        await response.content()
        return response.code

    async def test_signed_events_build_the_history_and_bad_signatures_are_403(self):
        dial_id = self.successResultOf(self.service.dialer.dial(DialRequest("+15550100")))
        path = f"/vonage/status?dial={dial_id}"
        uuid = "uuid-" + dial_id
        for status in ("started", "ringing", "answered", "human"):
            self.assertEqual(await self.post(path, {"status": status, "uuid": uuid}), 204)
        completed = {"status": "completed", "uuid": uuid, "duration": "42"}
        self.assertEqual(await self.post(path, completed, secret="not-the-secret"), 403)
        self.assertEqual(await self.post(path, completed, body=json.dumps({**completed, "duration": "1"}).encode()),
                         403, "the body is not the one signed")
        response = await treq.post(self.server.url(path), json=completed, persistent=False)
        await response.content()
        self.assertEqual(response.code, 403, "unsigned")
        self.assertTrue([line for line in self.logs if line.startswith("STATUS_REJECTED carrier=vonage")])
        self.assertEqual(await self.post(path, completed), 204)
        view = self.service.dialer.snapshot(dial_id)
        self.assertEqual([h["status"] for h in view["history"]],
                         ["queued", "initiated", "ringing", "answered", "completed"])
        self.assertEqual(view["history"][-1]["detail"], "duration_s=42")
        self.assertEqual(view["answered_by"], "human", "machine_detection's verdict")
        self.assertEqual(await self.post(path, {"uuid": uuid}), 400)
        self.assertEqual(await self.post("/vonage/status?dial=nope", completed), 400)

    def test_a_dials_stream_takes_the_call_uuid_vonage_gave_the_dial(self):
        dial_id = self.successResultOf(self.service.dialer.dial(DialRequest("+15550100")))
        self.assertEqual(dial_call_id(self.service, dial_id), "uuid-" + dial_id)
        self.assertEqual(dial_call_id(self.service, "d-ffffffffffffffff"), "")
        self.assertEqual(dial_call_id(SimpleNamespace(dialer=None), dial_id), "")
