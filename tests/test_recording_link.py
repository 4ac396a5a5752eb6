"""The CallLink is a recorded call's tap (voiced.carrier.link + voiced.recording): the
caller's audio as the call hears it, the bot's audio as sent, the clear and the end, for
a carrier in mu-law and one in 16 kHz PCM alike. On a Clock, with the real writer thread."""

from __future__ import annotations

import struct
import tempfile
import wave
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.testing.carriers import SLIN_16K, RecordingCall, RecordingService, RecordingWire
from tests.testing.recording import LOUD, channels, first_sound, last_sound
from voiced.audio import MULAW_8K, SAMPLE_RATE
from voiced.carrier.base import CallStart
from voiced.carrier.link import CallLink
from voiced.recording.recordings import Recordings
from voiced.recording.writer import RecordingWriter


class RecordingCore(RecordingService):
    """The call core with recordings on, as VoicedService is with --recordings."""

    def __init__(self, clock: Clock, directory: str) -> None:
        super().__init__(clock=clock)
        self.recordings = Recordings(directory, 30, clock, writer=RecordingWriter(reactor))

    def new_call(self, start, transport, playout="carrier"):
        call = super().new_call(start, transport, playout)
        call.call_id = start.call_id
        call.record = SimpleNamespace(started_at=self.clock.seconds(), recording="")
        return call

    def open_recording(self, call):
        return self.recordings.open(call)


class LinkTapTests(TestCase):
    def make(self) -> tuple[CallLink, RecordingWire, RecordingCore]:
        self.clock = Clock()
        self.clock.advance(500.0)
        core, wire = RecordingCore(self.clock, tempfile.mkdtemp()), RecordingWire()
        core.recordings.start()
        self.addCleanup(core.recordings.stop)
        link = CallLink(core, wire, "test", True)
        link.opened()
        return link, wire, core

    @inlineCallbacks
    def call(self, audio_format, frame: bytes) -> tuple[list[int], list[int], RecordingCall]:
        """1 s of caller audio, the bot's reply sent at 0.2 s and cleared at 0.5 s, the end at 1 s."""
        link, wire, core = self.make()
        link.started(CallStart("test", "CA-tap", "S1", audio=audio_format))
        call = core.calls[0][2]
        self.assertTrue(call.record.recording)
        quiet = b"\xff" * 160 if audio_format == MULAW_8K else bytes(len(frame))
        for n in range(50):
            self.clock.advance(0.02)
            link.audio(frame if n == 25 else quiet)
            if n == 9:
                link.send_audio(LOUD * 50)  # 1 s of reply
                link.send_mark("r1.end")
            if n == 24:
                link.send_clear()
        link.closed("carrier hung up")
        self.assertIn("close", call.events)
        yield core.recordings.stop()
        with wave.open(call.record.recording) as reader:
            self.assertEqual(reader.getnframes(), SAMPLE_RATE)
            caller, bot = channels(reader.readframes(SAMPLE_RATE))
        return caller, bot, call

    @inlineCallbacks
    def test_a_mulaw_call_is_recorded_as_it_went(self):
        caller, bot, call = yield self.call(MULAW_8K, LOUD)
        self.assertEqual(first_sound(caller), 25 * 160)  # the 26th frame, where it arrived
        self.assertEqual(last_sound(caller), 26 * 160 - 1)
        self.assertEqual(first_sound(bot), 10 * 160)  # sent at 0.2 s
        self.assertEqual(last_sound(bot), 25 * 160 - 1)  # cleared at 0.5 s

    @inlineCallbacks
    def test_a_wideband_call_is_recorded_as_the_call_hears_it(self):
        tone = struct.pack("<h", 8000) * 320  # 20 ms at 16 kHz
        caller, bot, call = yield self.call(SLIN_16K, tone)
        self.assertEqual(first_sound(caller, 2000) // 160, 25)  # (the decimating filter's ramp within the frame)
        self.assertEqual(last_sound(bot), 25 * 160 - 1)
        self.assertEqual(call.events[1][0], "media")
