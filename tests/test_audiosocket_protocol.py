"""The AudioSocket connection in process: Asterisk's frames on a StringTransport, a Clock
for the playout clock and the timers, the recording call core of tests/test_protocol.py.
Admission (the connection and the UUID), the call's format, the local playout, hang-ups,
and every hard limit: each bad input has one defined outcome, never an exception."""

from __future__ import annotations

import os
import uuid

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import RecordingService
from voiced.carrier import audiosocket
from voiced.carrier.audiosocket import call_uuid, wire
from voiced.carrier.audiosocket.protocol import FORMAT_WAIT_S, IDLE_CHECK_S, AudioSocketAdmission, AudioSocketFactory
from voiced.carrier.base import Refused
from voiced.carrier.codec import Codec
from voiced.carrier.gate import OFF, OPEN, SIGNED
from voiced.carrier.limits import MAX_OUTBOUND_BYTES
from voiced.carrier.link import MAX_PROTOCOL_ERRORS, START_TIMEOUT_S
from voiced.config import Settings

SECRET = "s3cret-0123456789abcdef"
NOW = 1_700_000_000.0
CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
SLIN_FRAME = Codec(wire.SLIN_8K).encode(b"\x10" * 160)  # 20 ms of a quiet line, 320 bytes


def audio(payload: bytes = SLIN_FRAME, kind: int = wire.AUDIO_8K) -> bytes:
    return wire.frame(kind, payload)


class RefusingService(RecordingService):
    def admit(self):
        raise Refused(503, "voiced is at max_calls")


class Harness(SynchronousTestCase):
    secret = ""
    mode = OPEN
    service_class = RecordingService

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.service = self.service_class(Settings(), self.clock)
        self.factory = AudioSocketFactory(self.service, AudioSocketAdmission(self.secret, self.mode))
        self.proto, self.transport = self.connect()

    def connect(self):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 40000))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "10.0.0.5", 9092),
                                    peerAddress=IPv4Address("TCP", "10.0.0.2", 40000))
        proto.makeConnection(transport)
        return proto, transport

    def send(self, *frames: bytes) -> None:
        self.proto.dataReceived(b"".join(frames))

    def sent(self, transport=None) -> list[tuple[int, bytes]]:
        return wire.FrameSplitter().feed((transport or self.transport).value())

    def lose(self, proto=None) -> None:
        (proto or self.proto).connectionLost(Failure(ConnectionDone()))

    def started(self, kind: int = wire.AUDIO_8K, payload: bytes = SLIN_FRAME):
        """UUID and a first audio frame: the call, its CallLink and its recording call."""
        self.send(wire.uuid_frame(CALL), audio(payload, kind))
        start, link, call = self.service.calls[0]
        return start, link, call

    def assert_refused_with(self, code: int, transport=None) -> None:
        transport = transport or self.transport
        self.assertEqual(self.sent(transport)[-1], (wire.ERROR, bytes([code])))
        self.assertTrue(transport.disconnecting)


class CallTests(Harness):
    def test_the_uuid_and_the_first_audio_start_a_call_at_its_rate(self):
        self.assertTrue(self.proto.link is not None and self.service.calls == [])
        start, link, call = self.started()
        self.assertEqual((start.carrier, start.call_id, start.stream_id), ("audiosocket", str(CALL), ""))
        self.assertEqual(str(start.audio), "pcm_s16le/8000")
        self.assertEqual(call.events, ["start", ("media", 160)])
        self.assertFalse(link.echoes_marks)
        self.assertEqual(self.transport.value(), b"")

    def test_a_wideband_channel_is_answered_in_its_own_kind(self):
        start, link, call = self.started(0x12, bytes(640))
        self.assertEqual(str(start.audio), "pcm_s16le/16000")
        self.assertEqual(call.events, ["start", ("media", 160)])
        link.send_audio(b"\xff" * 160)
        self.assertEqual([(kind, len(payload)) for kind, payload in self.sent()], [(0x12, 640)])

    def test_a_rate_voiced_does_not_speak_closes_before_any_call(self):
        self.send(wire.uuid_frame(CALL), audio(bytes(960), 0x16))
        self.assertEqual(self.service.calls, [])
        self.assert_refused_with(wire.ERROR_PROTOCOL)

    def test_a_silent_line_starts_the_call_at_8_khz_and_later_wideband_audio_is_converted(self):
        self.send(wire.uuid_frame(CALL))
        self.clock.advance(FORMAT_WAIT_S)
        start, link, call = self.service.calls[0]
        self.assertEqual(str(start.audio), "pcm_s16le/8000")
        self.send(audio(bytes(640), 0x12), audio(bytes(640), 0x12))
        self.assertEqual(call.events, ["start", ("media", 160), ("media", 160)])
        self.send(audio(bytes(480), 0x13))
        self.assertEqual(call.events[-1], ("media", 160))
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 0)

    def test_frames_of_other_lengths_reach_the_call_as_whole_20_ms_frames(self):
        _, link, call = self.started(payload=SLIN_FRAME[:160])  # 10 ms
        self.assertEqual(call.events, ["start"])
        self.send(audio(SLIN_FRAME[:160]), audio(SLIN_FRAME + SLIN_FRAME[:160]))  # 10 + 30 ms
        self.assertEqual(call.events, ["start", ("media", 160), ("media", 160)])
        self.send(audio(SLIN_FRAME * 3))  # 60 ms at once: one hand-over
        self.assertEqual(call.events[-1], ("media", 480))

    def test_a_frame_split_across_reads_and_many_frames_in_one_read(self):
        stream = wire.uuid_frame(CALL) + audio() * 3
        for i in range(len(stream)):
            self.proto.dataReceived(stream[i:i + 1])
        _, _, call = self.service.calls[0]
        self.assertEqual(call.events, ["start"] + [("media", 160)] * 3)

    def test_dtmf_reaches_the_call_and_a_bad_digit_is_counted(self):
        _, _, call = self.started()
        self.send(wire.dtmf_frame("5"), wire.frame(wire.DTMF, b"55"), wire.frame(wire.DTMF, b"x"))
        self.assertEqual(call.events[-1], ("dtmf", "5"))
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 2)

    def test_asterisk_hanging_up_ends_the_call(self):
        _, _, call = self.started()
        self.send(wire.hang_up_frame(), audio())  # what follows the hang-up is not read
        self.assertEqual(call.events, ["start", ("media", 160)])
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(call.events[-1], "close")
        self.assertEqual(len(self.service.ended), 1)

    def test_asterisk_closing_the_socket_ends_the_call(self):
        _, _, call = self.started()
        self.lose()
        self.assertEqual(call.events[-1], "close")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_an_error_frame_from_asterisk_ends_the_call(self):
        self.started()
        self.send(wire.error_frame(0x02))
        self.assertTrue(self.transport.disconnecting)

    def test_the_bot_hangs_up_with_a_hang_up_frame(self):
        _, link, _ = self.started()
        link.hang_up()
        self.assertEqual(self.sent(), [(wire.HANG_UP, b"")])
        self.assertTrue(self.transport.disconnecting)
        link.send_audio(b"\xff" * 160)  # after the close: nothing more on the wire
        self.assertEqual(self.sent(), [(wire.HANG_UP, b"")])

    def test_the_local_playout_paces_the_bot_fires_markers_and_clear_stops_it(self):
        _, link, call = self.started()
        link.send_audio(b"\xff" * 800)  # 100 ms
        link.send_mark("r1.s0")
        self.assertEqual(len(self.sent()), 3)  # 60 ms ahead of real time, no more
        self.clock.advance(0.02)
        self.assertEqual(len(self.sent()), 4)
        self.clock.pump([0.02] * 4)
        self.assertEqual([len(p) for _, p in self.sent()], [320] * 5)
        self.assertEqual(call.events[-1], ("mark", "r1.s0"))  # when its audio has played
        link.send_audio(b"\xff" * 8000)
        link.send_mark("r2.s0")
        self.clock.advance(0.02)
        written = len(self.sent())
        link.send_clear()
        self.clock.pump([0.02] * 100)
        self.assertEqual(len(self.sent()), written)  # clear sends nothing and stops the audio
        self.assertNotIn(("mark", "r2.s0"), call.events)

    def test_after_the_close_nothing_the_peer_sends_is_read(self):
        _, link, call = self.started()
        link.hang_up()
        self.send(audio(), wire.dtmf_frame("1"))
        self.assertEqual(call.events, ["start", ("media", 160)])


class AdmissionTests(Harness):
    secret = SECRET
    mode = SIGNED

    def test_a_signed_uuid_is_admitted(self):
        signed = uuid.UUID(call_uuid.issue(SECRET, NOW - 2))
        self.send(wire.uuid_frame(signed), audio())
        self.assertEqual(self.service.calls[0][0].call_id, str(signed))

    def test_an_unsigned_uuid_is_refused_before_any_call_state(self):
        self.send(wire.uuid_frame(CALL), audio())
        self.assertEqual(self.service.calls, [])
        self.assert_refused_with(wire.ERROR_REFUSED)
        self.clock.advance(START_TIMEOUT_S)
        self.lose()
        self.assertEqual(self.service.ended, [])

    def test_a_stale_or_reused_uuid_is_refused(self):
        stale = uuid.UUID(call_uuid.issue(SECRET, NOW - call_uuid.MAX_SKEW_S - 1))
        self.send(wire.uuid_frame(stale))
        self.assert_refused_with(wire.ERROR_REFUSED)
        signed = uuid.UUID(call_uuid.issue(SECRET, NOW))
        first, first_transport = self.connect()
        first.dataReceived(wire.uuid_frame(signed) + audio())
        again, again_transport = self.connect()
        again.dataReceived(wire.uuid_frame(signed) + audio())
        self.assertEqual([start.call_id for start, _, _ in self.service.calls], [str(signed)])
        self.assert_refused_with(wire.ERROR_REFUSED, again_transport)
        self.assertFalse(first_transport.disconnecting)


class RefusedTests(Harness):
    service_class = RefusingService

    def test_a_full_or_draining_core_refuses_at_the_connection(self):
        self.assertIsNone(self.proto.link)
        self.assert_refused_with(wire.ERROR_UNAVAILABLE)
        self.send(wire.uuid_frame(CALL), audio())
        self.lose()
        self.assertEqual(self.service.calls, [])


class OffTests(Harness):
    mode = OFF

    def test_a_public_endpoint_without_a_secret_refuses_every_connection(self):
        self.assertIsNone(self.proto.link)
        self.assert_refused_with(wire.ERROR_REFUSED)


class HardLimitTests(Harness):
    def test_no_uuid_within_the_start_timeout_closes(self):
        self.clock.advance(START_TIMEOUT_S)
        self.assert_refused_with(wire.ERROR_PROTOCOL)

    def test_the_first_frame_must_be_the_uuid(self):
        self.send(audio())
        self.assert_refused_with(wire.ERROR_PROTOCOL)
        self.assertEqual(self.service.calls, [])

    def test_a_uuid_of_the_wrong_size_closes(self):
        self.send(wire.frame(wire.UUID, bytes(15)))
        self.assert_refused_with(wire.ERROR_PROTOCOL)

    def test_an_oversized_header_closes_at_once(self):
        _, _, call = self.started()
        self.send(b"\x10\xff\xff")
        self.assert_refused_with(wire.ERROR_PROTOCOL)
        self.lose()
        self.assertEqual(call.events[-1], "close")

    def test_malformed_frames_are_counted_and_a_stream_of_them_closes(self):
        _, _, call = self.started()
        self.send(wire.uuid_frame(CALL), audio(b"\x00" * 3), audio(b""), wire.frame(0x42, b"?"))
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 4)
        self.assertFalse(self.transport.disconnecting)
        self.send(*[wire.frame(0x42, b"?")] * (MAX_PROTOCOL_ERRORS - 4))
        self.assert_refused_with(wire.ERROR_PROTOCOL)

    def test_audio_faster_than_real_time_is_dropped_and_a_flood_closes(self):
        _, _, call = self.started()
        self.send(*[audio()] * 400)  # 8 s of audio at once
        media = [e for e in call.events if e != "start"]
        self.assertLess(len(media), 130)  # the 2 s burst allowance, no more
        self.assert_refused_with(wire.ERROR_REFUSED)

    def test_a_peer_that_stops_reading_is_dropped(self):
        _, link, _ = self.started()
        self.transport.dataBuffer = b"x" * (MAX_OUTBOUND_BYTES + 1)  # as a TCP transport holds unsent bytes
        self.transport._tempDataLen = 0
        link.send_audio(b"\xff" * 160)
        self.assertTrue(self.transport.disconnecting and self.transport.disconnected)

    def test_a_peer_that_goes_quiet_is_closed(self):
        _, _, call = self.started()
        for _ in range(3):
            self.clock.advance(IDLE_CHECK_S)
            self.send(audio())
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(IDLE_CHECK_S)
        self.clock.advance(IDLE_CHECK_S)
        self.assert_refused_with(wire.ERROR_PROTOCOL)

    def test_an_exception_in_the_call_closes_this_call_only(self):
        _, _, call = self.started()

        def broken(ulaw):
            raise RuntimeError("boom")

        call.on_media = broken
        self.send(audio())
        self.assert_refused_with(wire.ERROR_INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        other, other_transport = self.connect()
        other.dataReceived(wire.uuid_frame(uuid.UUID(int=9)) + audio())
        self.assertEqual(len(self.service.calls), 2)
        self.assertFalse(other_transport.disconnecting)


class CarrierTests(SynchronousTestCase):
    def build(self, **options):
        return audiosocket.carrier(RecordingService(), Settings.load(options, {}))

    def test_off_by_default(self):
        carrier = self.build()
        self.assertEqual((carrier.name, carrier.listeners, carrier.mode, carrier.warnings), ("audiosocket", [], "off", []))

    def test_modes_and_their_start_up_lines(self):
        loopback = self.build(audiosocket_listen="tcp:9092:interface=127.0.0.1")
        (option, endpoint, factory), = loopback.listeners
        self.assertEqual((option, endpoint, factory.config.mode), ("--audiosocket-listen", "tcp:9092:interface=127.0.0.1",
                                                                   OPEN))
        self.assertEqual((loopback.mode, loopback.warnings), (OPEN, []))
        public = self.build(audiosocket_listen="tcp:9092:interface=10.0.0.5")
        self.assertEqual(public.listeners[0][2].config.mode, OFF)
        self.assertIn("AudioSocket is off", public.warnings[0])
        signed = self.build(audiosocket_listen="tcp:9092", audiosocket_secret=SECRET)
        self.assertEqual((signed.listeners[0][2].config.mode, signed.mode, signed.warnings), (SIGNED, SIGNED, []))
        self.assertIn("AudioSocket is off", self.build(audiosocket_secret=SECRET).warnings[0])

    def test_options_are_checked(self):
        from voiced.config import ConfigError

        for bad in ({"audiosocket_listen": "unix:/tmp/x"}, {"audiosocket_secret": "short"},
                    {"audiosocket_secret": "has spaces and is long enough"}):
            with self.assertRaises(ConfigError):
                Settings.load(bad, {})
        settings = Settings.load({"audiosocket_secret": SECRET}, {})
        self.assertIn("audiosocket", settings.signed_carriers)
        self.assertNotIn(SECRET, settings.summary())

    def test_under_workers_the_supervisor_binds_it_and_each_worker_adopts_it(self):
        from voiced.worker_spec import WORKER_ENV, WorkerSpec, carrier_endpoints

        settings = Settings.load({"workers": "2", "listen": ["tcp:0"], "audiosocket_listen": "tcp:9092"}, {})
        self.assertEqual(carrier_endpoints(settings), [("--audiosocket-listen", "tcp:9092")])
        self.assertEqual(carrier_endpoints(Settings()), [])
        spec = WorkerSpec(0, 2, settings, ((7, 2),), None, "/tmp/x", 42, (("--audiosocket-listen", 9, 2),))
        self.assertEqual(WorkerSpec.from_env({WORKER_ENV: spec.to_env()}), spec)
        self.assertEqual(self.build(**{"audiosocket_listen": "tcp:9092"}).listeners[0][0],
                         carrier_endpoints(settings)[0][0])  # the option the worker finds its socket by

    def test_the_daemon_listens_on_it_or_adopts_the_supervisors_socket(self):
        from twisted.internet.testing import MemoryReactorClock

        from voiced.app import build
        from voiced.listener import AdoptedListener, Listener
        from voiced.worker_spec import WorkerSpec

        def audiosocket_listeners(service):
            return [s for s in service if isinstance(getattr(s, "factory", None), AudioSocketFactory)]

        settings = Settings.load({"audiosocket_listen": "tcp:9092:interface=127.0.0.1"}, {})
        alone, = audiosocket_listeners(build(settings, reactor=MemoryReactorClock()))
        self.assertIsInstance(alone, Listener)
        self.assertEqual((alone.option, alone.description), ("--audiosocket-listen", "tcp:9092:interface=127.0.0.1"))
        # A worker's service publishes its readiness in the supervisor's state directory from the start.
        state_dir = self.mktemp()
        os.makedirs(state_dir)
        spec = WorkerSpec(0, 2, settings, ((7, 2),), None, state_dir, 42, (("--audiosocket-listen", 9, 2),))
        adopted, = audiosocket_listeners(build(settings, reactor=MemoryReactorClock(), worker=spec))
        self.assertIsInstance(adopted, AdoptedListener)
        self.assertEqual((adopted.fd, adopted.family), (9, 2))
        with open(os.path.join(state_dir, "worker-0")) as f:
            self.assertEqual(f.read(), f"{os.getpid()} 0\n")  # not ready until warmed up
