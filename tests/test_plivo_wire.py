"""Plivo's wire model (voiced.carrier.plivo.wire) and X-Plivo-Signature-V3 (signature):
the messages of Plivo's Stream Event Protocol, its XML, and, with hypothesis, that
malformed input only ever raises the wire's ProtocolError."""

import base64
import json
import unittest
from xml.etree import ElementTree

from hypothesis import HealthCheck, given, settings, strategies as st

from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.plivo import wire
from voiced.carrier.plivo.signature import plivo_signature, signature_matches, signed_string

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# From Plivo's protocol page (plivo.com/docs/voice/audio-streaming), as documented.
DOC_START = {
    "event": "start", "sequenceNumber": 1,
    "start": {"callId": "12345678-1234-1234-1234-123456789abc", "streamId": "87654321-4321-4321-4321-cba987654321",
              "accountId": "MAXXXXXXXXXXXXXXXXXX", "tracks": ["inbound"],
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
    "extra_headers": "userId=12345;sessionId=abc-xyz",
}
DOC_MEDIA = {
    "event": "media", "sequenceNumber": 42, "streamId": "87654321-4321-4321-4321-cba987654321",
    "media": {"track": "inbound", "timestamp": "1705312200000", "chunk": 41,
              "payload": base64.b64encode(b"\xff" * 160).decode()},
    "extra_headers": "userId=12345;sessionId=abc-xyz",
}


class ParseTests(unittest.TestCase):
    def test_the_documented_start(self):
        start = wire.parse_message(json.dumps(DOC_START))
        self.assertEqual(start, wire.Start(1, "12345678-1234-1234-1234-123456789abc",
                                           "87654321-4321-4321-4321-cba987654321", "MAXXXXXXXXXXXXXXXXXX",
                                           ("inbound",), "audio/x-mulaw", 8000,
                                           {"userId": "12345", "sessionId": "abc-xyz"}))

    def test_the_documented_media_as_text_or_bytes(self):
        for text in (json.dumps(DOC_MEDIA), json.dumps(DOC_MEDIA).encode(), " " + json.dumps(DOC_MEDIA)):
            media = wire.parse_message(text)
            self.assertEqual((media.sequence_number, media.stream_id, media.track, media.chunk, media.timestamp,
                              media.payload), (42, "87654321-4321-4321-4321-cba987654321", "inbound", 41,
                                               1705312200000, b"\xff" * 160))

    def test_numbers_may_be_strings(self):
        media = wire.parse_message(json.dumps({**DOC_MEDIA, "sequenceNumber": "7",
                                               "media": {**DOC_MEDIA["media"], "chunk": "6"}}))
        self.assertEqual((media.sequence_number, media.chunk), (7, 6))

    def test_dtmf_checkpoint_answers_clear_and_stop(self):
        self.assertEqual(wire.parse_message('{"event":"dtmf","sequenceNumber":3,"streamId":"s",'
                                            '"dtmf":{"track":"inbound","digit":"5","timestamp":"10"}}'),
                         wire.Dtmf(3, "s", "5"))
        self.assertEqual(wire.parse_message('{"event":"dtmf","streamId":"s","dtmf":{"digit":"a"}}').digit, "A")
        played = '{"event":"playedStream","sequenceNumber":4,"streamId":"s","name":"r1.s0"}'
        self.assertEqual(wire.parse_message(played), wire.PlayedStream(4, "s", "r1.s0"))
        # A support article calls the answer "played"; the docs and both SDKs "playedStream".
        self.assertEqual(wire.parse_message('{"event":"played","streamId":"s","name":"r1.end"}').name, "r1.end")
        self.assertEqual(wire.parse_message('{"event":"clearedAudio","sequenceNumber":5,"streamId":"s"}'),
                         wire.ClearedAudio(5, "s"))
        self.assertEqual(wire.parse_message('{"event":"stop","streamId":"s","reason":"hangup"}'),
                         wire.Stop(None, "s", "hangup"))
        self.assertEqual(wire.parse_message('{"event":"somethingNew"}'), wire.Unknown("somethingNew"))

    def test_extra_headers_in_each_documented_shape(self):
        for value in ("a=1,b=2", "a=1;b=2", '{"a": "1", "b": 2}', {"a": "1", "b": 2}):
            self.assertEqual(wire.parse_extra_headers(value), {"a": "1", "b": "2"}, value)
        self.assertEqual(wire.parse_extra_headers(""), {})
        self.assertEqual(wire.parse_extra_headers("{not json=1"), {"{not json": "1"})
        self.assertEqual(len(wire.parse_extra_headers(",".join(f"k{i}=v" for i in range(100)))), 32)

    def test_malformed_inputs(self):
        bad = [
            b"", b"{", b"[]", b'"start"', b"{}", b'{"event":1}', b"\xff\xfe",
            b'{"event":"media"}', b'{"event":"media","media":[]}', b'{"event":"media","media":{}}',
            b'{"event":"media","media":{"payload":"***"}}', b'{"event":"media","media":{"payload":7}}',
            b'{"event":"media","media":{"payload":"","chunk":"x"}}',
            b'{"event":"media","media":{"payload":"","chunk":1e999}}',
            b'{"event":"media","sequenceNumber":true,"media":{"payload":""}}',
            b'{"event":"start"}', b'{"event":"start","start":{}}', b'{"event":"start","start":{"callId":"c"}}',
            b'{"event":"start","start":{"callId":"c","streamId":"s","tracks":"inbound"}}',
            b'{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":[1]}}',
            b'{"event":"start","start":{"callId":{},"streamId":"s"}}',
            b'{"event":"dtmf"}', b'{"event":"dtmf","dtmf":{}}', b'{"event":"dtmf","dtmf":{"digit":"55"}}',
            b'{"event":"dtmf","dtmf":{"digit":"x"}}', b'{"event":"playedStream"}',
            b'{"event":"playedStream","name":["a"]}', b'{"event":"media","streamId":[],"media":{"payload":""}}',
            b"[" * 100000,
        ]
        for payload in bad:
            with self.assertRaises(wire.ProtocolError, msg=payload[:60]):
                wire.parse_message(payload)

    def test_long_fields_are_cut(self):
        start = wire.parse_message(json.dumps({"event": "start", "start": {"callId": "c" * 5000, "streamId": "s"}}))
        self.assertEqual(len(start.call_id), 200)


class FormatTests(unittest.TestCase):
    def test_plivos_formats(self):
        self.assertEqual(wire.audio_format("audio/x-mulaw", 8000), AudioFormat("mulaw", 8000))
        self.assertEqual(wire.audio_format("audio/x-l16", 8000), AudioFormat("pcm_s16le", 8000))
        self.assertEqual(wire.audio_format("audio/x-L16;rate=16000", 16000), AudioFormat("pcm_s16le", 16000))
        for encoding, rate in (("audio/x-mulaw", 16000), ("audio/x-l16", 24000), ("audio/x-alaw", 8000), ("", 8000)):
            with self.assertRaises(UnsupportedAudio):
                wire.audio_format(encoding, rate)
        self.assertEqual(wire.split_content_type("audio/x-l16;rate=16000"), ("audio/x-l16", 16000))
        self.assertEqual(wire.split_content_type("audio/x-mulaw"), ("audio/x-mulaw", 8000))


class OutboundTests(unittest.TestCase):
    def test_play_audio_is_json_naming_the_stream_and_its_format(self):
        for content_type, encoding, rate in (("audio/x-mulaw;rate=8000", "audio/x-mulaw", 8000),
                                             ("audio/x-l16;rate=16000", "audio/x-l16", 16000)):
            encode = wire.play_audio_encoder('s"1', content_type)
            for audio in (b"", b"\x00", b"\x01\x02\xff" * 333):
                self.assertEqual(json.loads(encode(audio)), {
                    "event": "playAudio", "streamId": 's"1',
                    "media": {"contentType": encoding, "sampleRate": rate,
                              "payload": base64.b64encode(audio).decode()}})

    def test_checkpoint_and_clear(self):
        self.assertEqual(json.loads(wire.checkpoint_message("s1", "r1.end")),
                         {"event": "checkpoint", "streamId": "s1", "name": "r1.end"})
        self.assertEqual(json.loads(wire.clear_audio_message("s1")), {"event": "clearAudio", "streamId": "s1"})


class XmlTests(unittest.TestCase):
    def test_the_stream_xml_is_bidirectional_and_escaped(self):
        url = wire.stream_url("wss://voice.example.com/media/plivo", "c-1", "+1555&<", "+1666", "9.ab", "voicedToken")
        self.assertEqual(url, "wss://voice.example.com/media/plivo?call=c-1&from=%2B1555%26%3C&to=%2B1666"
                              "&voicedToken=9.ab")
        root = ElementTree.fromstring(wire.stream_xml(url, "audio/x-l16;rate=16000"))
        stream = root.find("Stream")
        self.assertEqual(stream.attrib, {"bidirectional": "true", "keepCallAlive": "true",
                                         "contentType": "audio/x-l16;rate=16000"})
        self.assertEqual(stream.text, url)
        self.assertEqual([child.tag for child in root], ["Stream", "Hangup"])
        with self.assertRaises(ValueError):
            wire.stream_xml(url, "audio/x-alaw;rate=8000")

    def test_dial_xml(self):
        self.assertIn("<Dial><Number>+14155550100</Number></Dial>", wire.dial_xml("+14155550100"))
        self.assertIn("<Dial><User>sip:alice@example.com</User></Dial>", wire.dial_xml("sip:alice@example.com"))
        for bad in ("14155550100", "+1<Hangup/>", "sip:<x>", ""):
            with self.assertRaises(ValueError):
                wire.dial_xml(bad)

    def test_the_token_subject_is_unambiguous(self):
        self.assertNotEqual(wire.token_subject("a|b", "c", ""), wire.token_subject("a", "b|c", ""))
        self.assertNotEqual(wire.token_subject('a","b', "", ""), wire.token_subject("a", "b", ""))


class SignatureTests(unittest.TestCase):
    # Signatures computed by Plivo's own validator (plivo-python plivo/utils/signature_v3.py,
    # construct_post_url / construct_get_url / get_signature_v3 at commit a0cd3237) for these requests.
    VECTORS = [
        ("POST", "https://voice.example.com/answer/plivo",
         {"CallUUID": ["c1"], "From": ["+15551234"], "To": ["+15559876"], "Direction": ["inbound"]},
         "12345678901234567890", "auth-token-1", "KCxae6/DON3cgt48qLiBg+5+RfAdiTNBLOf1F8Kfc7o="),
        ("POST", "https://example.com/abcd?foo=bar&a=1",
         {"CallUUID": ["c1"], "Event": ["StartApp"], "From": ["15551234"]},
         "nonce-2", "MAtoken", "aP0w7JFNRkzzQ8038uK1X7ZVKF77+n9oEWL+K05ZygI="),
        ("GET", "https://voice.example.com/answer/plivo?CallUUID=c1&From=%2B15551234&To=%2B15559876", {},
         "98765", "tok", "KV0r2XQ1AQsaFB/exVkHbVjYzVg8z5scNgH8eOqUPns="),
        ("POST", "https://voice.example.com/answer/plivo?transfer=%2B14155550100", {}, "n3", "tok",
         "TClw10rZ8PnxTBh0wSy42Gt3Ff7akw0CduMpKtXrpEs="),
        ("POST", "https://voice.example.com:8443/answer/plivo", {"A": ["2", "1"], "b": ["x y"]}, "n4", "tok",
         "MTcI5RLWrhzi1G5PnJJPoXjR8LRhEP1KIhWZNeHlhV8="),
    ]

    def test_signatures_match_plivos_own_validator(self):
        for method, url, params, nonce, token, expected in self.VECTORS:
            self.assertEqual(plivo_signature(token, method, url, nonce, params), expected, url)
            self.assertTrue(signature_matches(token, method, url, params, nonce, [expected]))

    def test_the_signed_string_as_plivo_builds_it(self):
        self.assertEqual(signed_string("POST", "https://example.com/abcd?foo=bar&a=1", {"From": ["1"], "B": ["2"]}),
                         "https://example.com/abcd?a=1&foo=bar.B2From1")
        self.assertEqual(signed_string("POST", "https://example.com/abcd", {"From": "1"}),
                         "https://example.com/abcd?From1")
        self.assertEqual(signed_string("POST", "https://example.com/abcd", {}), "https://example.com/abcd")
        self.assertEqual(signed_string("GET", "https://example.com/abcd?b=2&a=1"), "https://example.com/abcd?a=1&b=2")

    def test_what_does_not_match(self):
        method, url, params, nonce, token, good = self.VECTORS[0]
        self.assertTrue(signature_matches(token, method, url, params, nonce, [None, f"junk, {good}"]))
        self.assertTrue(signature_matches(token, method, "https://voice.example.com:443/answer/plivo", params, nonce,
                                          [good]))
        for bad in ([None, None], [""], ["junk"], [good[:-2]]):
            self.assertFalse(signature_matches(token, method, url, params, nonce, bad))
        self.assertFalse(signature_matches(token, method, url, params, "other-nonce", [good]))
        self.assertFalse(signature_matches(token, method, url, params, None, [good]))
        self.assertFalse(signature_matches("other", method, url, params, nonce, [good]))
        self.assertFalse(signature_matches("", method, url, params, nonce, [good]))
        self.assertFalse(signature_matches(token, method, url + "x", params, nonce, [good]))
        self.assertFalse(signature_matches(token, method, url, {**params, "To": ["+1"]}, nonce, [good]))
        self.assertFalse(signature_matches(token, "GET", url, params, nonce, [good]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
events = st.sampled_from(["start", "media", "dtmf", "playedStream", "played", "clearedAudio", "stop", "other"])


@st.composite
def plivo_like(draw):
    """Messages shaped like Plivo's, with any field missing, retyped or garbled."""
    message = {"event": draw(events)}
    for key in draw(st.sets(st.sampled_from(["sequenceNumber", "streamId", "start", "media", "dtmf", "name",
                                              "reason", "extra_headers"]))):
        message[key] = draw(json_values)
    if message["event"] == "media" and draw(st.booleans()):
        message["media"] = {"payload": base64.b64encode(draw(st.binary(max_size=400))).decode(),
                            "chunk": draw(st.integers(-5, 50) | st.text(max_size=3) | st.floats()),
                            "timestamp": draw(json_values), "track": draw(json_values)}
    if message["event"] == "start" and draw(st.booleans()):
        message["start"] = {"callId": draw(json_values), "streamId": draw(json_values), "tracks": draw(json_values),
                            "mediaFormat": {"encoding": draw(json_values), "sampleRate": draw(json_values)},
                            "customParameters": draw(json_values)}
    return json.dumps(message)


class ParserProperties(unittest.TestCase):
    @FAST
    @given(st.binary(max_size=300) | st.text(max_size=300) | plivo_like() | plivo_like().map(str.encode)
           | json_values.map(json.dumps))
    def test_the_parser_returns_a_message_or_a_protocol_error(self, payload):
        try:
            message = wire.parse_message(payload)
        except wire.ProtocolError:
            return
        self.assertIsInstance(message, (wire.Start, wire.Media, wire.Dtmf, wire.PlayedStream, wire.ClearedAudio,
                                        wire.Stop, wire.Unknown))
        if isinstance(message, wire.Start):
            for value in message.extra_headers.values():
                self.assertIsInstance(value, str)

    @FAST
    @given(json_values | st.text(max_size=200))
    def test_extra_headers_never_raise(self, value):
        headers = wire.parse_extra_headers(value)
        self.assertTrue(all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()))

    @FAST
    @given(st.text(max_size=40), st.integers(-1, 50000))
    def test_audio_format_is_a_format_or_unsupported(self, encoding, rate):
        try:
            wire.audio_format(encoding, rate)
        except UnsupportedAudio:
            pass

    @FAST
    @given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30),
           st.dictionaries(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=3), max_size=4))
    def test_a_signature_matches_only_its_own_request(self, token, nonce, path, params):
        url = "https://voice.example.com/" + path
        good = plivo_signature(token or "t", "POST", url, nonce or "n", params)
        self.assertTrue(signature_matches(token or "t", "POST", url, params, nonce or "n", [good]))
        self.assertFalse(signature_matches((token or "t") + "x", "POST", url, params, nonce or "n", [good]))
