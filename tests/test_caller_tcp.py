"""The carrier port's TCP path (Asterisk AudioSocket's kind of carrier), on a Clock and
over a real loopback socket.

No TCP carrier is registered yet, so ``AudioSocketFraming`` here is a test wire that
speaks AudioSocket's framing (1-byte type, 2-byte big-endian length, payload; UUID,
slin 8 kHz audio, DTMF, hang-up, error) and has no playback markers, as AudioSocket has none.
"""

from __future__ import annotations

import struct
import uuid
from typing import ClassVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_caller import run_until, tone
from voiced.audio import silence_ulaw
from voiced.caller.carriers.base import Audio, CallSetup, DaemonEvent, HangUp, Outbound, Problem, SendBack, Transport
from voiced.carrier.base import AudioFormat
from voiced.carrier.codec import Codec

SLIN_8K = AudioFormat("pcm_s16le", 8000)
from voiced.caller.client import parse_tcp_url, place_call
from voiced.caller.session import CallConfig, CallerLine, CallSession

HANG_UP, UUID, DTMF, SLIN, ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF


def audiosocket_frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BH", kind, len(payload)) + payload


def audiosocket_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Whole frames off the front of ``buffer``; a partial one stays."""
    out = []
    while len(buffer) >= 3:
        kind, length = struct.unpack_from("!BH", buffer)
        if len(buffer) < 3 + length:
            break
        out.append((kind, bytes(buffer[3 : 3 + length])))
        del buffer[: 3 + length]
    return out


class AudioSocketFraming:
    """A test wire with AudioSocket's framing and no markers: the port's TCP path end to end."""

    name: ClassVar[str] = "audiosocket-framing"
    title: ClassVar[str] = "AudioSocket framing (test)"
    transport: ClassVar[Transport] = "tcp"
    path: ClassVar[str] = ""
    answers_markers: ClassVar[bool] = False
    clear_answers_markers: ClassVar[bool] = False
    secret_env: ClassVar[str] = ""

    def __init__(self, call_uuid: uuid.UUID) -> None:
        self.uuid = call_uuid
        self._buffer = bytearray()
        self._to_slin, self._from_slin = Codec(SLIN_8K).encode, Codec(SLIN_8K).decode

    @classmethod
    def new_call(cls, setup: CallSetup) -> AudioSocketFraming:
        return cls(uuid.UUID(setup.call_id) if setup.call_id else uuid.uuid4())

    @property
    def call_id(self) -> str:
        return str(self.uuid)

    @property
    def stream_id(self) -> str:
        return str(self.uuid)

    def upgrade_headers(self, signed_url: str) -> dict[str, str]:
        return {}

    def opening(self) -> list[Outbound]:
        return [audiosocket_frame(UUID, self.uuid.bytes)]

    def speech(self, ulaw: bytes, timestamp_ms: int) -> Outbound | None:
        return audiosocket_frame(SLIN, self._to_slin(ulaw))

    def digit(self, digit: str) -> list[Outbound]:
        return [audiosocket_frame(DTMF, digit.encode("ascii"))]

    def marker_played(self, name: str) -> list[Outbound]:
        return []

    def hang_up(self) -> list[Outbound]:
        return [audiosocket_frame(HANG_UP)]

    def read(self, data: bytes, is_binary: bool) -> list[DaemonEvent]:
        self._buffer += data
        events: list[DaemonEvent] = []
        for kind, payload in audiosocket_frames(self._buffer):
            if kind == SLIN:
                events.append(Audio(self._from_slin(payload)))
            elif kind == HANG_UP:
                events.append(HangUp())
            elif kind == ERROR:
                events.append(Problem(f"daemon sent an error frame: {payload.hex()}"))
            else:
                events.append(Problem(f"daemon sent a frame of type {kind:#04x}, which AudioSocket does not accept"))
        return events


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
        wire = AudioSocketFraming.new_call(CallSetup())
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
        self.assertEqual(report.carrier, "audiosocket-framing")
        self.assertEqual((report.call_sid, report.stream_sid), (wire.call_id, wire.call_id))
        self.assertEqual(report.errors, ["daemon sent a frame of type 0x7a, which AudioSocket does not accept"])
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
        session = CallSession(clock, [], AudioSocketFraming.new_call(CallSetup()), "tcp://test:1", CallConfig())
        session.opened(link)
        session.received(audiosocket_frame(SLIN, slin(tone(1000))) + audiosocket_frame(HANG_UP)
                         + audiosocket_frame(SLIN, slin(tone(100))), True)
        self.assertTrue(link.hung_up)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(0.25)
        session.closed(True, None, "Connection was closed cleanly.")
        report = self.successResultOf(session.done)
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.errors, [])
        self.assertEqual(report.audio_dropped_at_hangup_ms, 750)
        self.assertEqual(len(report.replies), 1)

    def test_a_carrier_answer_is_sent_back_at_once(self) -> None:
        class Acknowledging(AudioSocketFraming):
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
        self.buffer = bytearray()
        self.received: list[tuple[int, bytes]] = []
        self.closed: Deferred[None] = Deferred()
        self.factory.bots.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        for kind, payload in audiosocket_frames(self.buffer):
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


class LiveTcpCallTests(TestCase):
    timeout = 30

    def serve(self, greeting: bytes, hang_up_after_frames: int = -1) -> str:
        factory = Factory.forProtocol(AudioSocketBot)
        factory.greeting, factory.hang_up_after_frames, factory.bots = greeting, hang_up_after_frames, []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.factory = factory
        return f"tcp://127.0.0.1:{port.getHost().port}"

    @inlineCallbacks
    def test_a_call_over_plain_tcp_ending_with_the_caller_hanging_up(self):
        url = self.serve(slin(tone(200)))
        call_id = str(uuid.uuid4())
        lines = [CallerLine(tone(200) + silence_ulaw(100), "hello"), CallerLine(b"", "[dtmf 5]", dtmf="5")]
        report = yield place_call(reactor, url, lines, carrier=AudioSocketFraming, call_sid=call_id, pause_ms=200,
                                  reply_timeout_s=0.3, hangup_grace_s=0.3)
        bot = self.factory.bots[0]
        yield bot.closed
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

    @inlineCallbacks
    def test_the_daemon_hanging_up_in_a_message(self):
        url = self.serve(slin(tone(100)), hang_up_after_frames=10)
        report = yield place_call(reactor, url, [], carrier=AudioSocketFraming, reply_timeout_s=5.0)
        yield self.factory.bots[0].closed
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot)
        self.assertIsNone(report.closed_code)
        self.assertEqual(report.replies[0].audio, tone(100))

    @inlineCallbacks
    def test_a_refused_tcp_connection_is_reported(self):
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        report = yield place_call(reactor, f"tcp://127.0.0.1:{number}", [], carrier=AudioSocketFraming)
        self.assertFalse(report.connected)
        self.assertIn("connection refused", report.errors[0])

