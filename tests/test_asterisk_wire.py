"""Asterisk chan_websocket's wire, pure: its control events in both formats (as
channels/chan_websocket.c prints them), voiced's commands, the shared secret in the
upgrade, the paced sender on a Clock, and voiced-call's side of the socket.
Hypothesis: whatever a text frame holds, the parser answers an event or ProtocolError."""

import base64
import json

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.caller.carriers import carrier_wire
from voiced.caller.carriers.asterisk import AsteriskWebSocket
from voiced.caller.carriers.base import Audio, CallSetup, Clear, HangUp, Marker, Problem
from voiced.carrier.asterisk import wire
from voiced.carrier.asterisk.admission import authorization_header, basic_auth_password, secret_matches
from voiced.carrier.asterisk.sender import LEAD_S, MediaSender
from voiced.audio import AudioFormat

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Byte for byte what Asterisk 22.8 prints (chan_websocket.c's _create_event_* functions).
PLAIN_START = ("MEDIA_START connection_id:e226e283-c90a-4ea9-9e37-389000b9ef47 channel:WebSocket/voiced-00000001 "
               "channel_id:pbx1-1733412345.99 format:ulaw optimal_frame_size:160 ptime:20")
PLAIN_START_22_6 = ("MEDIA_START connection_id:e226e283 channel:WebSocket/voiced-00000001 format:slin16 "
                    "optimal_frame_size:640 ptime:20")
JSON_START = ('{"event":"MEDIA_START","connection_id":"e226e283","channel":"WebSocket/voiced-00000001",'
              '"channel_id":"pbx1-1733412345.99","format":"ulaw","optimal_frame_size":160,"ptime":20,'
              '"channel_variables":{"__VOICED_FROM":"+972501234567","MEDIA_WEBSOCKET_CONNECTION_ID":"e226e283"}}')


class ParseEventTests(SynchronousTestCase):
    def test_plain_text_media_start_of_each_version(self):
        start = wire.parse_event(PLAIN_START)
        self.assertEqual(start, wire.MediaStart("e226e283-c90a-4ea9-9e37-389000b9ef47", "WebSocket/voiced-00000001",
                                                "pbx1-1733412345.99", "ulaw", 160, 20, {}, False))
        older = wire.parse_event(PLAIN_START_22_6)  # before channel_id (22.6, 21.11, 20.16)
        self.assertEqual((older.channel_id, older.format, older.optimal_frame_size), ("", "slin16", 640))

    def test_json_media_start_carries_channel_variables(self):
        start = wire.parse_event(JSON_START)
        self.assertTrue(start.json)
        self.assertEqual(start.variables["__VOICED_FROM"], "+972501234567")
        self.assertEqual((start.channel_id, start.optimal_frame_size), ("pbx1-1733412345.99", 160))
        # Pretty-printed JSON is allowed; so are bytes.
        self.assertEqual(wire.parse_event(json.dumps(json.loads(JSON_START), indent=2).encode()), start)

    def test_the_other_events_in_both_formats(self):
        cases = {
            "DTMF_END digit:5 channel_id:pbx1-1.2": wire.DtmfEnd("5"),
            "DTMF_END digit:#": wire.DtmfEnd("#"),  # 22.6: no channel_id
            '{"event":"DTMF_END","channel_id":"x","digit":"*"}': wire.DtmfEnd("*"),
            "MEDIA_MARK_PROCESSED r1.s0": wire.MarkProcessed("r1.s0"),
            "MEDIA_MARK_PROCESSED": wire.MarkProcessed(""),
            '{"event":"MEDIA_MARK_PROCESSED","channel_id":"x","correlation_id":"r2.end"}': wire.MarkProcessed("r2.end"),
            "MEDIA_XOFF": wire.FlowControl(True),
            '{"event":"MEDIA_XON","channel_id":"x"}': wire.FlowControl(False),
            "ERROR channel_id:x error_text:MARK_MEDIA not supported in passthrough mode":
                wire.AsteriskError("MARK_MEDIA not supported in passthrough mode"),
            '{"event":"ERROR","channel_id":"x","error_text":"Unable to parse JSON command"}':
                wire.AsteriskError("Unable to parse JSON command"),
            "QUEUE_DRAINED": wire.Notice("QUEUE_DRAINED", ""),
            "MEDIA_BUFFERING_COMPLETED abc": wire.Notice("MEDIA_BUFFERING_COMPLETED", "abc"),
        }
        for text, expected in cases.items():
            self.assertEqual(wire.parse_event(text), expected, text)
        status = wire.parse_event("STATUS channel_id:x queue_length:43 xon_level:800 xoff_level:900 queue_full:false "
                                  "bulk_media:true media_paused:false")
        self.assertEqual(status.event, "STATUS")

    def test_malformed_messages_are_protocol_errors(self):
        for text in ["", "   ", "media_start connection_id:x", "MEDIA_START format:ulaw optimal_frame_size:160",
                     "MEDIA_START connection_id:x format:ulaw", "MEDIA_START connection_id:x format:ulaw "
                     "optimal_frame_size:abc", "MEDIA_START connection_id:x format:ulaw optimal_frame_size:0",
                     '{"event":"MEDIA_START","connection_id":"x","format":"ulaw","optimal_frame_size":true}',
                     '{"event":"MEDIA_START","connection_id":7,"format":"ulaw","optimal_frame_size":160}',
                     '{"event":"MEDIA_START","connection_id":"x","format":"ulaw","optimal_frame_size":160,'
                     '"channel_variables":[]}',
                     "DTMF_END", "DTMF_END digit:55", "DTMF_END digit:x", '{"event":"DTMF_END","digit":5}',
                     "{not json", "[1,2]", '{"command":"HANGUP"}', "MEDIA_XOFF\nMEDIA_XON", b"\xff\xfe"]:
            self.assertRaises(wire.ProtocolError, wire.parse_event, text)

    @FAST
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                     st.builds(lambda e, rest: f"{e} {rest}",
                               st.sampled_from(["MEDIA_START", "DTMF_END", "MEDIA_MARK_PROCESSED", "ERROR", "STATUS"]),
                               st.text(max_size=120))))
    def test_any_text_is_an_event_or_a_protocol_error(self, text):
        try:
            wire.parse_event(text)
        except wire.ProtocolError:
            pass

    @FAST
    @given(st.dictionaries(st.sampled_from(["event", "connection_id", "channel", "channel_id", "format",
                                            "optimal_frame_size", "ptime", "channel_variables", "digit",
                                            "correlation_id", "error_text"]),
                           st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                                        | st.text(max_size=12) | st.sampled_from(["MEDIA_START", "DTMF_END",
                                                                                   "MEDIA_MARK_PROCESSED", "ulaw"]),
                                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                             max_size=3),
                                        max_leaves=8)))
    def test_any_json_object_is_an_event_or_a_protocol_error(self, message):
        try:
            event = wire.parse_event(json.dumps(message))
        except wire.ProtocolError:
            return
        if isinstance(event, wire.MediaStart):
            self.assertTrue(all(isinstance(v, str) for v in event.variables.values()))


class CommandAndFormatTests(SynchronousTestCase):
    def test_commands_in_each_format(self):
        self.assertEqual(wire.command(wire.MARK_MEDIA, True, "r1.s0"),
                         '{"command":"MARK_MEDIA","correlation_id":"r1.s0"}')
        self.assertEqual(wire.command(wire.FLUSH_MEDIA, True), '{"command":"FLUSH_MEDIA"}')
        self.assertEqual(wire.command(wire.MARK_MEDIA, False, "r1.s0"), "MARK_MEDIA r1.s0")
        self.assertEqual(wire.command(wire.HANGUP, False), "HANGUP")
        self.assertRaises(ValueError, wire.command, wire.MARK_MEDIA, False, "two words")

    def test_audio_formats(self):
        self.assertEqual(wire.audio_format("ulaw"), AudioFormat("mulaw", 8000))
        self.assertEqual(wire.audio_format("slin16"), AudioFormat("pcm_s16le", 16000))
        self.assertIsNone(wire.audio_format("opus"))
        self.assertIsNone(wire.audio_format("g722"))


class AdmissionTests(SynchronousTestCase):
    def test_basic_auth_as_asterisk_sends_it(self):
        # res_http_websocket.c: "Authorization: Basic " + base64(username:password)
        header = "Basic " + base64.b64encode(b"asterisk:s3cret:with:colons").decode()
        self.assertEqual(basic_auth_password(header), "s3cret:with:colons")
        self.assertEqual(basic_auth_password(authorization_header("x", "voiced")), "x")
        for bad in [None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()]:
            self.assertIsNone(basic_auth_password(bad))

    def test_secret_in_the_header_or_the_query(self):
        self.assertTrue(secret_matches("s", None, authorization_header("s")))
        self.assertTrue(secret_matches("s", "s", None))
        self.assertTrue(secret_matches("s", "wrong", authorization_header("s")))
        self.assertFalse(secret_matches("s", None, None))
        self.assertFalse(secret_matches("s", "S", authorization_header("t")))
        self.assertFalse(secret_matches("", "", authorization_header("")))


class MediaSenderTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.sender = MediaSender(self.clock, 160, b"\xff", lambda p: self.sent.append(("audio", p)),
                                  lambda n: self.sent.append(("mark", n)))

    def test_whole_frames_only_the_last_padded_with_silence(self):
        self.sender.audio(b"\x01" * 3200)
        self.sender.audio(b"\x02" * 170)
        self.sender.mark("r1.s0")
        self.assertEqual([len(p) for kind, p in self.sent if kind == "audio"], [3200, 320])
        self.assertEqual(self.sent[1][1], b"\x02" * 170 + b"\xff" * 150)
        self.assertEqual(self.sent[2], ("mark", "r1.s0"))

    def test_at_most_the_lead_ahead_markers_kept_in_place(self):
        second = b"\x00" * 8000  # one second of mu-law
        for i in range(int(LEAD_S) + 5):
            self.sender.audio(second)
            self.sender.mark(f"m{i}")
        sent_audio = lambda: sum(len(p) for kind, p in self.sent if kind == "audio") / 8000  # noqa: E731
        self.assertLessEqual(sent_audio(), LEAD_S + 1)
        self.assertEqual(self.sent[-1], ("mark", f"m{int(sent_audio()) - 1}"))  # each mark right behind its audio
        self.clock.pump([0.02] * 300)  # six seconds of playout: all the rest fits
        self.assertEqual(sent_audio(), LEAD_S + 5)
        self.assertEqual(self.sent[-1], ("mark", f"m{int(LEAD_S) + 4}"))
        self.assertEqual(self.sender.held_bytes, 0)

    def test_xoff_holds_until_xon_and_clear_drops_what_is_held(self):
        self.sender.pause()
        self.sender.audio(b"\x00" * 160)
        self.sender.mark("held")
        self.clock.advance(5)
        self.assertEqual(self.sent, [])
        self.sender.resume()
        self.assertEqual([kind for kind, _ in self.sent], ["audio", "mark"])
        self.sender.pause()
        self.sender.audio(b"\x00" * 160)
        self.sender.clear()
        self.sender.resume()
        self.assertEqual(len(self.sent), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CallerWireTests(SynchronousTestCase):
    def test_registered_and_what_asterisk_sends(self):
        cls = carrier_wire("asterisk")
        self.assertIs(cls, AsteriskWebSocket)
        call = cls.new_call(CallSetup(from_number="+1", to_number="+2", parameters={"lang": "he"}, secret="s"))
        start = wire.parse_event(call.opening()[0])
        self.assertEqual((start.json, start.channel_id, start.connection_id), (True, call.call_id, call.stream_id))
        self.assertEqual(start.variables["__VOICED_FROM"], "+1")
        self.assertEqual(start.variables["__VOICED_lang"], "he")
        self.assertEqual(call.upgrade_headers("ws://x"), {"Authorization": authorization_header("s")})
        self.assertEqual(call.speech(b"\xff" * 160, 0), b"\xff" * 160)
        self.assertEqual(wire.parse_event(call.digit("7")[0]), wire.DtmfEnd("7"))
        self.assertEqual(wire.parse_event(call.marker_played("r1.end")[0]), wire.MarkProcessed("r1.end"))
        self.assertEqual(call.hang_up(), [])

    def test_reading_the_daemons_commands(self):
        call = AsteriskWebSocket.new_call(CallSetup())
        self.assertEqual(call.read(b'{"command":"MARK_MEDIA","correlation_id":"r1.s0"}', False), [Marker("r1.s0")])
        self.assertEqual(call.read(b'{"command":"FLUSH_MEDIA"}', False), [Clear()])
        self.assertEqual(call.read(b'{"command":"HANGUP"}', False), [HangUp("HANGUP")])
        self.assertEqual(call.read(b'{"command":"GET_STATUS"}', False), [])
        self.assertEqual(call.read(b"\xff" * 320, True), [Audio(b"\xff" * 320)])
        for bad, binary in [(b"\xff" * 100, True), (b"MARK_MEDIA x", False), (b'{"command":"EXPLODE"}', False),
                            (b'{"x":1}', False), (b"\xff\xfe", False)]:
            events = call.read(bad, binary)
            self.assertTrue(events and isinstance(events[0], Problem), (bad, events))

    def test_plain_text_asterisk_has_no_mark_echo(self):
        call = AsteriskWebSocket.new_call(CallSetup(), plain_text=True)
        self.assertFalse(call.answers_markers)
        self.assertFalse(wire.parse_event(call.opening()[0]).json)
        self.assertEqual(call.read(b"FLUSH_MEDIA", False), [Clear()])
        self.assertIsInstance(call.read(b"MARK_MEDIA r1.s0", False)[0], Problem)
        self.assertEqual(wire.parse_event(call.digit("#")[0]), wire.DtmfEnd("#"))
