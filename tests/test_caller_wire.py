"""voiced-call's carrier port: the registry, Twilio's wire through the port (checked
against the daemon's own Twilio parser and Twilio's signature validator), the audio
formats other carriers will need, and the port's TCP path.

No TCP carrier is registered yet, so the TCP path is driven by ``AudioSocketFraming``,
a test wire that speaks Asterisk AudioSocket's framing (1-byte type, 2-byte big-endian
length, payload; UUID, slin 8 kHz audio, DTMF, hang-up) over a real loopback socket.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import struct
import uuid
from typing import ClassVar

import numpy as np
from twilio.request_validator import RequestValidator
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_caller import FakeLink, run_until, tone
from voiced.audio import SAMPLE_RATE, silence_ulaw, ulaw_to_pcm16
from voiced.carrier import media_token
from voiced.carrier.twilio import Connected, Dtmf, Mark, Media, Start, Stop, clear_message, mark_message
from voiced.carrier.twilio import media_message, parse_message
from voiced.caller.carriers import UnknownCarrier, carrier_names, carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, DaemonEvent, HangUp, Marker, Outbound, Problem
from voiced.caller.carriers.base import SendBack, Transport
from voiced.caller.carriers.codec import ALAW_8K, PCM16_8K, PCM16_16K, ULAW_8K, AudioFormat, FromCarrier, ToCarrier
from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.client import parse_tcp_url, place_call
from voiced.caller.main import build_parser
from voiced.caller.session import CallConfig, CallerLine, CallSession


def twilio_call(**setup: object) -> TwilioStream:
    return TwilioStream.new_call(CallSetup(**setup))  # type: ignore[arg-type]


class RegistryTests(SynchronousTestCase):
    def test_twilio_is_registered_and_the_default(self) -> None:
        self.assertIn("twilio", carrier_names())
        self.assertIs(carrier_wire("twilio"), TwilioStream)
        self.assertEqual(build_parser().parse_args([]).carrier, "twilio")

    def test_every_registered_wire_says_how_it_connects(self) -> None:
        for name in carrier_names():
            wire = carrier_wire(name)
            self.assertEqual(wire.name, name)
            self.assertIn(wire.transport, ("websocket", "tcp"))
            if wire.transport == "websocket":
                self.assertTrue(wire.path == "/media" or wire.path == f"/media/{name}", wire.path)
            else:
                self.assertEqual(wire.path, "")
            call = wire.new_call(CallSetup(call_id=None))
            self.assertTrue(call.call_id and call.stream_id)

    def test_an_unknown_carrier_is_named_with_the_known_ones(self) -> None:
        with self.assertRaises(UnknownCarrier) as caught:
            carrier_wire("carrier-pigeon")
        self.assertIn("'carrier-pigeon'", str(caught.exception))
        self.assertIn("twilio", str(caught.exception))

    def test_the_cli_refuses_an_unknown_carrier_in_one_line_and_lists_the_known_ones(self) -> None:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as caught:
            build_parser().parse_args(["--carrier", "carrier-pigeon"])
        self.assertEqual(caught.exception.code, 2)
        [error] = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        self.assertIn("--carrier", error)
        self.assertIn("'twilio'", error)
        self.assertIn("twilio", build_parser().format_help())

    def test_the_cli_refuses_keys_a_phone_does_not_have(self) -> None:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit):
            build_parser().parse_args(["--dtmf", "12x"])
        self.assertIn("0-9, *, # and A-D", stderr.getvalue())
        self.assertEqual(build_parser().parse_args(["--dtmf", "1#"]).lines, [("dtmf", "1#", None)])


class TwilioWireTests(SynchronousTestCase):
    """What the port's Twilio wire sends is what the daemon's Twilio parser reads."""

    def test_opening_is_connected_then_start_with_the_call_and_its_parameters(self) -> None:
        wire = twilio_call(call_id="CA" + "1" * 32, from_number="+972501234567", to_number="+97231234567",
                           parameters={"lang": "he-IL"}, account_id="AC" + "2" * 32)
        connected, start = (parse_message(m) for m in wire.opening())
        self.assertIsInstance(connected, Connected)
        self.assertIsInstance(start, Start)
        self.assertEqual((start.call_sid, start.account_sid, start.stream_sid),
                         ("CA" + "1" * 32, "AC" + "2" * 32, wire.stream_id))
        self.assertEqual((wire.call_id, start.sequence_number), (start.call_sid, 1))
        self.assertRegex(wire.stream_id, r"^MZ[0-9a-f]{32}$")
        self.assertEqual(start.custom_parameters, {"From": "+972501234567", "To": "+97231234567", "lang": "he-IL"})
        self.assertEqual((start.encoding, start.sample_rate), ("audio/x-mulaw", 8000))

    def test_a_secret_signs_the_upgrade_and_puts_a_media_token_in_start(self) -> None:
        wire = twilio_call(secret="token123", now=1_700_000_000.0)
        url = "wss://voice.example.com/media"
        headers = wire.upgrade_headers(url)
        self.assertTrue(RequestValidator("token123").validate(url, {}, headers["X-Twilio-Signature"]))
        start = parse_message(wire.opening()[1])
        token = start.custom_parameters[media_token.PARAMETER]
        self.assertIsNone(media_token.problem("token123", wire.call_id, token, 1_700_000_100.0))
        self.assertEqual(twilio_call().upgrade_headers(url), {})
        self.assertNotIn(media_token.PARAMETER, parse_message(twilio_call().opening()[1]).custom_parameters)

    def test_speech_is_twilio_media_byte_for_byte_what_json_dumps_makes(self) -> None:
        wire = twilio_call()
        wire.opening()
        frames = [tone(20), silence_ulaw(20), bytes(range(160))]
        for n, frame in enumerate(frames):
            message = wire.speech(frame, n * 20)
            expected = {"event": "media", "sequenceNumber": str(n + 2), "streamSid": wire.stream_id,
                        "media": {"track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20),
                                  "payload": base64.b64encode(frame).decode()}}
            self.assertEqual(message, json.dumps(expected, separators=(",", ":")))
            media = parse_message(message)
            self.assertIsInstance(media, Media)
            self.assertEqual((media.payload, media.chunk, media.timestamp_ms), (frame, n + 1, n * 20))

    def test_a_stream_id_that_json_must_escape_stays_valid_json(self) -> None:
        wire = TwilioStream("AC1", "CA1", 'MZ"%d\\', {})
        self.assertEqual(parse_message(wire.speech(b"\xff" * 160, 0)).stream_sid, 'MZ"%d\\')

    def test_keys_marker_answers_and_hang_up_are_numbered_twilio_messages(self) -> None:
        wire = twilio_call()
        wire.opening()
        [digit] = wire.digit("#")
        [mark] = wire.marker_played("r0.end")
        [stop] = wire.hang_up()
        self.assertEqual(json.loads(digit)["dtmf"], {"track": "inbound_track", "digit": "#"})
        parsed = [parse_message(m) for m in (digit, mark, stop)]
        self.assertEqual([type(m) for m in parsed], [Dtmf, Mark, Stop])
        self.assertEqual([m.sequence_number for m in parsed], [2, 3, 4])
        self.assertEqual((parsed[0].digit, parsed[1].name, parsed[2].call_sid), ("#", "r0.end", wire.call_id))

    def test_reads_the_daemons_media_marks_and_clear(self) -> None:
        wire = twilio_call()
        sid = wire.stream_id
        self.assertEqual(wire.read(media_message(sid, tone(40)).encode(), False), [Audio(tone(40))])
        self.assertEqual(wire.read(mark_message(sid, "r1.s0").encode(), False), [Marker("r1.s0")])
        self.assertEqual(wire.read(clear_message(sid).encode(), False), [Clear()])

    def test_reports_what_twilio_would_not_accept_and_keeps_what_it_can(self) -> None:
        wire = twilio_call()
        sid = wire.stream_id

        def problems(events: list[DaemonEvent]) -> list[str]:
            return [e.message for e in events if isinstance(e, Problem)]

        self.assertIn("binary", problems(wire.read(b"\x00\x01", True))[0])
        self.assertIn("not JSON", problems(wire.read(b"{nope", False))[0])
        self.assertIn("no 'event'", problems(wire.read(b"[1, 2]", False))[0])
        self.assertIn("not base64", problems(wire.read(b'{"event":"media","media":{"payload":"@@"}}', False))[0])
        self.assertIn("payload", problems(wire.read(b'{"event":"media","media":{}}', False))[0])
        self.assertIn("name", problems(wire.read(b'{"event":"mark","mark":{"name":7}}', False))[0])
        self.assertIn("'start'", problems(wire.read(json.dumps({"event": "start", "streamSid": sid}).encode(), False))[0])
        other = wire.read(media_message("MZother", tone(20)).encode(), False)
        self.assertIn("MZother", problems(other)[0])
        self.assertEqual(other[-1], Audio(tone(20)))  # reported, and still played


class CodecTests(SynchronousTestCase):
    """Carrier audio formats: exact frame lengths, and the caller's audio survives the round trip."""

    def test_frames_convert_to_the_carriers_framing_and_back(self) -> None:
        speech = tone(1000)
        for fmt, exact in ((ULAW_8K, True), (ALAW_8K, False), (PCM16_8K, True), (PCM16_16K, False)):
            to_carrier, from_carrier = ToCarrier(fmt), FromCarrier(fmt)
            sent = [to_carrier(speech[i : i + 160]) for i in range(0, len(speech), 160)]
            self.assertEqual({len(s) for s in sent}, {fmt.frame_bytes}, fmt)
            back = b"".join(from_carrier(s) for s in sent)
            self.assertEqual(len(back), len(speech), fmt)
            if exact:
                self.assertEqual(back, speech, fmt)
            else:
                self.assertLess(abs(self.level(back) / self.level(speech) - 1.0), 0.05, fmt)
                self.assertEqual(self.peak_hz(back), 440, fmt)

    def test_a_tcp_stream_may_split_samples_anywhere(self) -> None:
        to_carrier, from_carrier = ToCarrier(PCM16_16K), FromCarrier(PCM16_16K)
        stream = b"".join(to_carrier(tone(20, 300)) for _ in range(10))
        whole = FromCarrier(PCM16_16K)(stream)
        pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
        self.assertEqual(b"".join(from_carrier(p) for p in pieces), whole)
        self.assertEqual(from_carrier.pending, 0)
        self.assertEqual(len(whole), 1600)

    def test_formats_a_carrier_cannot_have_are_refused(self) -> None:
        for encoding, rate in (("opus", 8000), ("ulaw", 16000), ("pcm16", 11025), ("pcm16", 0)):
            with self.assertRaises(ValueError):
                AudioFormat(encoding, rate)  # type: ignore[arg-type]
        self.assertEqual((AudioFormat("pcm16", 24000).frame_bytes, ALAW_8K.frame_bytes), (960, 160))

    def level(self, ulaw: bytes) -> float:
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
        return float(np.sqrt((pcm**2).mean()))

    def peak_hz(self, ulaw: bytes) -> int:
        pcm = np.frombuffer(ulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float64)
        return int(round(np.argmax(np.abs(np.fft.rfft(pcm))) * SAMPLE_RATE / len(pcm)))


# ---- the TCP path -------------------------------------------------------------------------
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
        self._to_slin, self._from_slin = ToCarrier(PCM16_8K), FromCarrier(PCM16_8K)

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
    return ToCarrier(PCM16_8K)(ulaw)


class SessionThroughThePortTests(SynchronousTestCase):
    """CallSession on a Clock, with either wire: nothing in it is Twilio's."""

    def test_a_dtmf_line_presses_one_key_a_frame_as_the_line_starts(self) -> None:
        clock = Clock()
        clock.advance(50.0)
        link = FakeLink(clock)
        lines = [CallerLine(b"", "[dtmf 12#]", dtmf="12#")]
        session = CallSession(clock, lines, twilio_call(), "ws://test/media", CallConfig(reply_timeout_s=0.5))
        session.opened(link)
        run_until(clock, 0.7)
        keys = [(t - 50.0, m) for t, m in link.sent if m["event"] == "dtmf"]
        self.assertEqual([parse_message(json.dumps(m)).digit for _, m in keys], ["1", "2", "#"])
        self.assertEqual([round(t, 3) for t, _ in keys], [0.5, 0.52, 0.54])  # the first frame after 0.5 s
        turn = session.report.turns[0]
        self.assertEqual(turn.line_text, "[dtmf 12#]")
        self.assertAlmostEqual(turn.speech_start_s, 0.5, places=6)
        self.assertAlmostEqual(turn.speech_end_s, 0.54, places=6)

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
        self.assertEqual(FromCarrier(PCM16_8K)(b"".join(heard)), report.caller_audio)

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

