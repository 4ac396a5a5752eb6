import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from voiced.carrier.twilio import wire as twilio


def _media(seq, chunk, payload=b"\xff" * 160, track="inbound"):
    return json.dumps({
        "event": "media", "sequenceNumber": str(seq), "streamSid": "MZ1",
        "media": {"track": track, "chunk": str(chunk), "timestamp": str(chunk * 20),
                  "payload": base64.b64encode(payload).decode()},
    })


START = json.dumps({
    "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
    "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
              "customParameters": {"From": "+15550001", "To": "+15550002"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
})


class ParseTests(SynchronousTestCase):
    def test_connected(self):
        msg = twilio.parse_message('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        self.assertEqual(msg, twilio.Connected("Call", "1.0.0"))

    def test_start(self):
        msg = twilio.parse_message(START)
        self.assertIsInstance(msg, twilio.Start)
        self.assertEqual((msg.call_sid, msg.stream_sid, msg.sequence_number), ("CA1", "MZ1", 1))
        self.assertEqual(msg.custom_parameters, {"From": "+15550001", "To": "+15550002"})
        self.assertEqual((msg.encoding, msg.sample_rate, msg.channels), ("audio/x-mulaw", 8000, 1))

    def test_media_decodes_payload(self):
        msg = twilio.parse_message(_media(2, 1, b"\x01\x02"))
        self.assertEqual((msg.payload, msg.chunk, msg.timestamp_ms, msg.track), (b"\x01\x02", 1, 20, "inbound"))

    def test_mark_dtmf_stop(self):
        self.assertEqual(twilio.parse_message('{"event":"mark","sequenceNumber":"4","streamSid":"MZ1",'
                                              '"mark":{"name":"r1.start"}}').name, "r1.start")
        self.assertEqual(twilio.parse_message('{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5",'
                                              '"dtmf":{"track":"inbound_track","digit":"7"}}').digit, "7")
        stop = twilio.parse_message('{"event":"stop","sequenceNumber":"6","streamSid":"MZ1",'
                                    '"stop":{"accountSid":"AC1","callSid":"CA1"}}')
        self.assertEqual(stop.call_sid, "CA1")

    def test_unknown_event_is_not_an_error(self):
        self.assertEqual(twilio.parse_message('{"event":"future-thing"}'), twilio.Unknown("future-thing"))

    def test_malformed_inputs(self):
        for bad in [b"\xff\xfe", "not json", "[]", '{"no":"event"}', '{"event":"media"}',
                    '{"event":"media","media":{"payload":"!!notbase64"}}',
                    '{"event":"start","start":{}}', '{"event":"mark","mark":{}}',
                    '{"event":"media","sequenceNumber":"x","media":{"payload":""}}',
                    '{"event":"start","start":"abc"}', '{"event":"media","media":[1]}',
                    '{"event":"start","start":{"callSid":"CA1","tracks":5}}',
                    '{"event":"start","start":{"callSid":"CA1","mediaFormat":"x"}}',
                    '{"event":"mark","mark":"r1"}', '{"event":"stop","stop":7}',
                    "[" * 30000 + "]" * 30000]:
            self.assertRaises(twilio.ProtocolError, twilio.parse_message, bad)


def _outcome(fn, text):
    try:
        return ("value", fn(text))
    except Exception as e:
        return (type(e), str(e))


class LoadsTests(SynchronousTestCase):
    """twilio.loads skips json.loads' Python layers; it must answer exactly as json.loads does."""

    CASES = ['{"event":"media"}', '{"a":[1,2.5,{"b":null}],"c":"\\u00e9"}', '"x"', "1", "-", "nul", "NaN", "",
             ' {"a":1}', '{"a":1} ', '{"a":1}\n', '{"a":1}x', '{"a":1}{}', "\ufeff{}", '{"a":1,"a":2}',
             '{"a":"\\ud800"}', "[" * 30000 + "]" * 30000, b'{"a":1}', b"{}", b"{", b"{\x00", b" {}",
             b'\xef\xbb\xbf{"a":1}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xff"}', b'{"a":"\xc3\xa9"}',
             bytearray(b"{}"), '\x00\x00\x00{', b"\x00{\x00}"]

    def test_the_same_value_or_the_same_error_as_json_loads(self):
        for text in self.CASES:
            self.assertEqual(repr(_outcome(twilio.loads, text)), repr(_outcome(json.loads, text)), text[:40])

    def test_a_media_message_parses_the_same_as_text_or_bytes(self):
        text = _media(7, 6, bytes(range(160)))
        self.assertEqual(twilio.parse_message(text), twilio.parse_message(text.encode()))
        self.assertEqual(twilio.loads(text), json.loads(text))


class SerializeTests(SynchronousTestCase):
    def test_outbound_messages(self):
        self.assertEqual(json.loads(twilio.media_message("MZ1", b"\x00\xff")),
                         {"event": "media", "streamSid": "MZ1", "media": {"payload": "AP8="}})
        self.assertEqual(json.loads(twilio.mark_message("MZ1", "r1.s0")),
                         {"event": "mark", "streamSid": "MZ1", "mark": {"name": "r1.s0"}})
        self.assertEqual(json.loads(twilio.clear_message("MZ1")), {"event": "clear", "streamSid": "MZ1"})

    def test_twiml_escapes_and_carries_parameters(self):
        xml = twilio.twiml_connect_stream("wss://example.com/media", {"From": '+1"<5>', "To": "", "CallSid": "CA1"})
        self.assertIn('<Stream url="wss://example.com/media">', xml)
        self.assertIn('<Parameter name="From" value="+1&quot;&lt;5&gt;"/>', xml)
        self.assertNotIn('name="To"', xml)
        self.assertIn("</Connect><Hangup/></Response>", xml)


class SequenceTrackerTests(SynchronousTestCase):
    def test_in_order_has_no_problems(self):
        tracker = twilio.SequenceTracker()
        self.assertEqual(tracker.observe(twilio.parse_message(START)), [])
        for i in range(2, 10):
            self.assertEqual(tracker.observe(twilio.parse_message(_media(i, i - 1))), [])

    def test_gap_and_reorder_reported(self):
        tracker = twilio.SequenceTracker()
        tracker.observe(twilio.parse_message(START))
        tracker.observe(twilio.parse_message(_media(2, 1)))
        problems = tracker.observe(twilio.parse_message(_media(5, 4)))
        self.assertEqual(len(problems), 2)
        self.assertIn("2 missing", problems[0])
        problems = tracker.observe(twilio.parse_message(_media(3, 2)))
        self.assertIn("reordered", problems[0])
        self.assertEqual((tracker.gaps, tracker.reordered), (2, 2))
