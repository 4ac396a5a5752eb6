"""The Exotel Voicebot socket in process: real Autobahn framing on a StringTransport, a
Clock for timers, a recording call core; its admission (the applet URL's basic-auth
credentials, 403 before any call state), the control that hangs up and "transfers"
through the stream, and how the carrier is mounted with and without its secret."""

import base64
import json
import unittest

import txaio
from hypothesis import given, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.messages import FAST, exotel_like

from tests.testing.carriers import RecordingService, client_frame, server_frames

from voiced.audio import AudioFormat
from voiced.carrier.exotel import carrier
from voiced.carrier.exotel.auth import basic_authorization
from voiced.carrier.exotel.chunks import MIN_BYTES
from voiced.carrier.exotel.control import ExotelCallControl, ExotelStreams
from voiced.carrier.exotel.protocol import ExotelAdmission, ExotelMediaStreamFactory
from voiced.carrier.gate import CarrierOff
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.config import Settings

SECRET = "voiced:s3cret"


def handshake(path: str = "/media/exotel", authorization: str | None = None) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n").encode()


def start_message(**media_format: object) -> bytes:
    fmt = media_format or {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}
    return json.dumps({"event": "start", "sequence_number": "1", "stream_sid": "MZ1", "start": {
        "stream_sid": "MZ1", "call_sid": "CA1", "account_sid": "AC1", "from": "+919876543210",
        "to": "+918047491899", "custom_parameters": {"campaign": "7"}, "media_format": fmt}}).encode()


def media_message(audio: bytes, chunk: int = 1) -> bytes:
    return json.dumps({"event": "media", "sequence_number": str(chunk + 1), "stream_sid": "MZ1", "media": {
        "chunk": str(chunk), "timestamp": str(chunk * 100), "payload": base64.b64encode(audio).decode()}}).encode()


class ExotelSocket:
    """One Exotel media socket on a StringTransport."""

    def __init__(self, test: SynchronousTestCase, secret: str = "", path: str = "/media/exotel",
                 authorization: str | None = None) -> None:
        test.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.service = RecordingService(clock=self.clock)
        self.streams = ExotelStreams()
        factory = ExotelMediaStreamFactory(self.service, ExotelAdmission(secret, self.streams))
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport.unregisterProducer = lambda: None  # Autobahn's drop path; StringTransport has none
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(handshake(path, authorization))
        self.answer = self.transport.value()
        self.transport.clear()

    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        self.proto.dataReceived(client_frame(payload, opcode))

    def sent(self) -> list[dict]:
        return [json.loads(p) for op, p in server_frames(self.transport.value()) if op == 0x1]

    def close_code(self) -> int | None:
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None


def logged(test: SynchronousTestCase, word: str) -> list[dict]:
    seen: list[dict] = []
    observer = lambda event: seen.append(event) if word in event.get("log_format", "") else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return seen


class ExotelProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.socket = ExotelSocket(self)
        self.assertIn(b"101 Switching Protocols", self.socket.answer)

    def started(self, **media_format: object):
        self.socket.send(b'{"event":"connected"}')
        self.socket.send(start_message(**media_format))
        return self.socket.service.calls[-1]

    def test_the_start_names_the_call_its_parties_and_its_audio(self):
        start, link, call = self.started()
        self.assertEqual((start.carrier, start.call_id, start.stream_id, start.from_number, start.to_number),
                         ("exotel", "CA1", "MZ1", "+919876543210", "+918047491899"))
        self.assertEqual((start.custom_parameters, start.audio), ({"campaign": "7"}, AudioFormat("pcm_s16le", 8000)))
        self.assertEqual(call.events, ["start"])
        self.assertIs(self.socket.streams.get("CA1"), self.socket.proto)

    def test_messages_reach_the_call_and_replies_are_exotel_messages(self):
        start, link, call = self.started()
        self.socket.send(media_message(b"\x00\x00" * 800))  # 100 ms of 8 kHz PCM
        self.socket.send(b'{"event":"mark","sequence_number":"3","stream_sid":"MZ1","mark":{"name":"r1.start"}}')
        self.socket.send(b'{"event":"dtmf","sequence_number":"4","stream_sid":"MZ1","dtmf":{"digit":"5"}}')
        self.socket.send(b'{"event":"something-new"}')
        self.assertEqual(call.events[1:], [("media", 800), ("mark", "r1.start"), ("dtmf", "5")])
        link.send_audio(b"\xff" * 3200)  # 400 ms of the core's mu-law: 6400 bytes of PCM, one message
        link.send_mark("r1.s0")
        link.send_clear()
        sent = self.socket.sent()
        self.assertEqual([m["event"] for m in sent], ["media", "mark", "clear"])
        self.assertEqual(base64.b64decode(sent[0]["media"]["payload"]), b"\x00" * 6400)
        self.assertEqual({(m["stream_sid"], m["streamSid"]) for m in sent}, {("MZ1", "MZ1")})
        self.assertEqual(sent[1]["mark"], {"name": "r1.s0"})

    def test_the_bots_audio_keeps_exotels_chunk_rules_and_a_marker_follows_its_audio(self):
        start, link, call = self.started()
        link.send_audio(b"\xff" * 1000)  # 2000 bytes of PCM: under 3.2 KB, kept
        self.assertEqual(self.socket.sent(), [])
        link.send_audio(b"\xff" * 1000)  # 4000 bytes: 3840 go, 160 kept
        link.send_mark("r1.s0")  # the rest first, padded to 3.2 KB, then the marker
        sent = self.socket.sent()
        self.assertEqual([m["event"] for m in sent], ["media", "media", "mark"])
        self.assertEqual([len(base64.b64decode(m["media"]["payload"])) for m in sent[:2]], [3840, MIN_BYTES])

    def test_a_clear_drops_the_audio_kept_back(self):
        start, link, call = self.started()
        link.send_audio(b"\xff" * 1000)
        link.send_clear()
        link.send_mark("r2.start")
        self.assertEqual([m["event"] for m in self.socket.sent()], ["clear", "mark"])

    def test_chunks_of_about_100_ms_reach_the_call_as_whole_frames(self):
        start, link, call = self.started()
        self.socket.send(media_message(b"\x00\x00" * 500, 1))  # 62.5 ms: three frames, 2.5 ms kept
        self.socket.send(media_message(b"\x00\x00" * 460, 2))  # with the kept part: 60 ms
        self.assertEqual(call.events[1:], [("media", 480), ("media", 480)])
        problems = logged(self, "PROTOCOL_ERROR")
        self.socket.send(media_message(b"\x00" * 321, 3))  # half a sample: dropped, counted
        self.assertEqual(len(call.events), 3)
        self.assertIn("not whole samples", problems[0]["problem"])

    def test_the_urls_sample_rate_applies_when_the_start_gives_none(self):
        self.socket = ExotelSocket(self, path="/media/exotel?sample-rate=16000&campaign=7")
        start, link, call = self.started(encoding="audio/x-raw")
        self.assertEqual(start.audio, AudioFormat("pcm_s16le", 16000))
        self.socket.send(media_message(b"\x00\x00" * 1600))  # 100 ms at 16 kHz
        self.assertEqual(call.events[1:], [("media", 800)])
        link.send_audio(b"\xff" * 3200)
        [media] = self.socket.sent()
        self.assertEqual(len(base64.b64decode(media["media"]["payload"])), 12800)

    def test_a_mulaw_stream_passes_through(self):
        start, link, call = self.started(encoding="audio/x-mulaw", sample_rate="8000")
        self.assertEqual(start.audio, AudioFormat("mulaw", 8000))
        self.socket.send(media_message(b"\x7f" * 800))
        self.assertEqual(call.events[1:], [("media", 800)])
        link.send_audio(b"\x7f" * 3200)
        self.assertEqual(base64.b64decode(self.socket.sent()[0]["media"]["payload"]), b"\x7f" * 3200)

    def test_stop_closes_normally_and_ends_the_call(self):
        start, link, call = self.started()
        self.socket.send(b'{"event":"stop","stream_sid":"MZ1","stop":{"call_sid":"CA1","reason":"callended"}}')
        self.assertEqual(self.socket.close_code(), 1000)

    def test_the_bots_hang_up_closes_the_stream_normally(self):
        start, link, call = self.started()
        link.hang_up()
        self.assertEqual(self.socket.close_code(), 1000)

    def test_binary_frame_closes_4002(self):
        self.socket.send(b"\x00\x01", opcode=0x2)
        self.assertEqual(self.socket.close_code(), 4002)

    def test_an_audio_format_voiced_does_not_speak_closes_4001_without_a_call(self):
        self.socket.send(start_message(encoding="audio/opus", sample_rate="48000"))
        self.assertEqual(self.socket.close_code(), 4001)
        self.assertEqual(self.socket.service.calls, [])

    def test_malformed_messages_are_counted_then_close_4003(self):
        self.started()
        for _ in range(MAX_PROTOCOL_ERRORS - 1):
            self.socket.send(b'{"event":"dtmf","dtmf":{"digit":"x"}}')
        self.assertIsNone(self.socket.close_code())
        self.socket.send(b"{not json")
        self.assertEqual(self.socket.close_code(), 4003)
        self.assertEqual(self.socket.service.metrics.protocol_errors_total._value.get(), MAX_PROTOCOL_ERRORS)

    def test_no_start_within_ten_seconds_closes_4000(self):
        self.socket.clock.advance(10.1)
        self.assertEqual(self.socket.close_code(), 4000)

    def test_audio_far_faster_than_real_time_is_dropped_then_closed_1008(self):
        start, link, call = self.started()
        for chunk in range(1, 101):  # 10 s of audio at one instant
            self.socket.send(media_message(b"\x00\x00" * 800, chunk))
        self.assertEqual(call.events.count(("media", 800)), 20)  # the 2 s allowance
        self.assertEqual(self.socket.close_code(), 1008)


class AdmissionTests(SynchronousTestCase):
    def refused(self, authorization: str | None) -> None:
        rejected = logged(self, "MEDIA_REJECTED")
        socket = ExotelSocket(self, secret=SECRET, authorization=authorization)
        self.assertIn(b"403", socket.answer.split(b"\r\n")[0])
        self.assertIsNone(socket.proto.link)  # refused before any call state
        self.assertEqual(socket.service.calls, [])
        self.assertEqual(len(rejected), 1)
        self.assertNotIn("s3cret", json.dumps(rejected[0], default=str))

    def test_no_credentials_are_refused_403(self):
        self.refused(None)

    def test_wrong_credentials_are_refused_403(self):
        self.refused(basic_authorization("voiced:guess"))
        self.refused("Basic " + base64.b64encode(b"voiced").decode())

    def test_the_applets_credentials_are_admitted(self):
        socket = ExotelSocket(self, secret=SECRET, authorization=basic_authorization(SECRET))
        self.assertIn(b"101 Switching Protocols", socket.answer)
        socket.send(start_message())
        self.assertEqual(len(socket.service.calls), 1)


class ControlTests(SynchronousTestCase):
    def setUp(self):
        self.socket = ExotelSocket(self)
        self.socket.send(start_message())
        self.control = ExotelCallControl(self.socket.streams)

    def test_a_transfer_says_why_it_cannot_dial_and_ends_the_stream(self):
        said = logged(self, "EXOTEL_TRANSFER")
        self.assertTrue(self.successResultOf(self.control.transfer("CA1", "+15551234567")))
        self.assertEqual(self.socket.close_code(), 1000)
        self.assertIn("no API to move a live call", said[0]["log_format"])
        self.assertEqual(said[0]["to"], "+15551234567")

    def test_a_bad_target_is_refused_at_once(self):
        with self.assertRaises(ValueError):
            self.control.transfer("CA1", "<Dial>")
        self.assertIsNone(self.socket.close_code())

    def test_a_call_without_a_stream_cannot_be_transferred(self):
        self.assertFalse(self.successResultOf(self.control.transfer("CA-gone", "+15551234567")))

    def test_complete_ends_the_stream_once_and_the_closed_stream_is_forgotten(self):
        self.assertTrue(self.successResultOf(self.control.complete("CA1")))
        self.assertTrue(self.successResultOf(self.control.complete("CA1")))
        self.assertEqual([op for op, _ in server_frames(self.socket.transport.value())].count(0x8), 1)
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.socket.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.socket.streams), 0)


class MountTests(SynchronousTestCase):
    def test_without_its_secret_on_a_public_listener_exotel_is_off(self):
        built = carrier(RecordingService(), Settings(listen=("tcp:8080",)))
        self.assertIsInstance(built.media, CarrierOff)
        self.assertEqual(built.mode, "off")

    def test_without_its_secret_on_loopback_it_takes_calls_and_says_so(self):
        built = carrier(RecordingService(), Settings())
        self.assertNotIsInstance(built.media, CarrierOff)
        self.assertEqual((built.mode, built.warnings), ("open", []))
        self.assertIsNone(built.answer)

    def test_with_its_secret_it_is_signed_and_has_its_control(self):
        built = carrier(RecordingService(), Settings(listen=("tcp:8080",), exotel_secret=SECRET))
        self.assertEqual((built.mode, built.warnings), ("signed", []))
        self.assertIsInstance(built.control(None, Clock()), ExotelCallControl)
        self.assertIn("exotel", Settings(exotel_secret=SECRET).signed_carriers)
        self.assertNotIn(SECRET, repr(Settings(exotel_secret=SECRET)))
        self.assertNotIn("s3cret", Settings(exotel_secret=SECRET).summary())


class SocketProperties(unittest.TestCase):
    @FAST
    @given(st.lists(exotel_like() | st.binary(min_size=1, max_size=64).map(
        lambda b: json.dumps({"event": "media", "media": {"payload": base64.b64encode(b).decode()}})), max_size=25),
        st.sampled_from([{}, {"encoding": "audio/x-mulaw"}, {"encoding": "audio/x-raw", "sample_rate": "24000"}]))
    def test_whatever_exotel_sends_the_socket_never_fails_internally_and_opens_at_most_one_call(self, messages, fmt):
        txaio.config.loop = Clock()
        service = RecordingService()
        factory = ExotelMediaStreamFactory(service, ExotelAdmission("", ExotelStreams()))
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        transport.unregisterProducer = lambda: None
        proto.makeConnection(transport)
        proto.dataReceived(handshake())
        proto.dataReceived(client_frame(start_message(**fmt)))
        for text in messages:
            proto.dataReceived(client_frame(text.encode("utf-8")))
        self.assertLessEqual(len(service.calls), 1)
        closes = [p for op, p in server_frames(transport.value()) if op == 0x8]
        self.assertNotIn(4011, [int.from_bytes(p[:2], "big") for p in closes])  # no exception in a handler
