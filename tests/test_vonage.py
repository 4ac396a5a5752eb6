"""Vonage's wire model, its signed-webhook JWT, the NCCO answer and the carrier's modes:
pure functions and one resource, with hypothesis over malformed input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from urllib.parse import urlencode

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.testing.carriers import RecordingService
from voiced.carrier import media_token
from voiced.audio import AudioFormat
from voiced.carrier.gate import CarrierOff
from voiced.carrier.vonage import carrier, signature, wire
from voiced.carrier.vonage.answer import NccoAnswer
from voiced.config import ConfigError, Settings

SECRET = "vonage-signature-secret"
NOW = 1_700_000_000
UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
CALL = {"to": "447700900000", "from": "447700900001", "uuid": UUID, "conversation_uuid": "CON-" + UUID}


def token(secret: str = SECRET, **claims) -> str:
    return signature.sign_hs256({"iat": NOW, "jti": "j1", "iss": "Vonage", **claims}, secret)


class WireTests(SynchronousTestCase):
    def test_connected_carries_the_format_and_the_ncco_headers_at_top_level(self):
        message = wire.parse_text('{"event":"websocket:connected","content-type":"audio/l16;rate=16000",'
                                  '"uuid":"u1","age":40,"address":{"city":"NYC"}}')
        self.assertEqual(message, wire.Connected("audio/l16;rate=16000",
                                                 {"uuid": "u1", "age": "40", "address": '{"city":"NYC"}'}))
        self.assertEqual(wire.parse_text(b'{"event":"websocket:connected"}'), wire.Connected("", {}))

    def test_audio_formats(self):
        self.assertEqual(wire.audio_format("audio/l16;rate=16000"), AudioFormat("pcm_s16le", 16000))
        self.assertEqual(wire.audio_format("Audio/L16; rate=8000 "), AudioFormat("pcm_s16le", 8000))
        self.assertEqual(wire.audio_format("audio/l16;rate=24000"), AudioFormat("pcm_s16le", 24000))
        for bad in ("", "audio/l16;rate=44100", "audio/x-mulaw;rate=8000", "audio/l16", None, 5):
            self.assertIsNone(wire.audio_format(bad))

    def test_dtmf_as_the_guide_documents_it_and_as_pipecat_reads_it(self):
        self.assertEqual(wire.parse_text('{"event":"websocket:dtmf","digit":"5","duration":260}'), wire.Dtmf("5", 260))
        self.assertEqual(wire.parse_text('{"event":"websocket:dtmf","dtmf":{"digit":"#"}}'), wire.Dtmf("#"))
        self.assertEqual(wire.parse_text('{"event":"websocket:dtmf","digit":7}'), wire.Dtmf("7"))
        for bad in ('{"event":"websocket:dtmf"}', '{"event":"websocket:dtmf","digit":"12"}',
                    '{"event":"websocket:dtmf","digit":"x"}', '{"event":"websocket:dtmf","digit":true}'):
            with self.assertRaises(wire.ProtocolError):
                wire.parse_text(bad)

    def test_notify_cleared_and_unknown(self):
        self.assertEqual(wire.parse_text('{"event":"websocket:notify","payload":{"name":"r1.s0"}}'),
                         wire.Notify("r1.s0"))
        self.assertEqual(wire.parse_text('{"event":"websocket:cleared"}'), wire.Cleared())
        self.assertEqual(wire.parse_text('{"event":"websocket:future"}'), wire.Unknown("websocket:future"))
        for bad in ('{"event":"websocket:notify"}', '{"event":"websocket:notify","payload":{"other":1}}',
                    "[]", "{", '{"no":"event"}', "\ud800"):
            with self.assertRaises(wire.ProtocolError):
                wire.parse_text(bad)

    def test_outbound_and_the_ncco(self):
        self.assertEqual(json.loads(wire.CLEAR_MESSAGE), {"action": "clear"})
        self.assertEqual(json.loads(wire.notify_message("r2.end")), {"action": "notify", "payload": {"name": "r2.end"}})
        [connect] = wire.connect_ncco("wss://h/media/vonage", 8000, {"uuid": "u"}, signed_upgrade=True)
        self.assertEqual(connect, {"action": "connect", "endpoint": [{
            "type": "websocket", "uri": "wss://h/media/vonage", "content-type": "audio/l16;rate=8000",
            "headers": {"uuid": "u"}, "authorization": {"type": "vonage"}}]})
        self.assertNotIn("authorization", wire.connect_ncco("wss://h", 16000, {}, False)[0]["endpoint"][0])

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    def test_any_text_parses_or_raises_protocol_error(self, text):
        try:
            wire.parse_text(text)
        except wire.ProtocolError:
            pass

    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=3),
                               max_leaves=10)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["websocket:connected", "websocket:dtmf", "websocket:notify", "websocket:cleared", 5]),
           st.dictionaries(st.sampled_from(["digit", "dtmf", "payload", "content-type", "uuid", "duration"]),
                           json_values, max_size=4))
    def test_any_message_shape_parses_or_raises_protocol_error(self, event, fields):
        try:
            message = wire.parse_text(json.dumps({"event": event, **fields}))
        except wire.ProtocolError:
            return
        if isinstance(message, wire.Connected):
            self.assertTrue(all(isinstance(v, str) for v in message.headers.values()))


class SignatureTests(SynchronousTestCase):
    def test_a_vonage_token_verifies_and_gives_its_claims(self):
        claims = signature.verify(SECRET, f"Bearer {token(payload_hash='ab')}", NOW + 10)
        self.assertEqual((claims["iss"], claims["payload_hash"]), ("Vonage", "ab"))
        self.assertEqual(signature.verify(SECRET, f"bearer  {token()} ", NOW)["jti"], "j1")

    def test_refusals_say_why(self):
        good = token()
        header, claims, mac = good.split(".")
        none_alg = signature.b64url_encode(b'{"alg":"none","typ":"JWT"}')
        other_claims = signature.b64url_encode(b'{"iat":1}')
        cases = {
            None: "no Authorization",
            f"Basic {good}": "not a Bearer",
            f"Bearer {token('another-secret')}": "does not match",
            f"Bearer {header}.{other_claims}.{mac}": "does not match",
            f"Bearer {none_alg}.{claims}.": "not HS256",
            f"Bearer {token(iat=NOW - 301)}": "stale",
            f"Bearer {token(iat=NOW + 301)}": "stale",
            f"Bearer {signature.sign_hs256({'jti': 'j'}, SECRET)}": "no iat",
            f"Bearer {token(exp=NOW - 1)}": "expired",
            "Bearer a.b": "malformed",
            "Bearer !!!.###.$$$": "malformed",
            f"Bearer {signature.sign_hs256([1], SECRET)}": "malformed JWT claims",
        }
        for authorization, why in cases.items():
            with self.assertRaises(signature.SignatureError, msg=authorization) as caught:
                signature.verify(SECRET, authorization, NOW)
            self.assertIn(why, str(caught.exception))

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300))
    def test_any_header_verifies_or_raises_signature_error(self, authorization):
        try:
            signature.verify(SECRET, authorization, NOW)
        except signature.SignatureError:
            pass

    def test_payload_hash_of_a_post_body_and_of_a_get_query(self):
        body = json.dumps(CALL, separators=(",", ":")).encode()
        self.assertIsNone(signature.payload_problem({"payload_hash": hashlib.sha256(body).hexdigest()}, body))
        spaced = json.dumps(CALL, indent=2).encode()  # re-serialized compactly, as Vonage's article says
        self.assertIsNone(signature.payload_problem({"payload_hash": hashlib.sha256(body).hexdigest()}, spaced))
        self.assertIsNone(signature.payload_problem({"payload_hash": hashlib.sha256(spaced).hexdigest()}, spaced))
        self.assertIn("does not match", signature.payload_problem({"payload_hash": "00"}, body))
        self.assertIn("no payload_hash", signature.payload_problem({}, body))
        query = list(CALL.items())
        digest = hashlib.sha256(json.dumps(CALL, separators=(",", ":")).encode()).hexdigest()
        self.assertIsNone(signature.payload_problem({"payload_hash": digest}, b"", query))
        self.assertIsNone(signature.payload_problem({}, b"", query))
        self.assertIn("does not match", signature.payload_problem({"payload_hash": digest}, b"", query[::-1]))
        self.assertIn("not text", signature.payload_problem({"payload_hash": 5}, body))


def answer_request(method: bytes, fields: dict, authorization: str | None = None, as_json: bool = True):
    request = DummyRequest([b""])
    request.method = method
    request.requestHeaders.addRawHeader(b"host", b"voice.example.com")
    if method == b"GET":
        request.uri = b"/answer/vonage?" + urlencode(fields).encode()
        request.content = io.BytesIO(b"")
    else:
        request.uri = b"/answer/vonage"
        request.content = io.BytesIO(json.dumps(fields).encode() if as_json else urlencode(fields).encode())
    if authorization:
        request.requestHeaders.addRawHeader(b"authorization", authorization.encode())
    return request


class AnswerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)

    def ncco(self, request, answer):
        body = answer.render(request)
        self.assertEqual(request.responseCode or 200, 200, body)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        [connect] = json.loads(body)
        return connect["endpoint"][0]

    def test_unsigned_get_connects_the_call_to_the_media_socket(self):
        endpoint = self.ncco(answer_request(b"GET", CALL), NccoAnswer("", "", self.clock, 300, 8000))
        self.assertEqual(endpoint["uri"], "wss://voice.example.com/media/vonage")
        self.assertEqual(endpoint["content-type"], "audio/l16;rate=8000")
        self.assertEqual(endpoint["headers"], {k: CALL[k] for k in ("uuid", "conversation_uuid", "from", "to")})
        self.assertNotIn("authorization", endpoint)

    def test_signed_post_gets_a_media_token_for_its_call_and_a_signed_upgrade(self):
        body = json.dumps(CALL).encode()
        jwt = token(payload_hash=hashlib.sha256(body).hexdigest())
        answer = NccoAnswer(SECRET, "public.example.com", self.clock, 300)
        endpoint = self.ncco(answer_request(b"POST", CALL, f"Bearer {jwt}"), answer)
        self.assertEqual(endpoint["uri"], "wss://public.example.com/media/vonage")
        self.assertEqual(endpoint["authorization"], {"type": "vonage"})
        minted = endpoint["headers"][media_token.PARAMETER]
        self.assertIsNone(media_token.problem(SECRET, UUID, minted, NOW + 299))
        self.assertLessEqual(wire.header_bytes(endpoint["headers"]), 512)  # Vonage's documented limit

    def test_signed_get_with_its_query_hash(self):
        digest = hashlib.sha256(json.dumps(CALL, separators=(",", ":")).encode()).hexdigest()
        request = answer_request(b"GET", CALL, f"Bearer {token(payload_hash=digest)}")
        self.assertIn(media_token.PARAMETER, self.ncco(request, NccoAnswer(SECRET, "", self.clock, 300))["headers"])

    def test_unsigned_forged_stale_or_tampered_requests_are_refused_403(self):
        answer = NccoAnswer(SECRET, "", self.clock, 300)
        body_hash = hashlib.sha256(json.dumps(CALL).encode()).hexdigest()
        tampered = dict(CALL, to="449990000000")
        for request in (answer_request(b"GET", CALL),
                        answer_request(b"GET", CALL, f"Bearer {token('wrong')}"),
                        answer_request(b"GET", CALL, f"Bearer {token(iat=NOW - 600)}"),
                        answer_request(b"POST", tampered, f"Bearer {token(payload_hash=body_hash)}"),
                        answer_request(b"POST", CALL, f"Bearer {token()}")):
            self.assertEqual(answer.render(request), b"invalid signature\n")
            self.assertEqual(request.responseCode, 403)

    def test_a_form_post_and_other_methods(self):
        endpoint = self.ncco(answer_request(b"POST", CALL, as_json=False), NccoAnswer("", "h", self.clock, 300))
        self.assertEqual(endpoint["headers"]["uuid"], UUID)
        request = answer_request(b"PUT", CALL)
        NccoAnswer("", "", self.clock, 300).render(request)
        self.assertEqual(request.responseCode, 405)


class CarrierModeTests(SynchronousTestCase):
    def build(self, **values):
        return carrier(RecordingService(clock=Clock()), Settings(**values))

    def test_open_on_loopback_signed_with_a_secret_off_when_public_without(self):
        open_ = self.build()
        self.assertEqual((open_.mode, open_.warnings), ("open", []))
        signed = self.build(vonage_signature_secret=SECRET, listen=("tcp:8080",))
        self.assertEqual((signed.mode, signed.warnings), ("signed", []))
        off = self.build(listen=("tcp:8080",))
        self.assertIsInstance(off.media, CarrierOff)
        self.assertEqual(off.mode, "off")

    def test_rest_control_needs_the_application_and_a_readable_key(self):
        self.assertIsNone(self.build().control)
        half = self.build(vonage_application_id="app")
        self.assertIn("set both", half.warnings[-1])
        missing = self.build(vonage_application_id="app", vonage_private_key_file="/nonexistent/key.pem")
        self.assertIsNone(missing.control)
        self.assertIn("cannot use /nonexistent/key.pem", missing.warnings[-1])
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fd, path = tempfile.mkstemp(suffix=".pem")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        made = self.build(vonage_application_id="app", vonage_private_key_file=path)
        self.assertIn("VonageCallControl(application_id='app'", repr(made.control(None, Clock())))

    def test_the_sample_rate_option_reaches_the_ncco(self):
        settings = Settings.load({}, {"VOICED_VONAGE_SAMPLE_RATE": "8000"})
        self.assertEqual(settings.vonage_sample_rate, 8000)
        with self.assertRaises(ConfigError):
            Settings.load({}, {"VOICED_VONAGE_SAMPLE_RATE": "44100"})
        answer = carrier(RecordingService(clock=Clock()), settings).answer
        self.assertEqual(json.loads(answer.render(answer_request(b"GET", CALL)))[0]["endpoint"][0]["content-type"],
                         "audio/l16;rate=8000")
        self.assertIn("vonage_signature_secret=<redacted>", Settings(vonage_signature_secret=SECRET).summary())
