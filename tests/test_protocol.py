"""The Twilio WebSocket protocol in process: real Autobahn framing on a
StringTransport, a Clock for timers, a recording call instead of the turn machine."""

import base64
import json

import txaio
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import (
    HANDSHAKE, RecordingService, client_frame, server_frames, start_message, twilio_factory,
)
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.carrier.twilio.protocol import MAX_SEQUENCE_WARNINGS


def media_message(seq, chunk):
    return json.dumps({"event": "media", "sequenceNumber": str(seq), "streamSid": "MZ1",
                       "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                 "payload": base64.b64encode(b"\xff" * 160).decode()}}).encode()


class MediaStreamProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.service = RecordingService()
        factory = twilio_factory(self.service, self.clock)
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
                                         peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HANDSHAKE)
        self.assertIn(b"101 Switching Protocols", self.transport.value())
        self.transport.clear()

    def send(self, payload, opcode=0x1):
        self.proto.dataReceived(client_frame(payload, opcode))

    def close_code(self):
        closes = [p for op, p in server_frames(self.transport.value()) if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None

    def test_messages_reach_the_call_and_replies_are_framed(self):
        self.send(b'{"event":"connected","protocol":"Call","version":"1.0.0"}')
        self.send(start_message())
        start, transport, call = self.service.calls[0]
        self.assertEqual((start.call_id, call.events), ("CA1", ["start"]))
        self.send(media_message(2, 1))
        self.send(b'{"event":"mark","sequenceNumber":"3","streamSid":"MZ1","mark":{"name":"r1.start"}}')
        self.send(b'{"event":"dtmf","sequenceNumber":"4","streamSid":"MZ1","dtmf":{"digit":"5"}}')
        self.send(b'{"event":"something-new"}')
        self.assertEqual(call.events[1:], [("media", 160), ("mark", "r1.start"), ("dtmf", "5")])
        transport.send_audio(b"\x00" * 10)
        transport.send_mark("r1.s0")
        transport.send_clear()
        sent = [json.loads(p) for op, p in server_frames(self.transport.value()) if op == 0x1]
        self.assertEqual([m["event"] for m in sent], ["media", "mark", "clear"])
        self.assertEqual({m["streamSid"] for m in sent}, {"MZ1"})

    def test_frames_split_across_reads_or_sharing_one_are_each_delivered_once(self):
        # Whole text frames are decoded by the protocol itself; the rest goes through Autobahn.
        self.send(start_message())
        call = self.service.calls[0][2]
        wire = b"".join(client_frame(media_message(seq, seq - 1)) for seq in range(2, 7))
        wire += client_frame(b"hi", opcode=0x9)  # a ping among the media: Autobahn answers it
        wire += client_frame(media_message(7, 6))
        self.proto.dataReceived(wire[:500])  # a frame cut in two, then the rest in small pieces
        for i in range(500, len(wire), 37):
            self.proto.dataReceived(wire[i: i + 37])
        self.proto.dataReceived(client_frame(media_message(8, 7)) + client_frame(media_message(9, 8)))
        self.assertEqual(call.events[1:], [("media", 160)] * 8)
        self.assertIn((0xA, b"hi"), server_frames(self.transport.value()))
        self.assertIsNone(self.close_code())

    def test_whole_text_frames_of_any_length_arrive_unmasked(self):
        # The fast path unmasks with one integer XOR: every length mod 4, both length forms.
        seen = []
        self.proto.onMessage = lambda payload, is_binary: seen.append((payload, is_binary))
        texts = ["", "a", "ab", "abc", "é", "{}" * 62 + "x", "ü" * 63, "z" * 126, "€" * 300 + "abc"]
        for i, text in enumerate(texts):
            mask = bytes((i * 37 + k * 101) % 256 for k in range(4))
            self.proto.dataReceived(client_frame(text.encode("utf-8"), mask=mask))
        self.assertEqual(seen, [(text, False) for text in texts])

    def test_invalid_utf8_in_a_text_frame_closes_1007(self):
        self.send(start_message())
        self.transport.unregisterProducer = lambda: None  # Autobahn's drop path; StringTransport has none
        self.send(b'{"event":"mark","streamSid":"MZ1","mark":{"name":"\xff\xfe"}}')
        self.assertEqual(self.service.calls[0][2].events, ["start"])  # never parsed
        self.assertTrue(self.close_code() == 1007 or self.transport.disconnecting)

    def test_no_start_within_ten_seconds_closes_4000(self):
        self.clock.advance(9.9)
        self.assertIsNone(self.close_code())
        self.clock.advance(0.2)
        self.assertEqual(self.close_code(), 4000)

    def test_binary_frame_closes_4002(self):
        self.send(b"\x00\x01", opcode=0x2)
        self.assertEqual(self.close_code(), 4002)

    def test_bad_media_format_closes_4001_without_a_call(self):
        self.send(start_message(sampleRate=16000))
        self.assertEqual(self.close_code(), 4001)
        self.assertEqual(self.service.calls, [])

    def test_malformed_messages_are_counted_then_close_4003(self):
        self.send(start_message())
        for _ in range(19):
            self.send(b"{not json")
        self.assertIsNone(self.close_code())
        self.send(b"{not json")
        self.assertEqual(self.close_code(), 4003)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 20)

    def test_an_exception_in_the_call_closes_only_this_socket_with_4011(self):
        self.send(start_message())
        call = self.service.calls[0][2]
        call.on_media = lambda ulaw: 1 / 0
        self.send(media_message(2, 1))
        self.assertEqual(self.close_code(), 4011)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_sequence_problems_are_logged_a_bounded_number_of_times(self):
        from twisted.logger import globalLogPublisher

        seen = []
        observer = lambda event: seen.append(event) if "SEQUENCE" in event.get("log_format", "") else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.send(start_message())
        for i in range(100):
            self.send(media_message(2 + i * 3, 1 + i * 3))  # every message skips two
        self.assertEqual(len(seen), MAX_SEQUENCE_WARNINGS + 1)  # then one line saying the rest are counted

    def test_close_ends_the_call_once(self):
        self.send(start_message())
        call = self.service.calls[0][2]
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(call.events[-1], "close")
        self.assertEqual(self.service.ended, [call])

    def test_duplicate_starts_count_as_protocol_errors(self):
        self.send(start_message())
        for _ in range(MAX_PROTOCOL_ERRORS):
            self.send(start_message())
        self.assertEqual(len(self.service.calls), 1)
        self.assertEqual(self.close_code(), 4003)

    def test_nothing_is_handled_after_voiced_sent_its_close(self):
        from twisted.logger import globalLogPublisher

        seen = []
        observer = lambda event: seen.append(event) if "PROTOCOL_ERROR" in event.get("log_format", "") else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.send(start_message())
        for _ in range(MAX_PROTOCOL_ERRORS + 50):  # a flood that goes on during the close handshake
            self.send(b"{not json")
        self.assertEqual(self.close_code(), 4003)
        self.assertEqual(len(seen), MAX_PROTOCOL_ERRORS)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), MAX_PROTOCOL_ERRORS)

    def test_a_start_after_the_no_start_close_creates_no_call(self):
        self.clock.advance(10.1)
        self.assertEqual(self.close_code(), 4000)
        self.send(start_message())
        self.assertEqual(self.service.calls, [])

    def test_a_start_after_a_bad_format_close_creates_no_call(self):
        self.send(start_message(sampleRate=16000))
        self.assertEqual(self.close_code(), 4001)
        self.send(start_message())
        self.assertEqual(self.service.calls, [])
