"""The Telnyx media socket in process (real Autobahn framing on a StringTransport, a Clock,
a recording call core), its admission (the per-call media token at ``start``), its hard
limits, the bot's hang-up both ways, and the carrier as the daemon builds it."""

import base64
import json

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import HANDSHAKE, RecordingService, client_frame, server_frames
from tests.testing.carriers import TELNYX_CALL as CALL, telnyx_start as start_message
from voiced.carrier import media_token
from voiced.audio import AudioFormat
from voiced.carrier.gate import CarrierOff
from voiced.carrier.limits import MAX_OUTBOUND_BYTES
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.carrier.telnyx import carrier as telnyx_carrier
from voiced.carrier.telnyx.answer import TexmlAnswer
from voiced.carrier.telnyx.protocol import HANGUP_GRACE_S, TelnyxAdmission, TelnyxMediaStreamFactory
from voiced.config import Settings

NOW = 1_700_000_000


def media(chunk, payload=b"\xff" * 160, stream="S1", track="inbound"):
    return json.dumps({"event": "media", "sequence_number": str(chunk + 1), "stream_id": stream,
                       "media": {"track": track, "chunk": str(chunk), "timestamp": str(chunk * 20),
                                 "payload": base64.b64encode(payload).decode()}}).encode()


class Harness(SynchronousTestCase):
    admission = TelnyxAdmission()

    def setUp(self):
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.clock.advance(NOW)
        self.service = RecordingService(clock=self.clock)
        factory = TelnyxMediaStreamFactory(self.service, self.admission)
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HANDSHAKE.replace(b"/media", b"/media/telnyx"))
        self.assertIn(b"101 Switching Protocols", self.transport.value())
        self.transport.clear()

    def send(self, payload, opcode=0x1):
        self.proto.dataReceived(client_frame(payload, opcode))

    def sent(self):
        return [json.loads(p) for op, p in server_frames(self.transport.value()) if op == 0x1]

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def call(self):
        return self.service.calls[0][2]

    def media_sizes(self):
        return [e[1] for e in self.call().events if isinstance(e, tuple) and e[0] == "media"]


class ProtocolTests(Harness):
    def test_messages_reach_the_call_and_replies_are_telnyx_frames(self):
        self.send(b'{"event":"connected","version":"1.0.0"}')
        self.send(start_message({"customer_id": "c1"}))
        start, transport, call = self.service.calls[0]
        self.assertEqual((start.carrier, start.call_id, start.stream_id, start.from_number, start.to_number),
                         ("telnyx", CALL, "S1", "+13122010094", "+13122123456"))
        self.assertEqual((start.custom_parameters, start.audio), ({"customer_id": "c1"}, AudioFormat("mulaw", 8000)))
        self.send(media(1))
        self.send(b'{"event":"mark","sequence_number":"3","stream_id":"S1","mark":{"name":"r1.start"}}')
        self.send(b'{"event":"dtmf","sequence_number":"4","stream_id":"S1","dtmf":{"digit":"5"}}')
        self.send(b'{"event":"error","sequence_number":"5","stream_id":"S1","payload":{"code":100003,'
                  b'"title":"Malformed frame","detail":"x"}}')
        self.send(b'{"event":"something-new"}')
        self.assertEqual(call.events, ["start", ("media", 160), ("mark", "r1.start"), ("dtmf", "5")])
        transport.send_audio(b"\x00" * 160)
        transport.send_mark("r1.s0")
        transport.send_clear()
        self.assertEqual(self.sent(), [{"event": "media", "media": {"payload": base64.b64encode(b"\x00" * 160).decode()}},
                                       {"event": "mark", "mark": {"name": "r1.s0"}}, {"event": "clear"}])
        self.send(b'{"event":"stop","sequence_number":"6","stream_id":"S1","stop":{"call_control_id":"x"}}')
        self.assertEqual(self.close_code(), 1000)

    def test_out_of_order_media_reaches_the_call_in_order(self):
        self.send(start_message())
        for chunk in (1, 3, 2, 4):
            self.send(media(chunk, payload=bytes([chunk]) * 160))
        self.assertEqual([e[1] for e in self.call().events[1:]], [160] * 4)
        self.send(media(3))  # a repeat: dropped
        self.send(media(5, track="outbound"))  # both_tracks' other side: never the caller's
        self.assertEqual(self.media_sizes(), [160] * 4)
        self.assertIsNone(self.close_code())

    def test_thirty_ms_packets_are_recut_into_twenty_ms_frames(self):
        self.send(start_message())
        for chunk in range(1, 5):
            self.send(media(chunk, payload=b"\xff" * 240))
        self.assertEqual(self.media_sizes(), [160, 320, 160, 320])
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 0)

    def test_pcma_and_wideband_l16_are_converted_both_ways(self):
        self.send(start_message(encoding="L16", rate=16000))
        start, transport, _ = self.service.calls[0]
        self.assertEqual(start.audio, AudioFormat("pcm_s16be", 16000))
        self.send(media(1, payload=b"\x00\x10" * 320))  # 20 ms of 16 kHz big-endian PCM
        self.assertEqual(self.media_sizes(), [160])  # to the core as 8 kHz mu-law
        transport.send_audio(b"\xff" * 160)
        payload = base64.b64decode(self.sent()[0]["media"]["payload"])
        self.assertEqual(len(payload), 640)

    def test_an_unsupported_codec_closes_4001_without_a_call(self):
        self.send(start_message(encoding="G722", rate=16000))
        self.assertEqual((self.service.calls, self.close_code()), ([], 4001))

    def test_binary_frames_close_4002(self):
        self.send(b"\x00\x01", opcode=0x2)
        self.assertEqual(self.close_code(), 4002)

    def test_no_start_within_ten_seconds_closes_4000(self):
        self.clock.advance(10.1)
        self.assertEqual(self.close_code(), 4000)

    def test_each_bad_frame_is_dropped_and_the_call_goes_on(self):
        self.send(media(1))  # media before start
        self.send(start_message())
        self.send(b"{not json")
        self.send(b'{"event":"media","stream_id":"S1","media":{"payload":"%%%"}}')
        self.send(media(2, stream="S-other"))  # another stream's media
        self.send(media(3, payload=b""))
        self.send(b'{"event":"dtmf","stream_id":"S1","dtmf":{"digit":"<script>"}}')
        self.send(start_message())  # a second start
        self.send(media(4, payload=b"\xff" * 320))
        self.assertEqual(self.media_sizes(), [320])
        self.assertIsNone(self.close_code(), "each of these costs one frame, not the call")
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 7)

    def test_malformed_messages_are_counted_then_close_4003(self):
        self.send(start_message())
        for _ in range(MAX_PROTOCOL_ERRORS - 1):
            self.send(b"{not json")
        self.assertIsNone(self.close_code())
        self.send(b"{not json")
        self.assertEqual(self.close_code(), 4003)

    def test_an_oversized_message_closes_1009(self):
        self.send(start_message())
        big = b'{"event":"media","x":"' + b"a" * (70 * 1024) + b'"}'
        self.proto.dataReceived(bytes([0x81, 0x80 | 127]) + len(big).to_bytes(8, "big") + b"\0\0\0\0" + big)
        self.assertEqual(self.close_code(), 1009)

    def test_a_flood_is_dropped_then_closed_1008(self):
        self.send(start_message())
        for chunk in range(1, 111):  # 2 s of allowance, then 10 frames over
            self.send(media(chunk))
        self.assertEqual(len(self.media_sizes()), 100)
        self.assertIsNone(self.close_code())
        for chunk in range(111, 400):
            self.send(media(chunk))
        self.assertEqual(self.close_code(), 1008)

    def test_a_peer_that_stops_reading_is_dropped(self):
        self.send(start_message())
        self.transport.dataBuffer = b"x" * (MAX_OUTBOUND_BYTES + 1)
        self.transport._tempDataLen = 0
        self.transport.registerProducer(self.proto, True)
        self.service.calls[0][1].send_audio(b"\x00" * 160)
        self.assertTrue(self.transport.disconnecting)

    def test_without_the_api_key_the_bots_hang_up_closes_the_socket(self):
        self.send(start_message())
        self.service.calls[0][1].hang_up()
        self.assertEqual(self.close_code(), 1000)


class RestHangUpTests(Harness):
    admission = TelnyxAdmission(rest_hangup=True)

    def test_telnyx_ends_the_stream_after_the_rest_hang_up(self):
        self.send(start_message())
        self.service.calls[0][1].hang_up()
        self.assertIsNone(self.close_code(), "Call Control hangs up; Telnyx ends the stream")
        self.send(b'{"event":"stop","sequence_number":"9","stream_id":"S1","stop":{}}')  # dropped: we are closing
        self.proto.onClose(True, 1000, None)  # Telnyx closes the socket
        self.assertEqual(self.service.ended, [self.call()])
        self.clock.advance(HANGUP_GRACE_S + 1)
        self.assertIsNone(self.close_code())

    def test_the_socket_is_closed_if_telnyx_does_not(self):
        self.send(start_message())
        self.service.calls[0][1].hang_up()
        self.clock.advance(HANGUP_GRACE_S - 0.1)
        self.assertIsNone(self.close_code())
        self.clock.advance(0.2)
        self.assertEqual(self.close_code(), 1000)


class MediaTokenTests(Harness):
    admission = TelnyxAdmission(media_secret="media-secret")

    def test_a_valid_token_admits_the_call_and_is_not_kept(self):
        token = media_token.issue("media-secret", CALL, NOW, 300)
        self.send(start_message({"From": "+1", media_token.PARAMETER: token}))
        self.assertEqual(self.service.calls[0][0].custom_parameters, {"From": "+1"})
        self.assertIsNone(self.close_code())

    def test_no_token_closes_1008_before_a_call_exists(self):
        self.send(start_message())
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_another_calls_token_closes_1008(self):
        self.send(start_message({media_token.PARAMETER: media_token.issue("media-secret", "v3:other", NOW, 300)}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))

    def test_an_expired_token_closes_1008(self):
        self.send(start_message({media_token.PARAMETER: media_token.issue("media-secret", CALL, NOW - 301, 300)}))
        self.assertEqual((self.service.calls, self.close_code()), ([], 1008))


class CarrierBuildTests(SynchronousTestCase):
    """What the daemon mounts for each configuration (``voiced.carrier.gate``'s three modes)."""

    KEY = base64.b64encode(bytes(range(32))).decode()  # any 32 bytes are an Ed25519 public key

    def build(self, **settings):
        return telnyx_carrier(RecordingService(), Settings(**settings))

    def request(self):
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        request.method, request.path = b"POST", b"/answer/telnyx"
        return request

    def test_open_on_loopback_without_a_key(self):
        built = self.build()
        self.assertEqual((built.mode, built.warnings), ("open", []))
        self.assertIsInstance(built.answer, TexmlAnswer)
        self.assertIsNone(built.control)

    def test_off_when_reachable_from_other_hosts_without_a_key(self):
        built = self.build(listen=("tcp:8080",))
        self.assertIsInstance(built.media, CarrierOff)
        self.assertIsInstance(built.answer, CarrierOff)
        self.assertEqual(built.mode, "off")
        self.assertIn(b"VOICED_TELNYX_PUBLIC_KEY", built.answer.render(self.request()))

    def test_signed_with_a_key_and_a_secret(self):
        built = self.build(listen=("tcp:8080",), telnyx_public_key=self.KEY, telnyx_api_key="KEY123")
        self.assertEqual((built.mode, built.warnings), ("signed", []))
        self.assertIsNotNone(built.control)
        self.assertEqual(built.answer.media_secret, "KEY123")  # the API key keys the media token by default

    def test_off_with_a_key_but_no_secret_for_the_media_token(self):
        built = self.build(listen=("tcp:8080",), telnyx_public_key=self.KEY)
        self.assertIsInstance(built.media, CarrierOff)
        self.assertIn("VOICED_TELNYX_MEDIA_SECRET", built.warnings[0])

    def test_a_malformed_public_key_is_a_configuration_error(self):
        from voiced.config import ConfigError

        for bad in ("not base64!", base64.b64encode(b"short").decode()):
            with self.assertRaises(ConfigError) as caught:
                Settings.load({}, {"VOICED_TELNYX_PUBLIC_KEY": bad})
            self.assertIn("VOICED_TELNYX_PUBLIC_KEY", str(caught.exception))
        self.assertEqual(Settings.load({}, {"VOICED_TELNYX_PUBLIC_KEY": self.KEY}).telnyx_public_key, self.KEY)
        self.assertIn("telnyx", Settings(telnyx_public_key=self.KEY).signed_carriers)


class SocketProperties(SynchronousTestCase):
    """Whatever Telnyx (or anyone on its path) sends, the socket never raises and opens at most one call."""

    def test_the_media_socket_never_raises(self):
        from hypothesis import HealthCheck, given, settings, strategies as st

        from tests.testing.messages import telnyx_like

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(telnyx_like() | st.just(start_message().decode()) | st.integers(1, 9).map(
            lambda n: media(n).decode()), max_size=30))
        def check(messages):
            txaio.config.loop = Clock()
            service = RecordingService(clock=Clock())
            proto = TelnyxMediaStreamFactory(service, TelnyxAdmission()).buildProtocol(
                IPv4Address("TCP", "127.0.0.1", 1))
            transport = StringTransport()
            proto.makeConnection(transport)
            proto.dataReceived(HANDSHAKE)
            transport.clear()
            for message in messages:
                proto.dataReceived(client_frame(message.encode("utf-8", "surrogatepass")))
            self.assertLessEqual(len(service.calls), 1)
            closes = [p[:2] for op, p in server_frames(transport.value()) if op == 0x8]
            self.assertNotIn((4011).to_bytes(2, "big"), closes, "an exception in voiced's own code")

        loop = txaio.config.loop
        self.addCleanup(setattr, txaio.config, "loop", loop)
        check()
