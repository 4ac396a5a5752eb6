"""Bad input on one media socket has one defined outcome each (a logged line, the frame
dropped or a documented close), never an exception: real Autobahn framing on a
StringTransport, a Clock. Also the per-call media token (1008 without a valid one)."""

import base64
import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import Harness, start_message, start_with
from voiced.carrier import media_token
from voiced.carrier.limits import MAX_OUTBOUND_BYTES, MediaRate, outbound_backlog
from voiced.config import Settings


def media(seq, chunk, payload=b"\xff" * 160, stream="MZ1"):
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": stream,
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                 "payload": base64.b64encode(payload).decode()}}).encode()


class BadInputTests(Harness):
    def test_each_bad_frame_is_dropped_and_the_call_goes_on(self):
        self.send(media(1, 1))  # media before start
        self.assertEqual(self.service.calls, [])
        self.send(start_message(seq=2))
        self.send(b"{not json")
        self.send(b'{"event":"media","streamSid":"MZ1","media":{"payload":"%%%not base64"}}')
        self.send(media(3, 1, payload=b"\xff" * 100))  # not whole 20 ms frames
        self.send(media(4, 2, stream="MZother"))  # another stream's media
        self.send(media(5, 3))
        self.send(media(6, 3))  # repeated chunk
        self.send(media(7, 2))  # out of order
        self.send(media(8, 4, payload=b"\xff" * 320))  # two whole frames are fine
        self.assertEqual(self.media_events(), [("media", 160), ("media", 320)])
        self.assertIsNone(self.close_code(), "each of these costs one frame, not the call")
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 5)

    def test_oversized_message_closes_1009(self):
        self.send(start_message())
        big = b'{"event":"media","x":"' + b"a" * (70 * 1024) + b'"}'
        header = bytes([0x81, 0x80 | 127]) + len(big).to_bytes(8, "big")
        self.proto.dataReceived(header + b"\0\0\0\0" + big)
        self.assertEqual(self.close_code(), 1009)

    def test_a_flood_is_dropped_then_closed_1008(self):
        self.send(start_message())
        chunk = 0
        for _ in range(100 + 10):  # 2 s of allowance, then 10 frames over
            chunk += 1
            self.send(media(chunk + 1, chunk))
        self.assertEqual(len(self.media_events()), 100, "2 s ahead of real time, no more")
        self.assertIsNone(self.close_code())
        self.clock.advance(1.0)  # real time catches up: 50 more frames are fine
        for _ in range(50):
            chunk += 1
            self.send(media(chunk + 1, chunk))
        self.assertEqual(len(self.media_events()), 150)
        for _ in range(250):
            chunk += 1
            self.send(media(chunk + 1, chunk))
        self.assertEqual(self.close_code(), 1008)

    def test_a_peer_that_stops_reading_is_dropped(self):
        self.send(start_message())
        _, transport, _ = self.service.calls[0]
        self.transport.dataBuffer = b"x" * (MAX_OUTBOUND_BYTES + 1)  # as a TCP transport holds unsent bytes
        self.transport._tempDataLen = 0
        self.transport.registerProducer(self.proto, True)  # a real transport has one; Autobahn unregisters it
        transport.send_audio(b"\x00" * 160)
        self.assertTrue(self.transport.disconnecting)

    def test_media_rate_on_its_own(self):
        rate = MediaRate(burst_s=0.1, flood_close_s=0.2)
        self.assertEqual([rate.admit(160, 0.0) for _ in range(6)], [True] * 5 + [False])
        self.assertTrue(rate.admit(160, 0.04))
        self.assertFalse(rate.flooding)
        for _ in range(10):
            rate.admit(160, 0.04)
        self.assertTrue(rate.flooding)
        self.assertEqual(outbound_backlog(object()), 0)


class MediaTokenTests(Harness):
    settings = Settings(twilio_auth_token="tok", public_url="https://voice.example.com")

    def test_a_valid_token_admits_the_call_and_is_not_kept(self):
        token = media_token.issue("tok", "CA1", self.clock.seconds(), 300)
        self.send(start_with({"From": "+1", media_token.PARAMETER: token}))
        start = self.service.calls[0][0]
        self.assertEqual(start.custom_parameters, {"From": "+1"})
        self.assertIsNone(self.close_code())

    def test_no_token_closes_1008_before_a_call_exists(self):
        self.send(start_with({"From": "+1"}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_another_calls_or_an_expired_token_closes_1008(self):
        other = media_token.issue("tok", "CA2", self.clock.seconds(), 300)
        self.send(start_with({media_token.PARAMETER: other}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_token_checks(self):
        token = media_token.issue("tok", "CA1", 1000, 60)
        self.assertIsNone(media_token.problem("tok", "CA1", token, 1059))
        self.assertIn("expired", media_token.problem("tok", "CA1", token, 1061))
        self.assertIn("not valid", media_token.problem("other-secret", "CA1", token, 1001))
        self.assertIn("malformed", media_token.problem("tok", "CA1", "garbage", 1001))
        self.assertIn("no media token", media_token.problem("tok", "CA1", "", 1001))


class TwimlTokenTests(SynchronousTestCase):
    def answer(self, header: bytes, key: str = "tok") -> tuple[int, str]:
        """The TwiML answer to a voice webhook signed with ``key`` in ``header``: (status, body)."""
        import io

        from twisted.web.test.requesthelper import DummyRequest

        from voiced.carrier.twilio.answer import TwimlAnswer
        from voiced.carrier.twilio.signature import twilio_signature

        clock = Clock()
        clock.advance(5000)
        form = {"CallSid": "CA7", "From": "+1555", "To": "+1666"}
        request = DummyRequest([b"twiml"])
        request.method, request.uri = b"POST", b"/twiml"
        request.content = io.BytesIO("&".join(f"{k}={v}" for k, v in form.items()).encode().replace(b"+", b"%2B"))
        request.args = {k.encode(): [v.encode()] for k, v in form.items()}
        request.requestHeaders.addRawHeader(header, twilio_signature(key, "https://voice.example.com/twiml", form).encode())
        body = TwimlAnswer("tok", "voice.example.com", clock, 300).render_POST(request).decode()
        return request.responseCode or 200, body

    def test_the_twiml_carries_a_token_that_admits_its_call(self):
        import re

        status, twiml = self.answer(b"x-twilio-signature")
        token = re.search(r'<Parameter name="voicedToken" value="([^"]+)"/>', twiml).group(1)
        self.assertIsNone(media_token.problem("tok", "CA7", token, 5000 + 299))
        self.assertIsNotNone(media_token.problem("tok", "CA7", token, 5000 + 301))

    def test_signalwire_signs_the_same_way_under_its_own_header(self):
        status, twiml = self.answer(b"x-signalwire-signature")
        self.assertEqual(status, 200)
        self.assertIn("<Connect><Stream", twiml)
        status, _ = self.answer(b"x-signalwire-signature", key="another project's key")
        self.assertEqual(status, 403)
