"""Which carrier a dial goes through: every carrier with REST credentials can dial, a
request names one or takes ``--dial-carrier`` (unset: the first configured, Twilio first),
and a carrier without credentials is a clear 400 before anything is placed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes.http_apps import start_server
from tests.fakes.rest_control import capture_log_lines
from tests.testing.outbound import Root
from voiced.config import Settings
from voiced.outbound.carriers import CarrierDialers, carrier_dialers
from voiced.outbound.dialer import Dialer
from voiced.outbound.request import BadDialRequest, DialRequest
from voiced.web import add_admin_routes

PUBLIC = "https://voice.example.com"
TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_rest_token": "tw-token"}
PLIVO = {"plivo_auth_id": "MAZDQ1ZDC5YZA1NWRKMJ", "plivo_auth_token": "plivo-token"}
TELNYX = {"telnyx_api_key": "KEY_telnyx", "telnyx_connection_id": "1684641123236054244"}


class ChoiceTests(SynchronousTestCase):
    def choose(self, **settings):
        self.logs = capture_log_lines(self, "voiced")
        return carrier_dialers(Settings(public_url=PUBLIC, **settings), None, Clock())

    def test_every_configured_carrier_dials_and_twilio_is_the_first_default(self):
        dialers = self.choose(**TWILIO, **PLIVO, **TELNYX)
        self.assertEqual((dialers.names, dialers.carrier), (["twilio", "telnyx", "plivo"], "twilio"))
        self.assertEqual(self.choose(**PLIVO, **TELNYX).carrier, "telnyx")
        self.assertEqual(self.choose(**PLIVO, **TELNYX, dial_carrier="plivo").carrier, "plivo")

    def test_none_without_the_public_url_or_any_credentials_or_for_a_carrier_not_configured(self):
        self.assertIsNone(carrier_dialers(Settings(**PLIVO), None, Clock()))
        self.assertIsNone(self.choose())
        self.assertIsNone(self.choose(**TWILIO, dial_carrier="vonage"))
        self.assertTrue([line for line in self.logs if "--dial-carrier vonage needs" in line], self.logs)
        self.assertIsNone(self.choose(telnyx_api_key="KEY_telnyx"), "Call Control needs its application")

    def test_a_request_names_its_carrier(self):
        self.assertEqual(DialRequest.parse({"to": "+15550100", "carrier": "vonage"}).carrier, "vonage")
        self.assertEqual(DialRequest.parse({"to": "+15550100"}).carrier, "")
        with self.assertRaisesRegex(BadDialRequest, '"carrier" must be one of twilio, telnyx, plivo, vonage'):
            DialRequest.parse({"to": "+15550100", "carrier": "skype"})


class Carrier:
    def __init__(self, name):
        self.carrier = name
        self.placed = []

    def place(self, dial_id, request, from_number):
        self.placed.append(dial_id)
        return succeed(f"{self.carrier}-{dial_id}")


class RouteTests(TestCase):
    def setUp(self):
        self.twilio, self.plivo = Carrier("twilio"), Carrier("plivo")
        carriers = CarrierDialers({"twilio": self.twilio, "plivo": self.plivo}, "twilio")
        settings = Settings(admin_token="admin", public_url=PUBLIC, dial_from="+15550111")
        self.service = SimpleNamespace(settings=settings, ready=True,
                                       dialer=Dialer(carriers, reactor, settings.dial_from))
        root = Root()
        add_admin_routes(root, self.service)
        self.server = start_server(self, root)

    async def post(self, body):
        response = await treq.post(self.server.url("/calls"), data=json.dumps(body).encode(),
                                   headers={"Authorization": "Bearer admin"}, persistent=False)
        return response.code, json.loads(await response.content())

    async def test_the_request_s_carrier_places_the_call_and_is_the_dial_s(self):
        code, answer = await self.post({"to": "+15550100", "carrier": "plivo"})
        self.assertEqual(code, 201, answer)
        self.assertEqual((self.plivo.placed, self.twilio.placed), ([answer["id"]], []))
        view = self.service.dialer.snapshot(answer["id"])
        self.assertEqual((view["carrier"], view["call_sid"]), ("plivo", f"plivo-{answer['id']}"))
        code, answer = await self.post({"to": "+15550100"})
        self.assertEqual(self.twilio.placed, [answer["id"]], "no carrier named: the default")

    async def test_a_carrier_without_credentials_is_a_400_saying_which_can_dial(self):
        code, answer = await self.post({"to": "+15550100", "carrier": "vonage"})
        self.assertEqual(code, 400)
        self.assertEqual(answer["error"], "cannot dial through 'vonage': this daemon dials through twilio, plivo")
        self.assertEqual((self.plivo.placed, self.twilio.placed), ([], []))
