"""Dialling through Telnyx Call Control: the request against a loopback Telnyx (tests/fakes/
telnyx_rest.py), retries only when Telnyx surely placed no call, the Ed25519-signed webhooks
on a real loopback server, and the media socket matching a dial's stream by the token in
its URL."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import treq
import txaio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import make_http_client, start_server
from tests.fakes.rest_control import FAST, capture_log_lines
from tests.fakes.telnyx_rest import FakeTelnyx, TelnyxCall, webhook, webhook_headers
from tests.testing.outbound import Root
from tests.testing.carriers import TELNYX_CALL as CALL, telnyx_start as start_message
from tests.testing.carriers import HANDSHAKE, RecordingService, client_frame, server_frames
from voiced.carrier import media_token
from voiced.carrier.telnyx.protocol import TelnyxAdmission, TelnyxMediaStreamFactory
from voiced.config import Settings
from voiced.outbound.carrier_status import TelnyxStatus
from voiced.outbound.dialer import Dialer
from voiced.outbound.request import DialRequest
from voiced.outbound.telnyx_dial import TelnyxDialError, TelnyxDialer, client_state, dial_status
from voiced.web import mount

API_KEY = "KEY0123456789ABCDEF_telnyx"
CONNECTION = "1684641123236054244"
SECRET = "telnyx-media-secret-0123"
PUBLIC = "https://voice.example.com"
DIAL = "d-0123456789abcdef"
NOW = 1_700_000_000
SIGNING = Ed25519PrivateKey.generate()
PUBLIC_KEY = base64.b64encode(SIGNING.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class TelnyxDialerTests(TestCase):
    def setUp(self):
        self.telnyx = FakeTelnyx(API_KEY, CONNECTION, SIGNING, connect=False)
        self.server = start_server(self, self.telnyx)
        self.logs = capture_log_lines(self, "voiced")

    def dialer(self, api_key: str = API_KEY) -> TelnyxDialer:
        return TelnyxDialer(make_http_client(self), reactor, api_key, CONNECTION, PUBLIC, SECRET, 300,
                            api_base=self.server.url("").rstrip("/"), backoff=FAST)

    async def test_the_request_streams_the_call_to_voiced_with_the_dial_under_a_token(self):
        call_control_id = await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        self.assertEqual(call_control_id, self.telnyx.calls[0].call_control_id)
        body = self.telnyx.received[0].json()
        self.assertEqual((body["connection_id"], body["to"], body["from"]), (CONNECTION, "+15550100", "+15550111"))
        self.assertEqual((body["stream_track"], body["stream_bidirectional_mode"], body["stream_bidirectional_codec"]),
                         ("inbound_track", "rtp", "PCMU"))
        self.assertEqual(body["webhook_url"], f"{PUBLIC}/telnyx/status?dial={DIAL}")
        self.assertEqual(base64.b64decode(body["client_state"]).decode(), DIAL)
        url = urlsplit(body["stream_url"])
        self.assertEqual((url.scheme, url.netloc, url.path), ("wss", "voice.example.com", "/media/telnyx"))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.assertEqual(query["voiced_dial"], DIAL)
        self.assertIsNone(media_token.problem(SECRET, DIAL, query[media_token.PARAMETER], reactor.seconds()))

    async def test_503_is_retried_a_500_is_not_and_the_key_is_never_logged(self):
        self.telnyx.fail_with(503)
        await self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111")
        self.assertEqual(len(self.telnyx.received), 2)
        self.telnyx.fail_with(500)
        e = await self.assertFailure(self.dialer().place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     TelnyxDialError)
        self.assertEqual(str(e), "HTTP 500: code=10011 Please retry")
        self.assertEqual(len(self.telnyx.received), 3, "a second request could ring the callee twice")
        self.assertFalse([line for line in self.logs if API_KEY in line])
        self.assertNotIn(API_KEY, repr(self.dialer()))

    async def test_a_wrong_key_is_a_clear_error(self):
        e = await self.assertFailure(self.dialer("wrong").place(DIAL, DialRequest("+15550100"), "+15550111"),
                                     TelnyxDialError)
        self.assertEqual(str(e), "HTTP 401: code=10009 Authentication failed")

    def test_statuses(self):
        self.assertEqual(dial_status("call.initiated", {}), "initiated")
        self.assertEqual(dial_status("call.answered", {}), "answered")
        self.assertEqual(dial_status("streaming.started", {}), None)
        hangups = [("normal_clearing", "x"), ("user_busy", ""), ("timeout", ""), ("originator_cancel", ""),
                   ("unspecified", ""), ("unspecified", "2026-01-01T00:00:00Z")]
        self.assertEqual([dial_status("call.hangup", {"hangup_cause": c, "start_time": t}) for c, t in hangups],
                         ["completed", "busy", "no-answer", "canceled", "failed", "completed"])


class Carrier:
    carrier = "telnyx"

    def place(self, dial_id, request, from_number):
        return succeed("v3:" + dial_id)


class TelnyxWebhookTests(TestCase):
    def setUp(self):
        settings = Settings(telnyx_public_key=PUBLIC_KEY, public_url=PUBLIC, dial_from="+15550111")
        self.service = SimpleNamespace(settings=settings, clock=reactor,
                                       dialer=Dialer(Carrier(), Clock(), settings.dial_from))
        root = Root()
        mount(root, "telnyx/status", TelnyxStatus(self.service))
        self.server = start_server(self, root)
        self.fake = FakeTelnyx(API_KEY, CONNECTION, SIGNING)
        self.logs = capture_log_lines(self, "voiced")

    async def test_signed_webhooks_build_the_history_and_bad_signatures_are_403(self):
        dial_id = self.successResultOf(self.service.dialer.dial(DialRequest("+15550100")))
        call = TelnyxCall("v3:" + dial_id, {"from": "+15550111", "to": "+15550100", "client_state":
                                            client_state(dial_id),
                                            "webhook_url": self.server.url(f"/telnyx/status?dial={dial_id}")})
        self.assertEqual(await self.fake.send_webhook(call, "call.initiated"), 204)
        self.assertEqual(await self.fake.send_webhook(call, "call.answered", start_time="2026-01-01T00:00:00Z"), 204)
        self.assertEqual(await self.fake.send_webhook(call, "streaming.started"), 204)
        self.assertEqual(await self.fake.send_webhook(call, "call.hangup", key=Ed25519PrivateKey.generate(),
                                                      hangup_cause="user_busy"), 403)
        body = webhook("call.hangup", {"call_control_id": call.call_control_id, "client_state": client_state(dial_id),
                                       "hangup_cause": "user_busy"})
        stale = webhook_headers(SIGNING, body, timestamp=str(int(reactor.seconds()) - 3600))
        response = await treq.post(call.body["webhook_url"], data=body, headers=stale, persistent=False)
        await response.content()
        self.assertEqual(response.code, 403, "a replayed (stale) webhook")
        self.assertTrue([line for line in self.logs if line.startswith("STATUS_REJECTED carrier=telnyx")])
        self.assertEqual(await self.fake.send_webhook(call, "call.hangup", start_time="2026-01-01T00:00:00Z",
                                                      hangup_cause="normal_clearing", hangup_source="callee"), 204)
        view = self.service.dialer.snapshot(dial_id)
        self.assertEqual([h["status"] for h in view["history"]], ["queued", "initiated", "answered", "completed"])
        self.assertEqual(view["history"][-1]["detail"], "cause=normal_clearing source=callee")
        garbage = b'{"data": 1}'
        response = await treq.post(call.body["webhook_url"], data=garbage, headers=webhook_headers(SIGNING, garbage),
                                   persistent=False)
        await response.content()
        self.assertEqual(response.code, 400)


class DialStreamTests(SynchronousTestCase):
    """The Telnyx socket in process: a dialled call's stream URL brings its dial and token."""

    def connect(self, query: str):
        self.patch(txaio.config, "loop", Clock())
        clock = Clock()
        clock.advance(NOW)
        self.service = RecordingService(clock=clock)
        factory = TelnyxMediaStreamFactory(self.service, TelnyxAdmission(media_secret=SECRET))
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HANDSHAKE.replace(b"/media", b"/media/telnyx?" + query.encode()))
        self.assertIn(b"101 Switching Protocols", self.transport.value())
        self.transport.clear()

    def start(self, params=None):
        self.proto.dataReceived(client_frame(start_message(params), 0x1))

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def test_the_dials_token_admits_the_stream_and_names_the_dial(self):
        self.connect(f"voiced_dial={DIAL}&{media_token.PARAMETER}={media_token.issue(SECRET, DIAL, NOW, 300)}")
        self.start()
        self.assertIsNone(self.close_code())
        self.assertEqual(self.service.calls[0][0].custom_parameters, {"voiced_dial": DIAL})

    def test_another_dials_token_or_none_closes_1008(self):
        other = media_token.issue(SECRET, "d-ffffffffffffffff", NOW, 300)
        self.connect(f"voiced_dial={DIAL}&{media_token.PARAMETER}={other}")
        self.start()
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_a_dial_named_in_the_start_alone_is_not_taken(self):
        self.connect("x=1")
        self.start({"voiced_dial": DIAL, media_token.PARAMETER: media_token.issue(SECRET, CALL, NOW, 300)})
        self.assertIsNone(self.close_code())
        self.assertEqual(self.service.calls[0][0].custom_parameters, {})
