"""voiced-call's Plivo wire (voiced.caller.carriers.plivo): what it sends is what the
daemon's Plivo parser reads as Plivo's messages, and what the daemon sends comes back
as carrier-neutral events; malformed daemon messages are Problems, never exceptions."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.audio import silence_ulaw
from voiced.caller.carriers import carrier_wire
from voiced.caller.carriers.base import Audio, CallSetup, Clear, Marker, Problem, SendBack
from voiced.caller.carriers.plivo import PlivoStream
from voiced.audio import AudioFormat
from voiced.carrier.plivo import wire

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plivo_call(**setup: object) -> PlivoStream:
    return PlivoStream.new_call(CallSetup(**setup))  # type: ignore[arg-type]


class PlivoWireTests(SynchronousTestCase):
    def test_registered_as_plivo_on_its_own_path(self) -> None:
        self.assertIs(carrier_wire("plivo"), PlivoStream)
        self.assertEqual((PlivoStream.path, PlivoStream.transport, PlivoStream.clear_answers_markers),
                         ("/media/plivo", "websocket", False))

    def test_opening_is_a_start_the_daemon_reads(self) -> None:
        call = plivo_call(call_id="c-1", account_id="MA1")
        self.assertEqual(call.upgrade_headers("wss://x/media/plivo"), {})
        [opening] = call.opening()
        start = wire.parse_message(opening)
        self.assertEqual((start.sequence_number, start.call_id, start.stream_id, start.account_id, start.encoding,
                          start.sample_rate), (1, "c-1", call.stream_id, "MA1", "audio/x-mulaw", 8000))
        self.assertRegex(plivo_call().call_id, r"^[0-9a-f-]{36}$")
        self.assertRegex(plivo_call().account_id, r"^MA[A-Z0-9]{18}$")

    def test_speech_keys_and_checkpoint_answers_are_numbered_plivo_messages(self) -> None:
        call = plivo_call()
        call.opening()
        first = wire.parse_message(call.speech(b"\x01" * 160, 0))
        second = wire.parse_message(call.speech(b"\x02" * 160, 20))
        self.assertEqual((first.sequence_number, first.chunk, first.stream_id, first.track, first.payload),
                         (2, 1, call.stream_id, "inbound", b"\x01" * 160))
        self.assertEqual((second.sequence_number, second.chunk, second.timestamp), (3, 2, 20))
        self.assertEqual(json.loads(call.speech(b"\x03" * 160, 40))["media"],
                         {"track": "inbound", "chunk": 3, "timestamp": "40",
                          "payload": base64.b64encode(b"\x03" * 160).decode()})
        self.assertEqual(wire.parse_message(call.digit("#")[0]), wire.Dtmf(5, call.stream_id, "#"))
        self.assertEqual(wire.parse_message(call.marker_played("r1.s0")[0]),
                         wire.PlayedStream(6, call.stream_id, "r1.s0"))
        self.assertEqual(call.hang_up(), [])  # Plivo just closes the socket

    def test_reads_the_daemons_audio_checkpoints_and_clear(self) -> None:
        call = plivo_call()
        play = wire.play_audio_encoder(call.stream_id, "audio/x-mulaw;rate=8000")
        self.assertEqual(call.read(play(b"\x05" * 320).encode(), False), [Audio(b"\x05" * 320)])
        self.assertEqual(call.read(wire.checkpoint_message(call.stream_id, "r1.end").encode(), False),
                         [Marker("r1.end")])
        clear, answer = call.read(wire.clear_audio_message(call.stream_id).encode(), False)
        self.assertEqual(clear, Clear())
        self.assertIsInstance(answer, SendBack)
        self.assertEqual(wire.parse_message(answer.message), wire.ClearedAudio(1, call.stream_id))

    def test_sixteen_khz_l16_both_ways(self) -> None:
        call = plivo_call(parameters={"contentType": "audio/x-l16;rate=16000"})
        self.assertEqual(call.audio, AudioFormat("pcm_s16le", 16000))
        start = wire.parse_message(call.opening()[0])
        self.assertEqual((start.encoding, start.sample_rate), ("audio/x-l16", 16000))
        self.assertEqual(len(wire.parse_message(call.speech(silence_ulaw(20), 0)).payload), 640)
        play = wire.play_audio_encoder(call.stream_id, "audio/x-l16;rate=16000")
        [audio] = call.read(play(b"\x00\x00" * 320).encode(), False)
        self.assertEqual(len(audio.ulaw), 160)

    def test_reports_what_plivo_would_not_accept(self) -> None:
        call = plivo_call()
        sid = call.stream_id
        bad = [
            b"\x00",
            b"{nope",
            b"[]",
            json.dumps({"event": "playAudio", "streamId": sid}).encode(),
            json.dumps({"event": "playAudio", "streamId": sid,
                        "media": {"payload": "***", "contentType": "audio/x-mulaw", "sampleRate": 8000}}).encode(),
            wire.play_audio_encoder(sid, "audio/x-l16;rate=8000")(b"\x00\x00").encode(),  # not the stream's format
            json.dumps({"event": "checkpoint", "streamId": sid}).encode(),
            json.dumps({"event": "media", "streamId": sid}).encode(),
        ]
        for message in bad:
            events = call.read(message, False)
            self.assertTrue(events and all(isinstance(e, Problem) for e in events), message)
        self.assertIsInstance(call.read(b"{}", True)[0], Problem)
        foreign = call.read(wire.checkpoint_message("another", "r1.s0").encode(), False)
        self.assertEqual((type(foreign[0]), foreign[1]), (Problem, Marker("r1.s0")))

    @FAST
    @given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
           | st.dictionaries(st.sampled_from(["event", "streamId", "media", "name"]),
                             st.none() | st.integers() | st.text(max_size=10)
                             | st.sampled_from(["playAudio", "checkpoint", "clearAudio"])
                             | st.dictionaries(st.sampled_from(["payload", "contentType", "sampleRate"]),
                                               st.none() | st.integers() | st.text(max_size=10)),
                             max_size=4).map(lambda d: json.dumps(d).encode()),
           st.booleans())
    def test_reading_never_raises(self, data: bytes, is_binary: bool) -> None:
        for event in plivo_call().read(data, is_binary):
            self.assertIsInstance(event, (Audio, Marker, Clear, SendBack, Problem))
