"""Exotel's wire model, the chunk rules of the bot's audio and the applet's credentials:
the messages of Exotel's documentation parse, every malformed one is a ProtocolError
(hypothesis), and what voiced writes is what voiced-call's Exotel reads."""

import base64
import json
import unittest

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.messages import FAST, exotel_json_values as json_values, exotel_like
from voiced.audio import AudioFormat, UnsupportedAudio
from voiced.carrier.exotel import wire
from voiced.carrier.exotel.auth import basic_authorization, credentials_problem
from voiced.carrier.exotel.chunks import MAX_BYTES, MIN_BYTES, STEP_BYTES, Rechunker
from voiced.caller.carriers.base import Audio, CallSetup, Clear, Marker, Problem
from voiced.caller.carriers.exotel import ExotelStream


PCM_8K = AudioFormat("pcm_s16le", 8000)

# Exotel's documented examples (developer.exotel.com/docs/agentstream/websocket-protocol).
DOC_START = {"event": "start", "sequence_number": "1", "stream_sid": "MZ1",
             "start": {"stream_sid": "MZ1", "call_sid": "CA1", "account_sid": "AC1", "from": "+919876543210",
                       "to": "+918047491899", "custom_parameters": {"key1": "value1"},
                       "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}}
DOC_MEDIA = {"event": "media", "sequence_number": "3", "stream_sid": "MZ1",
             "media": {"chunk": "2", "timestamp": "200", "payload": base64.b64encode(b"\x01\x00" * 800).decode()}}


def start_with(**fmt: object) -> wire.Start:
    message = json.loads(json.dumps(DOC_START))
    message["start"]["media_format"] = fmt
    parsed = wire.parse_message(json.dumps(message))
    assert isinstance(parsed, wire.Start)
    return parsed


class ParseTests(SynchronousTestCase):
    def test_the_documented_messages(self):
        self.assertEqual(wire.parse_message('{"event":"connected"}'), wire.Connected())
        start = wire.parse_message(json.dumps(DOC_START))
        self.assertEqual(start, wire.Start("MZ1", "CA1", "AC1", "+919876543210", "+918047491899",
                                           {"key1": "value1"}, "audio/x-raw", 8000, 16))
        media = wire.parse_message(json.dumps(DOC_MEDIA))
        self.assertEqual((media.stream_sid, media.chunk, media.payload), ("MZ1", 2, b"\x01\x00" * 800))
        self.assertEqual(wire.parse_message('{"event":"dtmf","sequence_number":"7","stream_sid":"MZ1",'
                                            '"dtmf":{"digit":"5","duration":"100"}}'), wire.Dtmf("MZ1", "5"))
        self.assertEqual(wire.parse_message('{"event":"mark","sequence_number":"15","stream_sid":"MZ1",'
                                            '"mark":{"name":"r1.s0"}}'), wire.Mark("MZ1", "r1.s0"))
        self.assertEqual(wire.parse_message('{"event":"stop","sequence_number":"20","stream_sid":"MZ1",'
                                            '"stop":{"call_sid":"CA1","account_sid":"AC1","reason":"callended"}}'),
                         wire.Stop("MZ1", "CA1", "callended"))
        self.assertEqual(wire.parse_message('{"event":"something-new"}'), wire.Unknown("something-new"))

    def test_the_spellings_exotels_samples_use_and_numbers_as_numbers(self):
        # Exotel's own Agent-Stream code reads streamSid/callSid in start; its reference page
        # writes sample_rate and bit_rate as numbers and has no stream_sid at all.
        start = wire.parse_message(json.dumps({"event": "start", "start": {
            "streamSid": "S", "callSid": "C", "from": "+1", "to": "+2",
            "media_format": {"encoding": "linear16", "sample_rate": 16000, "bit_rate": 16}}}))
        self.assertEqual((start.stream_sid, start.call_sid, start.sample_rate, start.bit_rate), ("S", "C", 16000, 16))
        no_sid = wire.parse_message('{"event":"start","start":{"call_sid":"C"}}')
        self.assertEqual((no_sid.stream_sid, no_sid.encoding, no_sid.sample_rate), ("", "", None))
        media = wire.parse_message('{"event":"media","streamSid":"S","media":{"payload":"AAA="}}')
        self.assertEqual((media.stream_sid, media.chunk, media.payload), ("S", None, b"\x00\x00"))

    def test_malformed_messages_say_what_is_wrong(self):
        cases = {
            b"{not json": "not JSON",
            b"[1]": "not a JSON object",
            b'{"event":1}': "no 'event'",
            b'{"event":"media"}': "lacks 'media'",
            b'{"event":"media","media":{"payload":"**"}}': "not base64",
            b'{"event":"media","media":{"payload":"AAAA","chunk":"x"}}': "chunk is not an integer",
            b'{"event":"start","start":{}}': "lacks 'call_sid'",
            b'{"event":"start","start":{"call_sid":"C","media_format":{"sample_rate":"fast"}}}': "sample_rate",
            b'{"event":"dtmf","dtmf":{"digit":"x"}}': "is not one of",
            b'{"event":"mark","mark":{}}': "lacks 'name'",
            b'{"event":"stop","stop":[]}': "is not an object",
        }
        for payload, problem in cases.items():
            with self.assertRaises(wire.ProtocolError, msg=payload) as caught:
                wire.parse_message(payload)
            self.assertIn(problem, str(caught.exception))


class AudioFormatTests(SynchronousTestCase):
    def test_raw_pcm_is_little_endian_16_bit_at_the_rate_the_start_or_the_url_gives(self):
        self.assertEqual(wire.audio_format(start_with(encoding="audio/x-raw", sample_rate="8000", bit_rate="16")),
                         PCM_8K)
        self.assertEqual(wire.audio_format(start_with(encoding="audio/x-raw", sample_rate="16000")),
                         AudioFormat("pcm_s16le", 16000))
        self.assertEqual(wire.audio_format(start_with(encoding="audio/x-raw"), url_rate=24000),
                         AudioFormat("pcm_s16le", 24000))
        self.assertEqual(wire.audio_format(start_with()), PCM_8K)  # no media_format: the applet's default

    def test_the_newer_guides_content_types(self):
        self.assertEqual(wire.audio_format(start_with(encoding="audio/x-mulaw;rate=8000")), AudioFormat("mulaw", 8000))
        self.assertEqual(wire.audio_format(start_with(encoding="audio/L16;rate=16000")),
                         AudioFormat("pcm_s16le", 16000))
        self.assertEqual(wire.audio_format(start_with(encoding="audio/x-alaw", sample_rate=8000)),
                         AudioFormat("alaw", 8000))

    def test_what_voiced_does_not_speak_is_named(self):
        for fmt in ({"encoding": "audio/opus"}, {"encoding": "audio/x-raw", "sample_rate": "44100"},
                    {"encoding": "audio/x-raw", "bit_rate": "8"}):
            with self.assertRaises(UnsupportedAudio):
                wire.audio_format(start_with(**fmt))


class OutboundTests(SynchronousTestCase):
    def test_messages_carry_both_spellings_of_the_stream_id(self):
        media = json.loads(wire.media_message('M"1', b"\x00\x01"))
        self.assertEqual(media, {"event": "media", "stream_sid": 'M"1', "streamSid": 'M"1',
                                 "media": {"payload": "AAE="}})
        self.assertEqual(json.loads(wire.mark_message("M", 'r"1.s0'))["mark"], {"name": 'r"1.s0'})
        self.assertEqual(json.loads(wire.clear_message("M")), {"event": "clear", "stream_sid": "M", "streamSid": "M"})

    def test_voiced_calls_exotel_reads_what_the_daemon_writes(self):
        caller = ExotelStream.new_call(CallSetup())
        sid = caller.stream_sid
        [audio] = caller.read(wire.media_message(sid, b"\x00" * MIN_BYTES).encode(), False)
        self.assertEqual(audio, Audio(b"\xff" * (MIN_BYTES // 2)))  # PCM silence as 8 kHz mu-law silence
        self.assertEqual(caller.read(wire.mark_message(sid, "r1.end").encode(), False), [Marker("r1.end")])
        self.assertEqual(caller.read(wire.clear_message(sid).encode(), False), [Clear()])

    def test_voiced_calls_exotel_reports_a_chunk_that_breaks_exotels_rules(self):
        caller = ExotelStream.new_call(CallSetup())
        events = caller.read(wire.media_message(caller.stream_sid, b"\x00" * 640).encode(), False)
        self.assertIsInstance(events[0], Problem)
        self.assertIn("640 bytes", events[0].message)
        self.assertIsInstance(events[1], Audio)


class RechunkerTests(SynchronousTestCase):
    def test_a_right_sized_chunk_goes_as_it_is(self):
        chunks = Rechunker(PCM_8K)
        payload = b"\x01" * 6400
        self.assertIs(chunks.audio(payload)[0], payload)
        self.assertEqual(chunks.pending, 0)

    def test_the_rest_waits_for_the_next_audio_and_a_marker_pads_it_with_silence(self):
        chunks = Rechunker(PCM_8K)
        self.assertEqual(chunks.audio(b"\x01" * 1000), [])
        self.assertEqual(chunks.audio(b"\x02" * 2500), [b"\x01" * 1000 + b"\x02" * 2200])
        self.assertEqual(chunks.pending, 300)
        self.assertEqual(chunks.flush(), b"\x02" * 300 + b"\x00" * (MIN_BYTES - 300))
        self.assertEqual((chunks.pending, chunks.flush()), (0, b""))

    def test_a_long_rest_is_padded_to_the_next_multiple_only(self):
        chunks = Rechunker(AudioFormat("mulaw", 8000), max_bytes=6400)
        self.assertEqual([len(c) for c in chunks.audio(b"\x01" * 9000)], [6400])
        self.assertEqual(chunks.flush(), b"\x01" * 2600 + b"\xff" * 600)  # mu-law silence, to 3200
        chunks.audio(b"\x01" * 3100 + b"\x02" * 3400)  # 6500: 6400 sent, 100 kept
        self.assertEqual(chunks.pending, 100)
        chunks.clear()
        self.assertEqual(chunks.flush(), b"")

    @FAST
    @given(st.lists(st.integers(0, 40000) | st.just(-1), max_size=12), st.sampled_from([PCM_8K,
           AudioFormat("mulaw", 8000), AudioFormat("pcm_s16le", 24000)]))
    def test_every_message_keeps_exotels_rules_and_no_audio_is_lost_or_reordered(self, sizes, fmt):
        chunks = Rechunker(fmt)
        sent, given_audio, counter = [], bytearray(), 0
        for size in sizes:
            if size < 0:  # a marker
                rest = chunks.flush()
                sent += [rest] if rest else []
                continue
            # Bytes 1..200: never a silence byte (0x00, 0xff, 0xd5), so the padding can be told apart.
            payload = bytes((counter + i) % 200 + 1 for i in range(size))
            counter += size
            given_audio += payload
            sent += chunks.audio(payload)
        rest = chunks.flush()
        sent += [rest] if rest else []
        for message in sent:
            self.assertEqual(len(message) % STEP_BYTES, 0)
            self.assertTrue(MIN_BYTES <= len(message) <= MAX_BYTES, len(message))
            padding = len(message) - len(message.rstrip(chunks.silence))
            self.assertLess(padding, MIN_BYTES)
        self.assertEqual(b"".join(sent).replace(chunks.silence, b""), bytes(given_audio))


class ParserProperties(unittest.TestCase):
    @FAST
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | exotel_like().map(str.encode)
           | exotel_like() | json_values.map(lambda v: json.dumps(v).encode()))
    def test_the_parser_returns_a_message_or_a_protocol_error(self, payload):
        try:
            message = wire.parse_message(payload)
        except wire.ProtocolError:
            return
        self.assertIsInstance(message, (wire.Connected, wire.Start, wire.Media, wire.Dtmf, wire.Mark, wire.Stop,
                                        wire.Unknown))
        if isinstance(message, wire.Start):
            try:
                fmt = wire.audio_format(message)
            except UnsupportedAudio:
                return
            self.assertIsInstance(fmt, AudioFormat)


class CredentialsTests(SynchronousTestCase):
    def test_user_and_password_as_exotel_sends_them(self):
        header = "Basic " + base64.b64encode(b"voiced:s3cret").decode()
        self.assertIsNone(credentials_problem("voiced:s3cret", header))
        self.assertEqual(basic_authorization("voiced:s3cret"), header)

    def test_a_token_is_the_user_name_without_a_password(self):
        self.assertIsNone(credentials_problem("tok", "Basic " + base64.b64encode(b"tok:").decode()))
        self.assertEqual(credentials_problem("tok", "Basic " + base64.b64encode(b"tok:x").decode()),
                         "wrong credentials")

    def test_every_other_header_is_refused_with_its_reason(self):
        self.assertIn("no Authorization", credentials_problem("u:p", None))
        self.assertIn("not Basic", credentials_problem("u:p", "Bearer u:p"))
        self.assertEqual(credentials_problem("u:p", "Basic ***"), "malformed Basic credentials")
        self.assertEqual(credentials_problem("u:p", basic_authorization("u:q")), "wrong credentials")
        self.assertEqual(credentials_problem("u:p", basic_authorization("u:p ")), "wrong credentials")
