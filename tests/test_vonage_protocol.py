"""The Vonage WebSocket in process: real Autobahn framing on a StringTransport, a Clock for
timers, a recording call instead of the turn machine; admission (the upgrade's JWT, the
per-call media token), hard limits, and voiced-call's Vonage wire against the daemon's."""

from __future__ import annotations

import json

import txaio
from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import RecordingService, client_frame, server_frames
from voiced.audio import silence_ulaw
from voiced.caller.carriers import carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, Marker, Problem, SendBack
from voiced.carrier import media_token
from voiced.audio import AudioFormat
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.carrier.vonage import signature
from voiced.carrier.vonage.protocol import VonageAdmission, VonageMediaStreamFactory

SECRET = "vonage-signature-secret"
NOW = 1_700_000_000
UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
HEADERS = {"uuid": UUID, "conversation_uuid": "CON-" + UUID, "from": "447700900001", "to": "447700900000"}
FRAME_16K = b"\x01\x00" * 320  # 20 ms of 16 kHz 16-bit PCM: 640 bytes


def handshake(authorization: str | None = None) -> bytes:
    extra = f"Authorization: {authorization}\r\n" if authorization else ""
    return (b"GET /media/vonage HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + extra.encode() + b"\r\n")


def connected(content_type: str = "audio/l16;rate=16000", **headers: str) -> bytes:
    return json.dumps({"event": "websocket:connected", "content-type": content_type,
                       **(headers or HEADERS)}).encode()


class Harness(SynchronousTestCase):
    secret = ""
    authorization: str | None = None

    def setUp(self):
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.clock.advance(NOW)
        self.service = RecordingService(clock=self.clock)
        factory = VonageMediaStreamFactory(self.service, VonageAdmission(self.secret))
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport.unregisterProducer = lambda: None  # Autobahn's drop path; StringTransport has none
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(handshake(self.authorization))
        self.upgrade = self.transport.value()
        self.transport.clear()

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        self.proto.dataReceived(client_frame(payload, opcode))

    def sent(self) -> list[tuple[int, bytes]]:
        frames = server_frames(self.transport.value())
        self.transport.clear()
        return frames

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def call(self):
        [(start, transport, call)] = self.service.calls
        return start, transport, call


class VonageProtocolTests(Harness):
    def test_connected_starts_the_call_with_its_headers_and_audio_format(self):
        self.assertIn(b"101 Switching Protocols", self.upgrade)
        self.send(connected(**HEADERS, language="en-GB"))
        start, _, call = self.call()
        self.assertEqual((start.carrier, start.call_id, start.stream_id, start.from_number, start.to_number),
                         ("vonage", UUID, "CON-" + UUID, "447700900001", "447700900000"))
        self.assertEqual(start.audio, AudioFormat("pcm_s16le", 16000))
        self.assertEqual(start.custom_parameters["language"], "en-GB")
        self.assertEqual(call.events, ["start"])

    def test_binary_audio_dtmf_and_notify_reach_the_call(self):
        self.send(connected())
        _, _, call = self.call()
        self.send(FRAME_16K, opcode=0x2)
        self.send(FRAME_16K * 2, opcode=0x2)  # whole frames are taken however many
        self.send(b'{"event":"websocket:dtmf","digit":"5","duration":260}')
        self.send(b'{"event":"websocket:notify","payload":{"name":"r1.s0"}}')
        self.send(b'{"event":"websocket:cleared"}')
        self.send(b'{"event":"websocket:something-new"}')
        self.assertEqual(call.events[1:], [("media", 160), ("media", 320), ("dtmf", "5"), ("mark", "r1.s0")])
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 0)

    def test_replies_go_out_as_one_frame_a_message_with_notify_and_clear(self):
        self.send(connected())
        _, transport, _ = self.call()
        transport.send_audio(silence_ulaw(40))  # 40 ms: two 640-byte frames at 16 kHz
        transport.send_mark("r1.s0")
        transport.send_clear()
        frames = self.sent()
        self.assertEqual([(op, len(p)) for op, p in frames[:2]], [(0x2, 640), (0x2, 640)])
        self.assertEqual([json.loads(p) for op, p in frames[2:]],
                         [{"action": "notify", "payload": {"name": "r1.s0"}}, {"action": "clear"}])
        transport.hang_up()
        self.assertEqual(self.close_code(), 1000)

    def test_8khz_needs_no_resampling_and_320_byte_frames(self):
        self.send(connected("audio/l16;rate=8000"))
        start, transport, call = self.call()
        self.assertEqual(start.audio, AudioFormat("pcm_s16le", 8000))
        self.send(b"\x00\x00" * 160, opcode=0x2)
        self.assertEqual(call.events[-1], ("media", 160))
        self.proto.write_audio(b"\x00" * 330)  # a short tail is padded to a whole frame
        transport.send_audio(silence_ulaw(20))
        self.assertEqual([len(p) for op, p in self.sent()], [320, 320, 320])
        audio = bytes(range(256)) * 50  # 40 frames, written at once: each its own binary message
        self.proto.write_audio(audio)
        frames = self.sent()
        self.assertEqual({(op, len(p)) for op, p in frames}, {(0x2, 320)})
        self.assertEqual(b"".join(p for op, p in frames), audio)

    def test_an_audio_format_voiced_cannot_take_closes_4001(self):
        self.send(connected("audio/l16;rate=44100"))
        self.assertEqual((self.service.calls, self.close_code()), ([], 4001))

    def test_audio_before_connected_and_duplicates_are_counted_not_fatal(self):
        self.send(FRAME_16K, opcode=0x2)
        self.assertEqual(self.service.calls, [])
        self.send(connected())
        self.send(connected())
        self.send(b"\x00" * 100, opcode=0x2)  # not a whole frame: dropped
        self.assertEqual(len(self.service.calls), 1)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 3)
        self.assertIsNone(self.close_code())

    def test_a_stream_of_malformed_messages_closes_4003(self):
        self.send(connected())
        for _ in range(MAX_PROTOCOL_ERRORS):
            self.send(b"{not json")
        self.assertEqual(self.close_code(), 4003)

    def test_a_flood_of_audio_is_dropped_then_closed_1008(self):
        self.send(connected())
        for _ in range(500):  # 10 s of audio at once: far past the 2 s burst allowance
            self.send(FRAME_16K, opcode=0x2)
        _, _, call = self.call()
        self.assertLess(len([e for e in call.events if e[0] == "media"]), 120)
        self.assertEqual(self.close_code(), 1008)

    def test_an_oversized_message_closes_1009(self):
        self.send(connected())
        self.proto.dataReceived(b"\x82\xff" + (70000).to_bytes(8, "big") + b"\x00" * 4 + b"\x00" * 70000)
        self.assertEqual(self.close_code(), 1009)

    def test_no_start_within_ten_seconds_closes_4000(self):
        self.clock.advance(10)
        self.assertEqual(self.close_code(), 4000)


class MediaTokenTests(Harness):
    secret = SECRET

    def test_a_valid_token_admits_the_call_and_is_not_kept(self):
        token = media_token.issue(SECRET, UUID, NOW, 300)
        self.send(connected(**HEADERS, **{media_token.PARAMETER: token}))
        start, _, _ = self.call()
        self.assertNotIn(media_token.PARAMETER, start.custom_parameters)
        self.assertIsNone(self.close_code())

    def test_no_token_another_calls_or_an_expired_one_closes_1008_before_a_call(self):
        for token in (None, media_token.issue(SECRET, "other-uuid", NOW, 300), media_token.issue(SECRET, UUID, NOW - 400, 300)):
            self.setUp()
            headers = dict(HEADERS, **({media_token.PARAMETER: token} if token else {}))
            self.send(connected(**headers))
            self.assertEqual((self.service.calls, self.close_code()), ([], 1008))


class SignedUpgradeTests(Harness):
    secret = SECRET
    authorization = "Bearer " + signature.sign_hs256({"iat": NOW, "jti": "j", "iss": "Vonage"}, SECRET)

    def test_a_vonage_jwt_on_the_upgrade_is_admitted(self):
        self.assertIn(b"101 Switching Protocols", self.upgrade)


class ForgedUpgradeTests(Harness):
    secret = SECRET
    authorization = "Bearer " + signature.sign_hs256({"iat": NOW, "jti": "j"}, "not-the-secret")

    def test_a_forged_jwt_is_refused_403_before_any_call_state(self):
        self.assertIn(b"403", self.upgrade.split(b"\r\n")[0])
        self.assertIsNone(self.proto.link)
        self.assertEqual(self.service.calls, [])


class CallerWireTests(Harness):
    """voiced-call's Vonage wire against the daemon's protocol: the same messages both ways."""

    secret = SECRET

    def setUp(self):
        self.caller = carrier_wire("vonage").new_call(CallSetup(secret=SECRET, now=NOW, call_id=UUID))
        self.authorization = self.caller.upgrade_headers("")["Authorization"]
        super().setUp()

    def deliver(self) -> list:
        events = []
        for op, payload in self.sent():
            if op in (0x1, 0x2):
                events += self.caller.read(payload, op == 0x2)
        return events

    def test_a_call_both_ways(self):
        self.assertIn(b"101 Switching Protocols", self.upgrade)
        for message in self.caller.opening():
            self.send(message.encode())
        start, transport, call = self.call()
        self.assertEqual((start.call_id, start.stream_id), (UUID, self.caller.stream_id))
        self.send(self.caller.speech(silence_ulaw(20), 0), opcode=0x2)
        self.send(self.caller.digit("#")[0].encode())
        self.assertEqual(call.events[1:], [("media", 160), ("dtmf", "#")])
        transport.send_audio(silence_ulaw(20))
        transport.send_mark("g1.end")
        transport.send_clear()
        events = self.deliver()
        self.assertEqual([type(e) for e in events], [Audio, Marker, Clear, SendBack])
        self.assertEqual((len(events[0].ulaw), events[1].name), (160, "g1.end"))
        self.send(self.caller.marker_played("g1.end")[0].encode())
        self.send(events[3].message.encode())  # websocket:cleared
        self.assertEqual(call.events[-1], ("mark", "g1.end"))
        self.assertEqual(self.caller.hang_up(), [])

    def test_the_daemon_breaking_the_wire_is_a_problem_not_a_crash(self):
        for data, binary in ((b"\x00" * 100, True), (b"\x00" * 1280, True), (b"{", False),
                             (b'{"action":"transfer"}', False), (b'{"action":"notify","payload":{}}', False)):
            self.assertIsInstance(self.caller.read(data, binary)[0], Problem)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2000), st.booleans())
    def test_any_daemon_message_reads_without_raising(self, data, binary):
        self.caller.read(data, binary)

    def test_an_8khz_caller(self):
        caller = carrier_wire("vonage").new_call(CallSetup(parameters={"content-type": "audio/l16;rate=8000"}))
        self.assertEqual(len(caller.speech(silence_ulaw(20), 0)), 320)
        self.assertIn('"content-type":"audio/l16;rate=8000"', caller.opening()[0])
        self.assertEqual(caller.upgrade_headers("ws://x"), {})
        with self.assertRaises(ValueError):
            carrier_wire("vonage").new_call(CallSetup(parameters={"content-type": "audio/pcmu"}))
