"""Telnyx's wire model: the documented messages parse, anything else is a ProtocolError
(hypothesis over malformed input), out-of-order media comes back in order, the outbound
messages and the TeXML are what Telnyx reads, and voiced-call's Telnyx wire speaks the
same grammar the daemon parses."""

import base64
import json
import random
import unittest
import xml.etree.ElementTree as ET

from hypothesis import given, strategies as st

from tests.testing.messages import FAST, telnyx_json_values as json_values, telnyx_like
from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.telnyx import wire
from voiced.caller.carriers import carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, Marker, Problem


# The start frame of Telnyx's AsyncAPI page ("Stream call media over WebSocket"), as published.
DOCUMENTED_START = {
    "event": "start", "sequence_number": "1", "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
    "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
              "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
              "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f", "from": "+13122010094",
              "to": "+13122123456", "tags": ["TAG1", "TAG2"], "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
              "custom_parameters": {"customer_id": "customer_123"},
              "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}},
}


def media(chunk="2", payload=b"\xff" * 160, track="inbound", seq="4", stream="S1"):
    return json.dumps({"event": "media", "sequence_number": seq, "stream_id": stream,
                       "media": {"track": track, "chunk": chunk, "timestamp": "40",
                                 "payload": base64.b64encode(payload).decode()}})


class ParseTests(unittest.TestCase):
    def test_the_documented_start(self):
        start = wire.parse_message(json.dumps(DOCUMENTED_START))
        self.assertEqual(start, wire.Start(1, "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
                                           "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
                                           "+13122010094", "+13122123456", {"customer_id": "customer_123"},
                                           "PCMU", 8000, 1))
        self.assertEqual(start.audio_format(), AudioFormat("mulaw", 8000))

    def test_codecs_and_rates(self):
        def fmt(encoding, rate=8000, channels=1):
            message = json.loads(json.dumps(DOCUMENTED_START))
            message["start"]["media_format"] = {"encoding": encoding, "sample_rate": rate, "channels": channels}
            return wire.parse_message(json.dumps(message)).audio_format()

        self.assertEqual(fmt("PCMA"), AudioFormat("alaw", 8000))
        self.assertEqual(fmt("L16", 16000), AudioFormat("pcm_s16be", 16000))  # RTP's L16: network byte order
        self.assertEqual(fmt("l16", 24000), AudioFormat("pcm_s16be", 24000))
        for bad in (("G722", 16000), ("OPUS", 48000), ("L16", 22050), ("PCMU", 8000, 2), ("AMR-WB", 16000)):
            self.assertRaises(UnsupportedAudio, fmt, *bad)

    def test_media_dtmf_mark_stop_error_connected(self):
        m = wire.parse_message(media())
        self.assertEqual((m.sequence_number, m.stream_id, m.track, m.chunk, m.timestamp_ms, m.payload),
                         (4, "S1", "inbound", 2, 40, b"\xff" * 160))
        self.assertEqual(wire.parse_message(media(chunk=7)).chunk, 7)  # an integer is as good as a string
        self.assertEqual(wire.parse_message(
            '{"event":"dtmf","stream_id":"S1","occurred_at":"2024-01-01T00:00:00Z","sequence_number":"5",'
            '"dtmf":{"digit":"#"}}'), wire.Dtmf(5, "S1", "#"))
        self.assertEqual(wire.parse_message('{"event":"mark","sequence_number":"6","stream_id":"S1",'
                                            '"mark":{"name":"r1.s0"}}'), wire.Mark(6, "S1", "r1.s0"))
        self.assertEqual(wire.parse_message('{"event":"stop","sequence_number":"7","stream_id":"S1",'
                                            '"stop":{"user_id":"u","call_control_id":"v3:c"}}'),
                         wire.Stop(7, "S1", "v3:c"))
        self.assertEqual(wire.parse_message('{"event":"error","sequence_number":"8","stream_id":"S1","payload":'
                                            '{"code":100003,"title":"Malformed frame","detail":"bad"}}'),
                         wire.Error(8, "S1", "100003", "Malformed frame", "bad"))
        self.assertEqual(wire.parse_message('{"event":"connected","version":"1.0.0"}'), wire.Connected("1.0.0"))
        self.assertEqual(wire.parse_message('{"event":"something-new"}'), wire.Unknown("something-new"))

    def test_custom_parameters_as_a_list_of_name_value(self):
        message = json.loads(json.dumps(DOCUMENTED_START))
        message["start"]["custom_parameters"] = [{"name": "voicedToken", "value": "1.ab"}]
        self.assertEqual(wire.parse_message(json.dumps(message)).custom_parameters, {"voicedToken": "1.ab"})

    def test_malformed_messages_say_what_is_wrong(self):
        cases = {
            "{not json": "not JSON", "[1]": "not a JSON object", '{"event":3}': "no 'event'",
            '{"event":"media"}': "lacks 'media'", '{"event":"media","media":{}}': "lacks 'payload'",
            '{"event":"media","media":{"payload":"@@"}}': "not base64",
            '{"event":"media","media":{"payload":"","chunk":"x"}}': "media.chunk is not an integer",
            '{"event":"media","media":{"payload":"","chunk":true}}': "media.chunk is not an integer",
            '{"event":"start","start":{}}': "lacks 'call_control_id'",
            '{"event":"start","start":{"call_control_id":"c","media_format":{"sample_rate":"fast"}}}':
                "sample_rate is not an integer",
            '{"event":"start","start":{"call_control_id":"c","custom_parameters":7}}': "custom_parameters",
            '{"event":"dtmf","dtmf":{"digit":"55"}}': "dtmf digit",
            '{"event":"mark","mark":{}}': "mark lacks 'name'",
            '{"event":"media","sequence_number":"1e9","media":{"payload":""}}': "sequence_number",
        }
        for text, problem in cases.items():
            with self.assertRaises(wire.ProtocolError, msg=text) as caught:
                wire.parse_message(text)
            self.assertIn(problem, str(caught.exception), text)


class ParserProperties(unittest.TestCase):
    @FAST
    @given(st.binary(max_size=300) | st.text(max_size=300) | telnyx_like() | telnyx_like().map(str.encode)
           | json_values.map(json.dumps))
    def test_the_parser_returns_a_message_or_a_protocol_error(self, payload):
        try:
            message = wire.parse_message(payload)
        except wire.ProtocolError:
            return
        self.assertIsInstance(message, (wire.Connected, wire.Start, wire.Media, wire.Dtmf, wire.Mark, wire.Stop,
                                        wire.Error, wire.Unknown))
        if isinstance(message, wire.Start):
            try:
                message.audio_format()
            except UnsupportedAudio:
                pass


class ChunkOrderTests(unittest.TestCase):
    def test_in_order_chunks_pass_straight_through(self):
        order = wire.ChunkOrder()
        self.assertEqual([order.push(n, bytes([n])) for n in range(1, 5)], [[b"\x01"], [b"\x02"], [b"\x03"], [b"\x04"]])

    def test_a_swapped_pair_comes_out_in_order(self):
        order = wire.ChunkOrder()
        out = [p for n in (1, 3, 2, 4) for p in order.push(n, bytes([n]))]
        self.assertEqual(out, [b"\x01", b"\x02", b"\x03", b"\x04"])
        self.assertEqual((order.late, order.lost), (0, 0))

    def test_a_lost_chunk_is_given_up_after_the_window(self):
        order = wire.ChunkOrder(window=3)
        self.assertEqual(order.push(1, b"a"), [b"a"])
        self.assertEqual([order.push(n, b"x") for n in (3, 4, 5)], [[], [], []])  # 60 ms held for chunk 2
        self.assertEqual(order.push(6, b"y"), [b"x", b"x", b"x", b"y"])
        self.assertEqual(order.lost, 1)
        self.assertEqual(order.push(2, b"late"), [])  # too late now
        self.assertEqual(order.late, 1)

    def test_repeats_are_dropped(self):
        order = wire.ChunkOrder()
        self.assertEqual([order.push(n, b"p") for n in (1, 1, 3, 3)], [[b"p"], [], [], []])
        self.assertEqual(order.late, 2)

    @FAST
    @given(st.integers(1, 60), st.integers(0, 2**32), st.integers(1, 3))
    def test_any_shuffle_within_the_window_comes_out_whole_and_in_order(self, count, seed, window):
        chunks = list(range(1, count + 1))
        rng = random.Random(seed)
        shuffled = []
        for start in range(0, count, window):  # each chunk at most window - 1 places from home
            block = chunks[start:start + window]
            rng.shuffle(block)
            shuffled += block
        order = wire.ChunkOrder(window=window)
        order.push(0, b"")  # the first chunk sets the count going
        out = [p for n in shuffled for p in order.push(n, n.to_bytes(2, "big"))]
        out += [p for n in (count + 1, count + 2, count + 3, count + 4) for p in order.push(n, n.to_bytes(2, "big"))]
        numbers = [int.from_bytes(p, "big") for p in out]
        self.assertEqual(numbers[:count], chunks)
        self.assertEqual((order.late, order.lost), (0, 0))

    @FAST
    @given(st.lists(st.integers(-3, 80), max_size=120))
    def test_whatever_arrives_comes_out_ascending_and_at_most_once(self, arrivals):
        order = wire.ChunkOrder()
        out = [int.from_bytes(p, "big", signed=True) for n in arrivals
               for p in order.push(n, n.to_bytes(2, "big", signed=True))]
        self.assertEqual(out, sorted(set(out)))
        self.assertLessEqual(len(order.held), order.window)


class OutboundTests(unittest.TestCase):
    def test_messages_are_what_telnyx_reads(self):
        self.assertEqual(json.loads(wire.media_message(b"\x00\xff")), {"event": "media", "media": {"payload": "AP8="}})
        self.assertEqual(json.loads(wire.mark_message('r1"s0')), {"event": "mark", "mark": {"name": 'r1"s0'}})
        self.assertEqual(json.loads(wire.clear_message()), {"event": "clear"})

    def test_texml_connects_a_bidirectional_rtp_stream_and_hangs_up_after(self):
        texml = wire.texml_connect_stream("wss://voice.example.com/media/telnyx",
                                          {"From": "+1555<&>\"", "To": "", "voicedToken": "9.ab"})
        root = ET.fromstring(texml)
        self.assertEqual([child.tag for child in root], ["Connect", "Hangup"])
        stream = root.find("Connect/Stream")
        self.assertEqual(stream.attrib, {"url": "wss://voice.example.com/media/telnyx", "track": "inbound_track",
                                         "codec": "PCMU", "bidirectionalMode": "rtp", "bidirectionalCodec": "PCMU"})
        self.assertEqual({p.get("name"): p.get("value") for p in stream.findall("Parameter")},
                         {"From": "+1555<&>\"", "voicedToken": "9.ab"})  # empty values are left out


class CallerWireTests(unittest.TestCase):
    """voiced-call's Telnyx wire says what the daemon's parser reads, and reads what the daemon writes."""

    def setUp(self):
        self.wire = carrier_wire("telnyx").new_call(CallSetup(call_id="v3:abc", secret="s3cret", now=1000.0))

    def test_every_message_parses_in_the_daemon(self):
        connected, start = [wire.parse_message(m) for m in self.wire.opening()]
        self.assertEqual(connected, wire.Connected("1.0.0"))
        self.assertEqual((start.call_control_id, start.stream_id, start.from_number, start.to_number),
                         ("v3:abc", self.wire.stream_id, "+15550100", "+15550199"))
        self.assertIn("voicedToken", start.custom_parameters)
        media = self.wire.speech(b"\x7f" * 160, 20)
        self.assertEqual(json.dumps(json.loads(media), separators=(",", ":")), media)  # byte for byte json.dumps
        parsed = wire.parse_message(media)
        self.assertEqual((parsed.sequence_number, parsed.chunk, parsed.timestamp_ms, parsed.payload),
                         (2, 1, 20, b"\x7f" * 160))
        self.assertEqual(wire.parse_message(self.wire.digit("*")[0]).digit, "*")
        self.assertEqual(wire.parse_message(self.wire.marker_played("r1")[0]).name, "r1")
        self.assertEqual(wire.parse_message(self.wire.hang_up()[0]).call_control_id, "v3:abc")

    def test_the_token_is_the_daemons(self):
        from voiced.carrier import media_token

        token = wire.parse_message(self.wire.opening()[1]).custom_parameters["voicedToken"]
        self.assertIsNone(media_token.problem("s3cret", "v3:abc", token, 1000.0))

    def test_reads_the_daemons_messages(self):
        self.assertEqual(self.wire.read(wire.media_message(b"\x01\x02").encode(), False), [Audio(b"\x01\x02")])
        self.assertEqual(self.wire.read(wire.mark_message("m").encode(), False), [Marker("m")])
        self.assertEqual(self.wire.read(wire.clear_message().encode(), False), [Clear()])
        for bad in (b"{", b'{"event":"hangup"}', b'{"event":"media","media":{}}'):
            self.assertIsInstance(self.wire.read(bad, False)[-1], Problem)
        self.assertIsInstance(self.wire.read(b"\x00", True)[0], Problem)
