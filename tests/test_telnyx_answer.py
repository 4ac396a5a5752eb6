"""Telnyx's webhook signature (Ed25519 over ``timestamp|raw body``, 300 s tolerance) and the
TeXML answer behind it: refused with 403 before anything is read unless signed and fresh;
when admitted, a TeXML stream whose media token admits that call and no other."""

import base64
import io
import re
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from voiced.carrier import media_token
from voiced.carrier.telnyx import signature
from voiced.carrier.telnyx.answer import TexmlAnswer

NOW = 1_700_000_000
CALL = "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ"
# The TeXML voice webhook's form, as Telnyx's API reference shows it.
FORM = {"AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9", "CallSid": CALL, "CallSidLegacy": CALL,
        "ConnectionId": "1234567890", "From": "+35319605860", "To": "+13129457420", "CallerId": "John Doe"}
BODY = urlencode(FORM).encode()


class SignatureTests(SynchronousTestCase):
    def setUp(self):
        self.private = Ed25519PrivateKey.generate()
        self.key = signature.public_key(base64.b64encode(self.private.public_key().public_bytes_raw()).decode())

    def signed(self, timestamp=str(NOW), body=BODY):
        return signature.sign(self.private, timestamp, body)

    def test_a_fresh_signature_over_timestamp_and_raw_body_holds(self):
        self.assertIsNone(signature.problem(self.key, BODY, self.signed(), str(NOW), NOW + 299))
        self.assertIsNone(signature.problem(self.key, BODY, self.signed(), str(NOW), NOW - 299))
        # What is signed is exactly "timestamp|body": checked here without voiced's helper.
        raw = self.private.sign(f"{NOW}|".encode() + BODY)
        self.assertIsNone(signature.problem(self.key, BODY, base64.b64encode(raw).decode(), str(NOW), NOW))

    def test_what_does_not_hold(self):
        other = Ed25519PrivateKey.generate()
        cases = {
            "no telnyx-signature-ed25519": (BODY, None, str(NOW)),
            "no telnyx-timestamp": (BODY, self.signed(), None),
            "malformed telnyx-timestamp": (BODY, self.signed(), "17e8"),
            "not base64": (BODY, "%%%", str(NOW)),
            "not an Ed25519 signature's 64": (BODY, base64.b64encode(b"x" * 63).decode(), str(NOW)),
            "does not match": (BODY + b"&Extra=1", self.signed(), str(NOW)),  # a body changed in transit
        }
        cases["does not match "] = (BODY, signature.sign(other, str(NOW), BODY), str(NOW))  # another key's
        cases["does not match  "] = (BODY, self.signed(str(NOW)), str(NOW + 1))  # the timestamp is signed too
        for problem, (body, sig, stamp) in cases.items():
            self.assertIn(problem.strip(), signature.problem(self.key, body, sig, stamp, NOW) or "", problem)

    def test_a_stale_or_future_timestamp_is_refused(self):
        stale = str(NOW - 301)
        self.assertIn("stale", signature.problem(self.key, BODY, self.signed(stale), stale, NOW))
        future = str(NOW + 301)
        self.assertIn("stale", signature.problem(self.key, BODY, self.signed(future), future, NOW))

    def test_public_key_text(self):
        self.assertRaises(ValueError, signature.public_key, "not base64!")
        self.assertRaises(ValueError, signature.public_key, base64.b64encode(b"31 bytes" * 4)[:-4].decode())
        from voiced.config import ConfigError, Settings

        self.assertEqual(Settings.load({}, {"VOICED_TELNYX_PUBLIC_KEY": ""}).telnyx_public_key, "")
        good = base64.b64encode(bytes(32)).decode()
        self.assertEqual(Settings.load({}, {"VOICED_TELNYX_PUBLIC_KEY": good}).telnyx_public_key, good)
        for bad in ("not base64!", base64.b64encode(bytes(31)).decode()):
            self.assertRaises(ConfigError, Settings.load, {}, {"VOICED_TELNYX_PUBLIC_KEY": bad})


class AnswerTests(SynchronousTestCase):
    def setUp(self):
        self.private = Ed25519PrivateKey.generate()
        key = signature.public_key(base64.b64encode(self.private.public_key().public_bytes_raw()).decode())
        self.clock = Clock()
        self.clock.advance(NOW)
        self.answer = TexmlAnswer(key, "media-secret", "voice.example.com", self.clock, 300)

    def post(self, body=BODY, timestamp=str(NOW), sig="sign", answer=None):
        request = DummyRequest([b"telnyx"])
        request.method, request.uri = b"POST", b"/answer/telnyx"
        request.content = io.BytesIO(body)
        if sig == "sign":
            sig = signature.sign(self.private, timestamp or str(NOW), body)
        if sig is not None:
            request.requestHeaders.addRawHeader(b"telnyx-signature-ed25519", sig.encode())
        if timestamp is not None:
            request.requestHeaders.addRawHeader(b"telnyx-timestamp", timestamp.encode())
        text = (answer or self.answer).render_POST(request)
        return request.responseCode or 200, text.decode()

    def test_a_signed_request_gets_texml_whose_token_admits_only_this_call(self):
        status, texml = self.post()
        self.assertEqual(status, 200)
        self.assertIn('<Stream url="wss://voice.example.com/media/telnyx" track="inbound_track" codec="PCMU" '
                      'bidirectionalMode="rtp" bidirectionalCodec="PCMU">', texml)
        self.assertIn('<Parameter name="From" value="+35319605860"/>', texml)
        token = re.search(r'<Parameter name="voicedToken" value="([^"]+)"/>', texml).group(1)
        self.assertIsNone(media_token.problem("media-secret", CALL, token, NOW + 299))
        self.assertIsNotNone(media_token.problem("media-secret", CALL, token, NOW + 301))
        self.assertIsNotNone(media_token.problem("media-secret", "v3:another-call", token, NOW))

    def test_unsigned_forged_and_stale_requests_get_403(self):
        other = Ed25519PrivateKey.generate()
        for kwargs in ({"sig": None}, {"timestamp": None}, {"sig": signature.sign(other, str(NOW), BODY)},
                       {"sig": base64.b64encode(b"\0" * 64).decode()}, {"timestamp": str(NOW - 301)},
                       {"timestamp": str(NOW + 400)}):
            status, text = self.post(**kwargs)
            self.assertEqual((status, text), (403, "invalid signature\n"), kwargs)

    def test_open_mode_answers_without_a_signature_or_token(self):
        status, texml = self.post(sig=None, answer=TexmlAnswer(None, "", "", self.clock, 300))
        self.assertEqual(status, 200)
        self.assertNotIn("voicedToken", texml)
        self.assertIn('url="wss://localhost/media/telnyx"', texml)  # no public URL: the Host header

    def test_get_is_refused(self):
        request = DummyRequest([b"telnyx"])
        self.assertIn(b"POST only", self.answer.render_GET(request))
        self.assertEqual(request.responseCode, 405)
