"""The carrier port's TCP path (Asterisk AudioSocket's kind of carrier), on a Clock (whole
calls over a connection in memory; a refused one on a real loopback socket), with
voiced-call's AudioSocket wire (``voiced.caller.carriers.audiosocket``): no playback
markers, as AudioSocket has none.
"""

from __future__ import annotations

import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.caller import run_until, tone
from tests.testing.network import MemoryNetwork
from voiced.audio import silence_ulaw
from voiced.caller.carriers.audiosocket import AudioSocketCall
from voiced.caller.carriers.base import CallSetup, DaemonEvent, Outbound, SendBack
from voiced.caller.client import parse_tcp_url, place_call
from voiced.caller.session import CallConfig, CallerLine, CallSession
from voiced.carrier.audiosocket import wire
from voiced.carrier.audiosocket.wire import AUDIO_8K as SLIN, DTMF, HANG_UP, SLIN_8K, UUID
from voiced.carrier.codec import Codec


def audiosocket_frame(kind: int, payload: bytes = b"") -> bytes:
    return wire.frame(kind, payload)


def audiosocket_frames(stream: bytes) -> list[tuple[int, bytes]]:
    return wire.FrameSplitter().feed(bytes(stream))


class BytesLink:
    """A TCP connection in Clock tests: records what the caller wrote."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.hung_up = False

    def send(self, message: Outbound) -> None:
        assert isinstance(message, bytes), "a TCP carrier writes bytes"
        self.written += message

    def hang_up(self) -> None:
        self.hung_up = True

    def frames(self) -> list[tuple[int, bytes]]:
        return audiosocket_frames(bytearray(self.written))


def slin(ulaw: bytes) -> bytes:
    return Codec(SLIN_8K).encode(ulaw)


class SessionOverTcpTests(SynchronousTestCase):
    """CallSession on a Clock with a TCP wire without markers: nothing in the session is Twilio's."""

    def test_a_carrier_without_markers_plays_audio_and_hangs_up_its_own_way(self) -> None:
        clock = Clock()
        clock.advance(50.0)
        link = BytesLink()
        wire = AudioSocketCall.new_call(CallSetup())
        config = CallConfig(reply_timeout_s=0.2, hangup_grace_s=0.3, pause_s=0.2)
        session = CallSession(clock, [CallerLine(tone(100), "hi")], wire, "tcp://test:1", config)
        session.opened(link)
        greeting = tone(200)
        frame = audiosocket_frame(SLIN, slin(greeting))
        session.received(frame[:150], True)  # a frame split across reads
        session.received(frame[150:], True)
        run_until(clock, 0.3)
        session.received(audiosocket_frame(0x7A, b"?"), True)
        run_until(clock, 1.5)
        self.assertTrue(link.hung_up)
        session.closed(True, None, "Connection was closed cleanly.")
        report = self.successResultOf(session.done)
        self.assertEqual(report.carrier, "audiosocket")
        self.assertEqual((report.call_sid, report.stream_sid), (wire.call_id, wire.call_id))
        self.assertEqual(report.errors, ["daemon sent a frame of kind 0x7a, which Asterisk does not accept"])
        self.assertFalse(report.hung_up_by_bot)
        self.assertEqual(report.replies[0].audio, greeting)
        self.assertEqual(report.marks_echoed, [])
        sent = link.frames()
        self.assertEqual(sent[0], (UUID, wire.uuid.bytes))
        self.assertEqual(sent[-1], (HANG_UP, b""))
        audio = [payload for kind, payload in sent if kind == SLIN]
        self.assertEqual({len(a) for a in audio}, {320})
        self.assertEqual(len(audio), report.frames_sent)
        # The greeting played until 0.2 s, the caller spoke after the pause, at 0.4 s.
        self.assertAlmostEqual(report.turns[0].speech_start_s, 0.4, places=6)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_hang_up_message_ends_the_call_and_what_follows_it_is_ignored(self) -> None:
        clock = Clock()
        link = BytesLink()
        session = CallSession(clock, [], AudioSocketCall.new_call(CallSetup()), "tcp://test:1", CallConfig())
        session.opened(link)
        second = slin(tone(1000))
        session.received(b"".join(audiosocket_frame(SLIN, second[i:i + 320]) for i in range(0, len(second), 320))
                         + audiosocket_frame(HANG_UP) + audiosocket_frame(SLIN, slin(tone(100))), True)
        self.assertTrue(link.hung_up)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(0.25)
        session.closed(True, None, "Connection was closed cleanly.")
        report = self.successResultOf(session.done)
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.errors, [])
        self.assertEqual(report.audio_dropped_at_hangup_ms, 750)
        self.assertEqual(len(report.replies), 1)

    def test_a_reset_after_the_hang_up_message_is_no_error(self) -> None:
        # The daemon closes with our audio still unread, so its kernel resets the connection.
        clock = Clock()
        link = BytesLink()
        session = CallSession(clock, [], AudioSocketCall.new_call(CallSetup()), "tcp://test:1", CallConfig())
        session.opened(link)
        session.received(audiosocket_frame(HANG_UP), True)
        session.closed(False, None, "Connection was lost in a non-clean fashion: Connection lost.")
        report = self.successResultOf(session.done)
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.errors, [])

    def test_a_reset_without_a_hang_up_message_is_an_error(self) -> None:
        clock = Clock()
        session = CallSession(clock, [], AudioSocketCall.new_call(CallSetup()), "tcp://test:1", CallConfig())
        session.opened(BytesLink())
        session.closed(False, None, "Connection was lost in a non-clean fashion: Connection lost.")
        report = self.successResultOf(session.done)
        self.assertEqual(report.errors, ["connection lost without a close "
                                         "(Connection was lost in a non-clean fashion: Connection lost.)"])

    def test_a_carrier_answer_is_sent_back_at_once(self) -> None:
        class Acknowledging(AudioSocketCall):
            def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
                return [SendBack(b"ack:" + data)] + super().read(data, is_binary)

        link = BytesLink()
        session = CallSession(Clock(), [], Acknowledging.new_call(CallSetup()), "tcp://test:1", CallConfig())
        session.opened(link)
        session.received(audiosocket_frame(SLIN, slin(tone(20))), True)
        self.assertIn(b"ack:" + audiosocket_frame(SLIN, slin(tone(20))), bytes(link.written))


class TcpUrlTests(SynchronousTestCase):
    def test_tcp_addresses(self) -> None:
        self.assertEqual(parse_tcp_url("tcp://127.0.0.1:9092"), ("127.0.0.1", 9092))
        self.assertEqual(parse_tcp_url("tcp://[::1]:9092/"), ("::1", 9092))
        for bad in ("ws://127.0.0.1:9092", "tcp://127.0.0.1", "tcp://:9092", "tcp://host:port", "tcp://h:1/x"):
            with self.assertRaises(ValueError):
                parse_tcp_url(bad)


class AudioSocketBot(Protocol):
    """A stand-in daemon on plain TCP: greets, hears the caller, hangs up when told to."""

    def connectionMade(self) -> None:
        self.frames = wire.FrameSplitter()
        self.received: list[tuple[int, bytes]] = []
        self.closed: Deferred[None] = Deferred()
        self.factory.bots.append(self)

    def dataReceived(self, data: bytes) -> None:
        for kind, payload in self.frames.feed(data):
            self.received.append((kind, payload))
            if kind == UUID:
                for i in range(0, len(self.factory.greeting), 320):  # sent ahead: the caller's buffer paces it
                    self.transport.write(audiosocket_frame(SLIN, self.factory.greeting[i : i + 320]))
            audio_frames = sum(1 for k, _ in self.received if k == SLIN)
            if audio_frames == self.factory.hang_up_after_frames:
                self.transport.write(audiosocket_frame(HANG_UP))
                self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(None)


class TcpCallTests(SynchronousTestCase):
    """Whole calls through place_call's TCP path, over a connection in memory on a Clock."""

    def serve(self, greeting: bytes, hang_up_after_frames: int = -1) -> str:
        self.network = MemoryNetwork(self)
        factory = Factory.forProtocol(AudioSocketBot)
        factory.greeting, factory.hang_up_after_frames, factory.bots = greeting, hang_up_after_frames, []
        self.network.reactor.listenTCP(MemoryNetwork.PORT, factory, interface="127.0.0.1")
        self.factory = factory
        return f"tcp://127.0.0.1:{MemoryNetwork.PORT}"

    def test_a_call_over_plain_tcp_ending_with_the_caller_hanging_up(self):
        url = self.serve(slin(tone(200)))
        call_id = str(uuid.uuid4())
        lines = [CallerLine(tone(200) + silence_ulaw(100), "hello"), CallerLine(b"", "[dtmf 5]", dtmf="5")]
        report = self.network.run(place_call(self.network.reactor, url, lines, carrier=AudioSocketCall,
                                             call_sid=call_id, pause_ms=200, reply_timeout_s=0.3, hangup_grace_s=0.3))
        bot = self.factory.bots[0]
        self.network.run(bot.closed)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.connected and report.completed)
        self.assertFalse(report.hung_up_by_bot)
        self.assertEqual(report.replies[0].audio, tone(200))
        kinds = [kind for kind, _ in bot.received]
        self.assertEqual(bot.received[0], (UUID, uuid.UUID(call_id).bytes))
        self.assertEqual((kinds.count(DTMF), kinds[-1]), (1, HANG_UP))
        self.assertIn((DTMF, b"5"), bot.received)
        heard = [payload for kind, payload in bot.received if kind == SLIN]
        self.assertEqual(len(heard), report.frames_sent)
        self.assertEqual(Codec(SLIN_8K).decode(b"".join(heard)), report.caller_audio)

    def test_the_daemon_hanging_up_in_a_message(self):
        url = self.serve(slin(tone(100)), hang_up_after_frames=10)
        report = self.network.run(place_call(self.network.reactor, url, [], carrier=AudioSocketCall,
                                             reply_timeout_s=5.0))
        self.network.run(self.factory.bots[0].closed)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot)
        self.assertIsNone(report.closed_code)
        self.assertEqual(report.replies[0].audio, tone(100))


class RefusedTcpCallTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_a_refused_tcp_connection_is_reported(self):
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        report = yield place_call(reactor, f"tcp://127.0.0.1:{number}", [], carrier=AudioSocketCall)
        self.assertFalse(report.connected)
        self.assertIn("connection refused", report.errors[0])

