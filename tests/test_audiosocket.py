"""Asterisk AudioSocket's pure parts: the frames (``voiced.carrier.audiosocket.wire``, with
hypothesis over malformed streams), the signed call UUIDs the dialplan makes
(``call_uuid``, checked against the dialplan lines themselves), and voiced-call's wire."""

from __future__ import annotations

import hashlib
import re
import uuid

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import silence_ulaw
from voiced.caller.carriers import carrier_wire
from voiced.caller.carriers.audiosocket import AudioSocketCall, AudioSocketCall16k
from voiced.caller.carriers.base import Audio, CallSetup, HangUp, Problem
from voiced.carrier.audiosocket import call_uuid, wire
from voiced.carrier.codec import Codec

SECRET = "s3cret-0123456789abcdef"
NOW = 1_700_000_000.0


class FrameTests(SynchronousTestCase):
    def test_serialized_frames(self):
        self.assertEqual(wire.hang_up_frame(), b"\x00\x00\x00")
        self.assertEqual(wire.frame(wire.HANG_UP), wire.hang_up_frame())
        self.assertEqual(wire.error_frame(wire.ERROR_REFUSED), b"\xff\x00\x01\x11")
        self.assertEqual(wire.dtmf_frame("#"), b"\x03\x00\x01#")
        call = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
        self.assertEqual(wire.uuid_frame(call), b"\x01\x00\x10" + call.bytes)
        self.assertEqual(wire.frame(0x10, bytes(320))[:3], b"\x10\x01\x40")
        with self.assertRaises(ValueError):
            wire.frame(0x10, bytes(65536))
        with self.assertRaises(ValueError):
            wire.dtmf_frame("x")

    def test_whole_frames_split_across_reads(self):
        stream = wire.uuid_frame(uuid.UUID(int=7)) + wire.frame(0x10, bytes(range(200)) * 2) + wire.dtmf_frame("5") \
            + wire.hang_up_frame()
        whole = wire.FrameSplitter().feed(stream)
        self.assertEqual([kind for kind, _ in whole], [wire.UUID, 0x10, wire.DTMF, wire.HANG_UP])
        splitter = wire.FrameSplitter()
        one_by_one = [f for i in range(len(stream)) for f in splitter.feed(stream[i:i + 1])]
        self.assertEqual(one_by_one, whole)
        self.assertEqual(splitter.pending, 0)
        self.assertEqual(splitter.feed(b"\x10\x01"), [])
        self.assertEqual(splitter.pending, 2)

    def test_an_oversized_header_is_refused_at_once(self):
        splitter = wire.FrameSplitter()
        with self.assertRaises(wire.FrameTooLong) as e:
            splitter.feed(b"\x10\x20\x01")  # 8193 bytes announced: no need to wait for them
        self.assertIn("8193", str(e.exception))
        self.assertEqual(wire.FrameSplitter().feed(b"\x10\x20\x00" + bytes(8192))[0][1], bytes(8192))

    def test_payloads_that_do_not_fit_their_kind(self):
        self.assertEqual(wire.parse_uuid(uuid.UUID(int=1).bytes), uuid.UUID(int=1))
        self.assertEqual(wire.parse_dtmf(b"*"), "*")
        for bad in (b"", bytes(15), bytes(17)):
            with self.assertRaises(wire.ProtocolError):
                wire.parse_uuid(bad)
        for bad in (b"", b"12", b"x", b"\xff", b" "):
            with self.assertRaises(wire.ProtocolError):
                wire.parse_dtmf(bad)

    def test_the_audio_kinds_voiced_speaks(self):
        # asterisk include/asterisk/res_audiosocket.h after commit ff0523a3: one kind per slin rate.
        self.assertEqual(str(wire.audio_format(0x10)), "pcm_s16le/8000")
        self.assertEqual(str(wire.audio_format(0x12)), "pcm_s16le/16000")
        self.assertEqual(str(wire.audio_format(0x13)), "pcm_s16le/24000")
        self.assertEqual(wire.KIND_OF_RATE, {8000: 0x10, 16000: 0x12, 24000: 0x13})
        with self.assertRaisesRegex(wire.ProtocolError, r"0x11 \(12000 Hz\).*c\(slin16\)"):
            wire.audio_format(0x11)
        with self.assertRaisesRegex(wire.ProtocolError, "not an audio kind"):
            wire.audio_format(0x20)
        self.assertEqual([wire.describe(k) for k in (0x00, 0x12, 0xFF, 0x42)],
                         ["hang-up", "audio/16000", "error", "kind 0x42"])


def frames_strategy():
    kinds = st.sampled_from([0x00, 0x01, 0x03, 0x10, 0x11, 0x12, 0xFF]) | st.integers(0, 255)
    return st.lists(st.tuples(kinds, st.binary(max_size=700)), max_size=12)


class FrameProperties(SynchronousTestCase):
    @given(st.lists(st.binary(max_size=400), max_size=30))
    @settings(max_examples=300, deadline=None)
    def test_any_bytes_give_frames_or_a_protocol_error_and_the_buffer_stays_bounded(self, reads):
        splitter = wire.FrameSplitter()
        for data in reads:
            try:
                for kind, payload in splitter.feed(data):
                    self.assertTrue(0 <= kind <= 255 and len(payload) <= wire.MAX_PAYLOAD)
            except wire.ProtocolError:
                return  # the protocol closes the connection here
            self.assertLess(splitter.pending, wire.HEADER_BYTES + wire.MAX_PAYLOAD)

    @given(frames_strategy(), st.lists(st.integers(1, 50), min_size=1, max_size=20))
    @settings(max_examples=200, deadline=None)
    def test_well_formed_frames_come_out_whole_however_the_stream_is_cut(self, frames, cuts):
        stream = b"".join(wire.frame(kind, payload) for kind, payload in frames)
        splitter, out, pos, i = wire.FrameSplitter(), [], 0, 0
        while pos < len(stream):
            step = cuts[i % len(cuts)]
            out += splitter.feed(stream[pos:pos + step])
            pos, i = pos + step, i + 1
        self.assertEqual(out, [(kind, payload) for kind, payload in frames])
        self.assertEqual(splitter.pending, 0)

    @given(st.binary(max_size=40))
    def test_payload_parsers_return_a_value_or_a_protocol_error(self, payload):
        for parse in (wire.parse_uuid, wire.parse_dtmf):
            try:
                parse(payload)
            except wire.ProtocolError:
                pass

    @given(st.integers(0, 255))
    def test_audio_format_of_any_kind_is_a_format_or_a_protocol_error(self, kind):
        try:
            fmt = wire.audio_format(kind)
        except wire.ProtocolError:
            self.assertNotIn(kind, wire.AUDIO_FORMATS)
        else:
            self.assertEqual(fmt, wire.AUDIO_FORMATS[kind])


# ---- the signed call UUID, as Asterisk's dialplan makes it ------------------------------------------
class Dialplan:
    """Just enough of Asterisk's variable substitution to run call_uuid's dialplan lines:
    ${VAR}, ${VAR:offset:length}, ${EPOCH}, ${UUID()}, ${SHA1(...)} (lower-case hex, as
    Asterisk writes both), innermost first."""

    _INNER = re.compile(r"\$\{([^${}]*)\}")

    def __init__(self, epoch: int, random_uuid: str, variables: dict[str, str]) -> None:
        self.variables = {"EPOCH": str(epoch), **variables}
        self.random_uuid = random_uuid

    def _one(self, match: re.Match) -> str:
        expr = match.group(1)
        if expr == "UUID()":
            return self.random_uuid
        if expr.startswith("SHA1(") and expr.endswith(")"):
            return hashlib.sha1(expr[5:-1].encode()).hexdigest()
        name, *cut = expr.split(":")
        value = self.variables[name]
        if cut:
            offset, length = int(cut[0]), int(cut[1])
            value = value[offset:offset + length]
        return value

    def expand(self, text: str) -> str:
        while "${" in text:
            text = self._INNER.sub(self._one, text)
        return text

    def run(self, lines: list[str]) -> str:
        """The UUID handed to AudioSocket() by the last line."""
        for line in lines:
            app = re.match(r"same => n,(\w+)\((.*)\)$", line.strip())
            if app.group(1) == "Set":
                name, _, value = app.group(2).partition("=")
                self.variables[name] = self.expand(value)
            elif app.group(1) == "AudioSocket":
                return self.expand(app.group(2)).split(",")[0]
        raise AssertionError("no AudioSocket() line")


DOC_LINES = [line for line in call_uuid.__doc__.splitlines() if line.strip().startswith("same => n,")]


class CallUuidTests(SynchronousTestCase):
    def test_the_documented_dialplan_makes_a_uuid_voiced_admits(self):
        self.assertEqual(len(DOC_LINES), 4)
        made = Dialplan(int(NOW), "9f3c2a71-0b6e-4d2c-8a55-0e1f2d3c4b5a", {"VOICED_SECRET": SECRET}).run(DOC_LINES)
        self.assertEqual(made, call_uuid.issue(SECRET, NOW, "9f3c2a"))
        self.assertIsNone(call_uuid.problem(SECRET, uuid.UUID(made), NOW + 3))  # Asterisk's uuid_parse takes it

    def test_wrong_secret_tampering_and_unsigned_uuids_are_refused(self):
        good = uuid.UUID(call_uuid.issue(SECRET, NOW))
        self.assertIsNone(call_uuid.problem(SECRET, good, NOW))
        self.assertIn("not signed", call_uuid.problem("another-secret-0123456789", good, NOW))
        tampered = uuid.UUID(int=good.int ^ 1)
        self.assertIn("not signed", call_uuid.problem(SECRET, tampered, NOW))
        self.assertIn("not signed", call_uuid.problem(SECRET, uuid.uuid4(), NOW))
        # A nonce without a timestamp, tagged with the right secret (voiced never issues one).
        nonce = "abcdef0123456789"
        tag = hashlib.sha1((SECRET + nonce).encode()).hexdigest()[:16]
        self.assertEqual(call_uuid.problem(SECRET, uuid.UUID(nonce + tag), NOW), "call UUID has no timestamp")

    def test_stale_and_future_uuids_are_refused(self):
        made = uuid.UUID(call_uuid.issue(SECRET, NOW))
        self.assertIsNone(call_uuid.problem(SECRET, made, NOW + call_uuid.MAX_SKEW_S))
        self.assertIn("issued 121 s ago", call_uuid.problem(SECRET, made, NOW + 121))
        self.assertIn("issued -121 s ago", call_uuid.problem(SECRET, made, NOW - 121))

    def test_a_nonce_is_ten_timestamp_digits_and_six_lower_case_hex_digits(self):
        for bad in ("12345", "ABCDEF", "12345g"):
            with self.assertRaises(ValueError):
                call_uuid.issue(SECRET, NOW, bad)

    def test_each_uuid_is_good_for_one_connection_within_the_window(self):
        guard = call_uuid.ReplayGuard(window_s=240)
        a, b = uuid.UUID(int=1), uuid.UUID(int=2)
        self.assertTrue(guard.first_use(a, 0.0))
        self.assertFalse(guard.first_use(a, 1.0))
        self.assertTrue(guard.first_use(b, 100.0))
        self.assertEqual(len(guard), 2)
        self.assertTrue(guard.first_use(uuid.UUID(int=3), 240.0))  # a is forgotten: its window is over
        self.assertEqual(len(guard), 2)


# ---- voiced-call's side --------------------------------------------------------------------------
class CallerWireTests(SynchronousTestCase):
    def test_registered_and_shaped_as_the_tcp_path_expects(self):
        self.assertIs(carrier_wire("audiosocket"), AudioSocketCall)
        self.assertEqual((AudioSocketCall.transport, AudioSocketCall.answers_markers), ("tcp", False))
        self.assertEqual(AudioSocketCall.secret_env, "VOICED_AUDIOSOCKET_SECRET")

    def test_the_call_uuid_is_given_signed_or_random(self):
        given_id = "40325ec2-5efd-4bd3-805f-53576e581d13"
        self.assertEqual(AudioSocketCall.new_call(CallSetup(call_id=given_id)).call_id, given_id)
        signed = AudioSocketCall.new_call(CallSetup(secret=SECRET, now=NOW))
        self.assertIsNone(call_uuid.problem(SECRET, signed.uuid, NOW))
        self.assertEqual(signed.stream_id, signed.call_id)
        self.assertNotEqual(AudioSocketCall.new_call(CallSetup()).call_id, AudioSocketCall.new_call(CallSetup()).call_id)

    def test_what_the_caller_sends(self):
        call = AudioSocketCall.new_call(CallSetup(call_id=str(uuid.UUID(int=5))))
        self.assertEqual(call.opening(), [b"\x01\x00\x10" + uuid.UUID(int=5).bytes])
        frame = call.speech(silence_ulaw(20), 0)
        self.assertEqual((frame[:3], len(frame)), (b"\x10\x01\x40", 323))
        self.assertEqual(frame[3:], Codec(wire.SLIN_8K).encode(silence_ulaw(20)))
        wide = AudioSocketCall16k.new_call(CallSetup()).speech(silence_ulaw(20), 0)
        self.assertEqual((wide[:3], len(wide)), (b"\x12\x02\x80", 643))
        self.assertEqual(call.digit("7"), [b"\x03\x00\x017"])
        self.assertEqual(call.hang_up(), [b"\x00\x00\x00"])
        self.assertEqual(call.marker_played("m"), [])
        self.assertEqual(call.upgrade_headers("tcp://x:1"), {})

    def test_what_the_daemon_sends_is_read_across_reads(self):
        call = AudioSocketCall.new_call(CallSetup())
        slin = Codec(wire.SLIN_8K).encode(b"\x10" * 160)
        stream = wire.frame(0x10, slin) + wire.frame(0x12, bytes(640)) + wire.frame(0x42, b"?") \
            + wire.frame(0x10, b"\x00") + wire.error_frame(0x13) + wire.hang_up_frame()
        events = call.read(stream[:100], True) + call.read(stream[100:], True)
        self.assertIsInstance(events[0], Audio)
        self.assertEqual(events[0].ulaw, Codec(wire.SLIN_8K).decode(slin))
        self.assertEqual([type(e) for e in events[1:]], [Problem, Problem, Problem, Problem, HangUp, HangUp])
        self.assertIn("audio/16000 on a call of audio/8000", events[1].message)
        self.assertIn("kind 0x42", events[2].message)
        self.assertIn("code 13", events[4].message)

    def test_a_broken_stream_is_reported_once(self):
        call = AudioSocketCall.new_call(CallSetup())
        self.assertEqual([type(e) for e in call.read(b"\x10\xff\xff", True)], [Problem])
        self.assertEqual(call.read(wire.hang_up_frame(), True), [])
