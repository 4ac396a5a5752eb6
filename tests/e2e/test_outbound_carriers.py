"""End to end: dialling through Plivo, Vonage and Telnyx. One daemon (twistd, local
engines) holds every carrier's REST credentials; ``voiced-dial --carrier X +15550100 --var
name=Dana`` asks it to place a call; the carrier's REST API is a loopback fake
(tests/fakes/<carrier>_rest.py) that answers as the carrier does, calls back signed, and
opens the call's media stream as the carrier would, with the callee saying "Hello?". The
bot greets only then, with the call's variable, and the journal holds the dial's status
history."""

from __future__ import annotations

import atexit
import base64
import os
import sys
import tempfile
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import tests.e2e.daemon as daemon_module
from tests.e2e.daemon import REPO, Daemon
from tests.fakes.http_apps import _TrackingFactory
from tests.fakes.plivo_rest import FakePlivo
from tests.fakes.telnyx_rest import FakeTelnyx
from tests.fakes.vonage_rest import FakeVonage
from voiced.caller.session import CallerLine
from voiced.demo import free_port
from voiced.journal import dials, store
from voiced.tts.local import EspeakSynthesizer

ADMIN = "admin-token-e2e"
PLIVO_ID, PLIVO_TOKEN = "MAE2EPLIVODIAL000000", "plivo-auth-token-e2e"
VONAGE_APP, VONAGE_SECRET = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "vonage-signature-secret-e2e-0123"
VONAGE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TELNYX_API_KEY, TELNYX_CONNECTION = "KEYE2E0123456789_telnyx", "1684641123236054244"
TELNYX_SIGNING = Ed25519PrivateKey.generate()
TELNYX_PUBLIC_KEY = base64.b64encode(TELNYX_SIGNING.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
DIALOG = """[greeting]
say = Hello {name}, this is Riverside Clinic calling about your appointment.
[reprompt]
say = Sorry, I didn't catch that.
[fallback]
say = I heard you say: {text}.
"""


class CarrierApis(Resource):
    """Every carrier's fake REST API on one loopback port: their paths differ."""

    isLeaf = True

    def __init__(self, by_prefix: dict[str, Resource]) -> None:
        super().__init__()
        self.by_prefix = by_prefix

    def render(self, request: Request) -> Any:
        path = request.path.decode()
        for prefix, fake in self.by_prefix.items():
            if path.startswith(prefix):
                return fake.render(request)
        request.setResponseCode(404)
        return b"{}"


class Shared:
    """One daemon for every carrier (trial has no setUpClass), and the port its carriers'
    REST APIs are on: each test serves its own fakes there."""

    def __init__(self) -> None:
        self.api_port = free_port()
        rundir = tempfile.mkdtemp(prefix="voiced-e2e-dial-carriers-")
        self.journal = os.path.join(rundir, "journal.db")
        script = os.path.join(rundir, "reminder.dialog")
        with open(script, "w", encoding="utf-8") as f:
            f.write(DIALOG)
        api = f"http://127.0.0.1:{self.api_port}"
        key_file = os.path.join(rundir, "vonage.key")
        with open(key_file, "wb") as f:
            f.write(VONAGE_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        port = free_port()
        self.admin_url = f"http://127.0.0.1:{port}"  # the public URL must name the daemon's port
        real_free_port, daemon_module.free_port = daemon_module.free_port, lambda: port
        try:
            self.daemon = Daemon(env={
                "VOICED_PUBLIC_URL": self.admin_url, "VOICED_ADMIN_TOKEN": ADMIN, "VOICED_DIAL_FROM": "+15550111",
                "VOICED_JOURNAL": self.journal, "VOICED_SCRIPT": script,
                # Long enough that only the callee's "Hello?" can release the greeting.
                "VOICED_OUTBOUND_HELLO_TIMEOUT_MS": "10000", "VOICED_AMD": "off",
                "VOICED_PLIVO_AUTH_ID": PLIVO_ID, "VOICED_PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
                "VOICED_PLIVO_API_BASE": api,
                "VOICED_VONAGE_APPLICATION_ID": VONAGE_APP, "VOICED_VONAGE_PRIVATE_KEY_FILE": key_file,
                "VOICED_VONAGE_SIGNATURE_SECRET": VONAGE_SECRET, "VOICED_VONAGE_API_BASE": api,
                "VOICED_TELNYX_API_KEY": TELNYX_API_KEY, "VOICED_TELNYX_CONNECTION_ID": TELNYX_CONNECTION,
                "VOICED_TELNYX_PUBLIC_KEY": TELNYX_PUBLIC_KEY, "VOICED_TELNYX_API_BASE": api,
            })
        finally:
            daemon_module.free_port = real_free_port
        atexit.register(self.daemon.stop)
        self.daemon.wait_ready()


_shared: Shared | None = None


def shared() -> Shared:
    global _shared
    if _shared is None:
        _shared = Shared()
    return _shared


class OutboundCarrierTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.shared = shared()
        self.daemon, self.journal, self.admin_url = self.shared.daemon, self.shared.journal, self.shared.admin_url
        hello = EspeakSynthesizer("en-US").synthesize_blocking("Hello?")
        lines = [CallerLine(hello, "Hello?")]
        self.plivo = FakePlivo(PLIVO_ID, PLIVO_TOKEN, lines=lines, reply_timeout_s=1.5)
        self.vonage = FakeVonage(VONAGE_APP, VONAGE_KEY.public_key(), VONAGE_SECRET, lines=lines,
                                 reply_timeout_s=1.5)
        self.telnyx = FakeTelnyx(TELNYX_API_KEY, TELNYX_CONNECTION, TELNYX_SIGNING, lines=lines,
                                 reply_timeout_s=1.5)
        site = Site(CarrierApis({"/v1/Account/": self.plivo, "/v1/calls": self.vonage, "/v2/calls": self.telnyx}))
        site.noisy = False
        factory = _TrackingFactory(site)
        factory.noisy = False
        listening = reactor.listenTCP(self.shared.api_port, factory, interface="127.0.0.1")
        self.addCleanup(lambda: gatherResults([listening.stopListening(), factory.close_all()]))

    def dial(self, *args: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICED_")}
        env.update(PYTHONPATH=REPO, VOICED_ADMIN_TOKEN=ADMIN, VOICED_ADMIN_URL=self.admin_url)
        return getProcessOutputAndValue(sys.executable, ["-m", "voiced.outbound.cli", *args], env=env, path=REPO)

    async def dial_and_check(self, carrier: str, done: Any, call_id: Any, statuses: list[str]) -> str:
        out, err, code = await self.dial("--carrier", carrier, "+15550100", "--var", "name=Dana", "--wait")
        report = await done()
        await deferLater(reactor, 2.5, lambda: None)  # Autobahn's client close-handshake timers
        printed = out.decode().splitlines()
        self.assertEqual(code, 0, (printed, err.decode(), self.daemon.log()[-3000:]))
        dial_id = printed[0]
        self.assertRegex(dial_id, r"^d-[0-9a-f]{16}$")
        self.assertEqual([line.split()[1] for line in printed[1:]], statuses)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.connected)
        hello = report.turns[0]
        self.assertIsNotNone(hello.speech_end_s)
        self.assertGreater(report.replies[0].first_audio_s, hello.speech_end_s, "the bot waited for the callee")
        greeting = [line for line in self.daemon.lines(" BOT ") if f"call={call_id()}" in line]
        self.assertTrue(greeting, self.daemon.log()[-3000:])
        self.assertIn("Hello Dana, this is Riverside Clinic", greeting[0])
        connected = [line for line in self.daemon.lines("DIAL_CONNECTED") if dial_id in line]
        self.assertEqual(len(connected), 1)
        conn = store.open_read_only(self.journal)
        try:
            self.assertEqual([e["status"] for e in dials.events(conn, dial_id)], statuses)
            row = conn.execute("SELECT carrier, status, call_sid FROM dials WHERE dial_id = ?", (dial_id,)).fetchone()
            self.assertEqual(tuple(row), (carrier, "completed", call_id()))
        finally:
            conn.close()
        return dial_id

    async def test_plivo(self):
        async def done():
            call = await self.plivo.call(0)
            return await call.done

        await self.dial_and_check("plivo", done, lambda: self.plivo.calls[0].call_uuid,
                                  ["queued", "ringing", "answered", "completed"])
        call = self.plivo.calls[0]
        self.assertEqual((call.body["to"], call.body["from"]), ("15550100", "15550111"))
        self.assertEqual([status for status, _ in call.callbacks], ["ringing", "completed"])
        self.assertEqual([code for _, code in call.callbacks], [204, 204], "every signed callback accepted")
        self.assertEqual(call.answer_status, 200)

    async def test_vonage(self):
        async def done():
            call = await self.vonage.call(0)
            return await call.done

        dial_id = await self.dial_and_check("vonage", done, lambda: self.vonage.calls[0].uuid,
                                            ["queued", "initiated", "ringing", "answered", "completed"])
        call = self.vonage.calls[0]
        self.assertEqual((call.body["to"][0]["number"], call.body["from"]["number"]), ("15550100", "15550111"))
        self.assertEqual(call.endpoint["headers"]["voiced_dial"], dial_id)
        self.assertEqual([status for status, _ in call.events], ["started", "ringing", "answered", "completed"])
        self.assertEqual([code for _, code in call.events], [204] * 4, "every signed event accepted")

    async def test_telnyx(self):
        async def done():
            call = await self.telnyx.call(0)
            return await call.done

        dial_id = await self.dial_and_check("telnyx", done, lambda: self.telnyx.calls[0].call_control_id,
                                            ["queued", "initiated", "answered", "completed"])
        call = self.telnyx.calls[0]
        self.assertEqual((call.body["to"], call.body["from"]), ("+15550100", "+15550111"))
        self.assertIn(f"voiced_dial={dial_id}", call.body["stream_url"])
        self.assertEqual([event for event, _ in call.webhooks], ["call.initiated", "call.answered", "call.hangup"])
        self.assertEqual([code for _, code in call.webhooks], [204] * 3, "every signed webhook accepted")
