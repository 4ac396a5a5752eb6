"""``POST /twilio/amd``: Twilio's asynchronous AMD verdict, signed as Twilio signs (the
official ``twilio`` package's RequestValidator computes the signatures, an independent
check of ours), reaching the live outbound call it names."""

from __future__ import annotations

import io
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator
from twisted.web.test.requesthelper import DummyRequest

from tests.testing.machine import GREETING, VOICEMAIL, OutboundCall
from tests.turn_harness import logged
from voiced.app import mount_twilio_amd
from voiced.carrier.twilio.amd import TwilioAmdCallback
from voiced.config import Settings
from voiced.web import Branch, build_site

TOKEN = "12345678901234567890123456789012"
HOST = "voice.example.com"
URL = f"https://{HOST}/twilio/amd"


def callback_form(call_sid: str = "CA1", answered_by: str = "human") -> dict[str, str]:
    return {"AccountSid": "AC" + "0" * 32, "CallSid": call_sid, "AnsweredBy": answered_by,
            "MachineDetectionDuration": "2140"}


class AmdCallbackTests(OutboundCall):
    def setUp(self):
        # The service's CallHub tells the Dialer of each "answered" (voiced.outbound.dialer.Dialer.call_event).
        self.told: list[tuple[str, str]] = []
        told = self.told

        class Observer:
            def call_event(self, record, kind, data):
                if kind == "answered":
                    told.append((record.dial_id, data["answered_by"]))

        self.make_call(amd="carrier", observer=Observer())
        self.live = {"CA1": self.call}
        self.resource = TwilioAmdCallback(TOKEN, f"https://{HOST}", self.live.get)

    def post(self, form: dict[str, str], signature: str | None = None, sign_url: str = URL,
             resource: TwilioAmdCallback | None = None) -> tuple[int, bytes]:
        request = DummyRequest([b"twilio", b"amd"])
        request.method, request.uri = b"POST", b"/twilio/amd"
        request.content = io.BytesIO(urlencode(form).encode())
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(sign_url, form)
        if signature:
            request.requestHeaders.addRawHeader(b"x-twilio-signature", signature.encode())
        body = (resource or self.resource).render_POST(request)
        return request.responseCode or 200, body

    def test_a_signed_human_verdict_greets_the_live_call(self):
        self.assertEqual(self.post(callback_form(answered_by="human")), (200, b""))
        self.assertEqual(self.tts.spoken, GREETING)
        self.assertEqual(self.call.record.answered_by, "human")
        self.assertEqual(self.answered("human", "carrier"), 1)

    def test_machine_end_beep_leaves_the_message_at_once(self):
        self.monologue(2.0)
        self.assertEqual(self.post(callback_form(answered_by="machine_end_beep"))[0], 200)
        self.assertEqual(self.tts.spoken, VOICEMAIL)
        self.play_out()
        self.assertEqual(self.transport.sent[-1], ("hangup",))

    def test_the_verdict_reaches_the_calls_dial(self):
        self.monologue(2.0)
        self.post(callback_form(answered_by="machine_end_beep"))
        self.assertEqual(self.told, [("d-1", "machine")])

    def test_the_signature_may_name_the_default_port(self):
        form = callback_form(answered_by="unknown")
        self.assertEqual(self.post(form, sign_url=f"https://{HOST}:443/twilio/amd")[0], 200)
        self.assertEqual(self.tts.spoken, GREETING)

    def test_the_signature_is_over_the_callback_url_voiced_gave_twilio(self):
        # AsyncAmdStatusCallback is {--public-url}/twilio/amd?dial=...: its scheme and path prefix are signed.
        behind_a_prefix = TwilioAmdCallback(TOKEN, "http://10.0.0.5:8080/voiced/", self.live.get)
        form = callback_form(answered_by="human")
        signed = "http://10.0.0.5:8080/voiced/twilio/amd"
        self.assertEqual(self.post(form, sign_url=URL, resource=behind_a_prefix)[0], 403)
        self.assertEqual(self.post(form, sign_url=signed, resource=behind_a_prefix)[0], 200)
        self.assertEqual(self.tts.spoken, GREETING)

    def test_a_wrong_or_missing_signature_is_403_and_changes_nothing(self):
        rejected = logged(self, "AMD_CALLBACK_REJECTED")
        form = callback_form(answered_by="fax")
        wrong = RequestValidator("another account's token").compute_signature(URL, form)
        self.assertEqual(self.post(form, signature=wrong)[0], 403)
        self.assertEqual(self.post(form, signature="")[0], 403)
        tampered = RequestValidator(TOKEN).compute_signature(URL, callback_form(answered_by="human"))
        self.assertEqual(self.post(form, signature=tampered)[0], 403)  # signed for another verdict
        self.assertEqual(self.transport.sent, [])
        self.assertEqual(len(rejected), 3)

    def test_a_call_that_is_not_live_here_is_200_and_logged(self):
        ignored = logged(self, "AMD_CALLBACK call=")
        self.assertEqual(self.post(callback_form(call_sid="CAgone")), (200, b""))
        self.assertIn("no such live call", ignored[0]["log_format"])
        self.assertEqual(ignored[0]["call"], "CAgone")
        self.assertEqual(self.tts.spoken, [])

    def test_without_a_token_it_is_taken_unsigned_like_twiml(self):
        unsigned = TwilioAmdCallback("", f"https://{HOST}", self.live.get)
        self.assertEqual(self.post(callback_form(), signature="", resource=unsigned)[0], 200)
        self.assertEqual(self.tts.spoken, GREETING)

    def test_a_form_without_the_verdict_is_400(self):
        self.assertEqual(self.post({"CallSid": "CA1"})[0], 400)

    def test_get_is_405(self):
        request = DummyRequest([b"twilio", b"amd"])
        self.resource.render_GET(request)
        self.assertEqual(request.responseCode, 405)


class MountTests(OutboundCall):
    def test_mounted_beside_twiml_on_the_carriers_site(self):
        class Service:
            def call_by_id(self, call_id):
                return None

        site = build_site(None, [], with_admin=False)  # type: ignore[arg-type]
        mount_twilio_amd(site.resource, Service(), Settings(twilio_auth_token=TOKEN, public_url=f"https://{HOST}"))
        resource = site.getResourceFor(DummyRequest([b"twilio", b"amd"]))
        if isinstance(resource, Branch):
            resource = resource.default
        self.assertIsInstance(resource, TwilioAmdCallback)
        self.assertEqual((resource.auth_token, resource.public_url), (TOKEN, f"https://{HOST}"))


class ServiceTests(OutboundCall):
    def test_call_by_id_finds_the_live_call(self):
        from twisted.internet.task import Clock

        from voiced.service import VoicedService

        service = VoicedService(Settings.load({}, {}), reactor=Clock())
        self.make_call()
        service.calls.add(self.call)
        self.assertIs(service.call_by_id("CA1"), self.call)
        self.assertIsNone(service.call_by_id("CAother"))

    def test_the_amd_setting(self):
        from voiced.config import ConfigError

        self.assertEqual(Settings.load({}, {}).amd, "voiced")
        self.assertEqual(Settings.load({}, {"VOICED_AMD": "carrier"}).amd, "carrier")
        self.assertEqual(Settings.load({"amd": "off"}, {"VOICED_AMD": "carrier"}).amd, "off")
        with self.assertRaises(ConfigError) as caught:
            Settings.load({}, {"VOICED_AMD": "maybe"})
        self.assertIn("VOICED_AMD", str(caught.exception))
