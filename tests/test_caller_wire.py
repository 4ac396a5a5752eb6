"""voiced-call's carrier port: the registry, Twilio's wire through the port (checked
against the daemon's own Twilio parser and Twilio's signature validator), the audio
formats other carriers' wires convert with, and DTMF lines. (tests/test_caller_tcp.py
drives the port's TCP path.)
"""

from __future__ import annotations

import base64
import contextlib
import io
import json

from twilio.request_validator import RequestValidator
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.caller import FakeLink, run_until, tone
from voiced.audio import silence_ulaw
from voiced.carrier import media_token
from voiced.carrier.twilio.wire import Connected, Dtmf, Mark, Media, Start, Stop, clear_message, mark_message
from voiced.carrier.twilio.wire import media_message, parse_message
from voiced.caller.carriers import UnknownCarrier, carrier_names, carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, DaemonEvent, Marker, Problem
from voiced.caller.carriers.twilio import TwilioStream
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

    def test_a_daemon_address_without_a_path_gets_the_carriers_path(self) -> None:
        from voiced.caller.main import check_address

        for argv, url in ((["--carrier", "vonage", "ws://127.0.0.1:9000"], "ws://127.0.0.1:9000/media/vonage"),
                          (["--carrier", "telnyx", "wss://voice.example.com/"], "wss://voice.example.com/media/telnyx"),
                          (["ws://127.0.0.1:9000"], "ws://127.0.0.1:9000/media"),
                          (["--carrier", "plivo", "ws://h/custom"], "ws://h/custom")):
            parser = build_parser()
            args = parser.parse_args(argv)
            check_address(parser, args)
            self.assertEqual(args.url, url)

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


class DtmfLineTests(SynchronousTestCase):
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
