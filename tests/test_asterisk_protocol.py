"""The Asterisk chan_websocket socket in process: real Autobahn framing on a
StringTransport, a Clock, a recording call core. Admission (the shared secret,
403 before any call state), MEDIA_START in both control formats (JSON: Asterisk's
mark echoes; plain text: voiced's local playout), the caller's audio, DTMF, the
bot's audio, marks, FLUSH_MEDIA, HANGUP, XOFF, and bad input."""

import base64
import json

import txaio
from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.testing.carriers import RecordingService, client_frame, server_frames
from voiced.carrier import asterisk
from voiced.carrier.asterisk.admission import authorization_header
from voiced.carrier.asterisk.protocol import AsteriskAdmission, AsteriskMediaFactory, call_parameters
from voiced.carrier.link import MAX_PROTOCOL_ERRORS
from voiced.config import Settings

JSON_START = {"event": "MEDIA_START", "connection_id": "conn-1", "channel": "WebSocket/voiced-00000001",
              "channel_id": "pbx-1733412345.7", "format": "ulaw", "optimal_frame_size": 160, "ptime": 20,
              "channel_variables": {"__VOICED_FROM": "+972501234567", "VOICED_TO": "100", "CHANNEL_X": "no"}}
PLAIN_START = "MEDIA_START connection_id:conn-2 channel:WebSocket/voiced-2 format:ulaw optimal_frame_size:160 ptime:20"


def handshake(query: str = "", headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"GET /media/asterisk{'?' + query if query else ''} HTTP/1.1\r\nHost: voiced.example\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


class Harness(SynchronousTestCase):
    secret = ""

    def setUp(self):
        self.patch(txaio.config, "loop", Clock())  # Autobahn's own timers never fire here
        self.clock = Clock()
        self.service = RecordingService(clock=self.clock)

    def connect(self, query: str = "", headers: dict[str, str] | None = None) -> bytes:
        factory = AsteriskMediaFactory(self.service, AsteriskAdmission(self.secret))
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.transport.registerProducer(self.proto, True)  # a real transport has one; Autobahn unregisters it
        self.proto.dataReceived(handshake(query, headers))
        answer = self.transport.value()
        self.transport.clear()
        return answer

    def open(self, start: str | dict | None = None, query: str = "") -> None:
        self.assertIn(b"101 Switching Protocols", self.connect(query))
        if start is not None:
            self.send(json.dumps(start) if isinstance(start, dict) else start)

    def send(self, payload, binary: bool = False):
        if isinstance(payload, str):
            payload = payload.encode()
        self.proto.dataReceived(client_frame(payload, 0x2 if binary else 0x1))

    def frames(self):
        return server_frames(self.transport.value())

    def texts(self):
        return [p.decode() for op, p in self.frames() if op == 0x1]

    def close_code(self):
        closes = [p for op, p in self.frames() if op == 0x8]
        return int.from_bytes(closes[0][:2], "big") if closes else None


class AdmissionTests(Harness):
    secret = "s3cret"

    def test_without_the_secret_403_before_any_call_state(self):
        for query, headers in [("", None), ("secret=wrong", None), ("", {"Authorization": authorization_header("no")}),
                               ("", {"Authorization": "Bearer s3cret"})]:
            answer = self.connect(query, headers)
            self.assertIn(b"403", answer.split(b"\r\n")[0], (query, headers))
            self.assertIsNone(self.proto.link)
        self.assertEqual(self.service.calls, [])

    def test_the_secret_in_the_authorization_header_or_the_query(self):
        self.assertIn(b"101", self.connect("", {"Authorization": authorization_header("s3cret")}))
        self.assertIn(b"101", self.connect("secret=s3cret&from=%2B15550100"))
        self.send(json.dumps(JSON_START))
        start = self.service.calls[0][0]
        self.assertEqual(start.from_number, "+15550100")  # the query (a v() dial option) wins
        self.assertNotIn("secret", start.custom_parameters)

    def test_the_carrier_is_off_when_public_without_a_secret(self):
        public = Settings(listen=("tcp:8080",))
        off = asterisk.carrier(self.service, public)
        request = DummyRequest([b""])
        request.method, request.path = b"GET", b"/media/asterisk"
        self.assertEqual((off.media.render(request), request.responseCode)[1], 403)
        self.assertEqual(off.mode, "off")
        signed = asterisk.carrier(self.service, Settings(listen=("tcp:8080",), asterisk_secret="x"))
        self.assertEqual((signed.mode, signed.warnings), ("signed", []))
        loopback = asterisk.carrier(self.service, Settings())
        self.assertEqual((loopback.mode, loopback.warnings), ("open", []))


class JsonCallTests(Harness):
    def setUp(self):
        super().setUp()
        self.open(JSON_START)
        self.start, self.link, self.call = self.service.calls[0]

    def test_media_start_makes_a_call_with_asterisks_ids_and_the_dialplans_variables(self):
        self.assertEqual((self.start.carrier, self.start.call_id, self.start.stream_id),
                         ("asterisk", "pbx-1733412345.7", "conn-1"))
        self.assertEqual((self.start.from_number, self.start.to_number), ("+972501234567", "100"))
        self.assertEqual(self.start.custom_parameters, {"VOICED_FROM": "+972501234567", "VOICED_TO": "100"})
        self.assertEqual(str(self.start.audio), "mulaw/8000")
        self.assertTrue(self.link.echoes_marks)
        self.assertEqual(self.call.events, ["start"])

    def test_audio_dtmf_and_mark_echoes_reach_the_call(self):
        self.send(b"\xff" * 160, binary=True)
        self.send(b"\xff" * 320, binary=True)
        self.send('{"event":"DTMF_END","channel_id":"pbx-1733412345.7","digit":"0"}')
        self.send('{"event":"MEDIA_MARK_PROCESSED","channel_id":"pbx-1733412345.7","correlation_id":"r1.s0"}')
        self.assertEqual(self.call.events[1:], [("media", 160), ("media", 320), ("dtmf", "0"), ("mark", "r1.s0")])

    def test_thirty_ms_frames_are_cut_into_twenty(self):
        for _ in range(3):
            self.send(b"\xff" * 240, binary=True)  # a 30 ms SIP leg
        # 240, 480, 720 bytes in: 160, 320, 160 delivered, 80 waiting for the next frame
        self.assertEqual(self.call.events[1:], [("media", 160), ("media", 320), ("media", 160)])

    def test_the_bot_speaks_in_binary_frames_with_json_commands(self):
        self.link.send_audio(b"\x00" * 3200)
        self.link.send_audio(b"\x00" * 100)
        self.link.send_mark("r1.s0")
        self.link.send_clear()
        sent = self.frames()
        self.assertEqual([(op, len(p)) for op, p in sent[:2]], [(0x2, 3200), (0x2, 160)])
        self.assertEqual([json.loads(p) for op, p in sent[2:]],
                         [{"command": "MARK_MEDIA", "correlation_id": "r1.s0"}, {"command": "FLUSH_MEDIA"}])

    def test_the_bots_hang_up_is_hangup_then_a_close(self):
        self.link.hang_up()
        self.assertEqual(self.texts(), ['{"command":"HANGUP"}'])
        self.assertEqual(self.close_code(), 1000)

    def test_xoff_holds_the_bots_audio_until_xon(self):
        self.send('{"event":"MEDIA_XOFF","channel_id":"x"}')
        self.link.send_audio(b"\x00" * 160)
        self.link.send_mark("r1.s0")
        self.assertEqual(self.frames(), [])
        self.send('{"event":"MEDIA_XON","channel_id":"x"}')
        self.assertEqual([op for op, _ in self.frames()], [0x2, 0x1])

    def test_asterisk_errors_are_logged_and_the_call_goes_on(self):
        for _ in range(MAX_PROTOCOL_ERRORS + 5):
            self.send('{"event":"ERROR","channel_id":"x","error_text":"Unable to parse JSON command"}')
        self.assertIsNone(self.close_code())
        self.flushLoggedErrors()

    def test_malformed_control_is_counted_then_closes_4003(self):
        for _ in range(MAX_PROTOCOL_ERRORS):
            self.send("{broken")
        self.assertEqual(self.close_code(), 4003)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), MAX_PROTOCOL_ERRORS)

    def test_a_second_media_start_is_a_protocol_error(self):
        self.send(json.dumps(JSON_START))
        self.assertEqual(len(self.service.calls), 1)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 1)

    def test_audio_faster_than_real_time_is_dropped_then_closed_1008(self):
        for _ in range(8 * 50):  # eight seconds of audio at once
            self.send(b"\xff" * 160, binary=True)
        self.assertEqual(self.close_code(), 1008)
        self.assertLessEqual(len([e for e in self.call.events if e[0] == "media"]), 2 * 50 + 1)

    def test_close_ends_the_call_once(self):
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.service.ended, [self.call])
        self.assertEqual(self.call.events[-1], "close")


class PlainTextCallTests(Harness):
    """An Asterisk before 20.18 / 22.8 / 23.2: no MARK_MEDIA, so voiced paces and fires its marks itself."""

    def setUp(self):
        super().setUp()
        self.open(PLAIN_START, query="from=%2B15550100&to=200&lang=he")
        self.start, self.link, self.call = self.service.calls[0]

    def test_local_playout_and_plain_text_commands(self):
        self.assertEqual((self.start.call_id, self.start.from_number, self.start.to_number),
                         ("conn-2", "+15550100", "200"))
        self.assertEqual(self.start.custom_parameters, {"from": "+15550100", "to": "200", "lang": "he"})
        self.assertFalse(self.link.echoes_marks)
        self.link.send_audio(b"\x00" * 800)  # 100 ms
        self.link.send_mark("r1.s0")
        self.assertEqual([len(p) for op, p in self.frames() if op == 0x2], [160, 160, 160])  # 60 ms ahead
        self.clock.pump([0.02] * 10)
        self.assertEqual(len([op for op, _ in self.frames() if op == 0x2]), 5)
        self.assertEqual(self.call.events[-1], ("mark", "r1.s0"))  # voiced's own playout fired it
        self.assertEqual(self.texts(), [])  # no MARK_MEDIA to an Asterisk that has none
        self.link.send_clear()
        self.assertEqual(self.texts(), ["FLUSH_MEDIA"])
        self.send("DTMF_END digit:5")
        self.assertEqual(self.call.events[-1], ("dtmf", "5"))
        self.link.hang_up()
        self.assertEqual(self.texts()[-1], "HANGUP")


class BadStartTests(Harness):
    def test_unsupported_formats_close_4001_without_a_call(self):
        for start in [dict(JSON_START, format="opus", optimal_frame_size=160),
                      dict(JSON_START, format="slin16", optimal_frame_size=320)]:
            self.open(start)
            self.assertEqual(self.close_code(), 4001)
        self.assertEqual(self.service.calls, [])

    def test_a_wideband_call(self):
        self.open(dict(JSON_START, format="slin16", optimal_frame_size=640))
        start, link, call = self.service.calls[0]
        self.assertEqual(str(start.audio), "pcm_s16le/16000")
        self.send(b"\x00" * 640, binary=True)
        self.assertEqual(call.events[-1], ("media", 160))  # 8 kHz mu-law to the core
        link.send_audio(b"\xff" * 170)
        self.assertEqual([len(p) for op, p in self.frames() if op == 0x2], [1280])  # 170 samples x2 x2, padded

    def test_media_before_media_start_is_dropped_and_no_start_closes_4000(self):
        self.open()
        self.send(b"\xff" * 160, binary=True)
        self.assertEqual(self.service.metrics.protocol_errors_total._value.get(), 1)
        self.clock.advance(10)
        self.assertEqual(self.close_code(), 4000)
        self.assertEqual(self.service.calls, [])


class CallParameterTests(SynchronousTestCase):
    def test_bounded_and_only_voiced_variables(self):
        variables = {f"__VOICED_{i}": "v" * 1000 for i in range(50)} | {"DIALSTATUS": "ANSWER"}
        parameters = call_parameters({"from": "+1"}, variables)
        self.assertEqual(len(parameters), 32)
        self.assertEqual(parameters["from"], "+1")
        self.assertNotIn("DIALSTATUS", parameters)
        self.assertEqual(max(len(v) for v in parameters.values()), 500)
        self.assertEqual(base64.b64decode(authorization_header("k").split()[1]), b"asterisk:k")


class AnyInputTests(Harness):
    """Whatever Asterisk (or anyone with the secret) sends, the socket never raises: each
    message is handled, counted as malformed, or closes the socket with a documented code."""

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
    @given(st.lists(st.one_of(st.binary(max_size=700).map(lambda b: (b, True)),
                              st.text(max_size=200).map(lambda t: (t.encode(), False)),
                              st.sampled_from([json.dumps(JSON_START), PLAIN_START, "MEDIA_XOFF", "MEDIA_XON",
                                               "DTMF_END digit:1", "MEDIA_MARK_PROCESSED x"])
                              .map(lambda t: (t.encode(), False))), max_size=30))
    def test_never_raises(self, messages):
        self.service = RecordingService(clock=self.clock)
        self.open()
        for payload, binary in messages:
            self.send(payload, binary)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertIn(self.close_code(), (None, 4001, 4003))
