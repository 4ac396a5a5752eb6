"""A call's link to its carrier (voiced.carrier.link), on a Clock with a recording wire and core."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.carriers import SLIN_16K, RecordingService, RecordingWire
from voiced.audio import MULAW_8K, AudioFormat
from voiced.carrier.base import CallStart
from voiced.carrier.link import CLOSE_NO_START, CLOSE_POLICY_VIOLATION, CallLink
from voiced.stt.base import PCM_16K, STT_FORMATS


class LinkTests(SynchronousTestCase):
    def make(self, echoes: bool = True, stt_formats=frozenset({MULAW_8K})) -> tuple[CallLink, RecordingWire, RecordingService]:
        self.clock = Clock()
        core, wire = RecordingService(clock=self.clock, stt_formats=stt_formats), RecordingWire()
        link = CallLink(core, wire, "test", echoes)
        link.opened()
        return link, wire, core

    def test_wideband_audio_reaches_the_call_as_8k_mulaw_and_replies_go_back_wideband(self) -> None:
        link, wire, core = self.make()
        link.started(CallStart("test", "C1", "S1", audio=SLIN_16K))
        start, transport, call = core.calls[0]
        self.assertEqual((start.call_id, call.events), ("C1", ["start"]))
        link.audio(b"\0" * 640 * 3)  # 60 ms at 16 kHz
        self.assertEqual(call.events[1:], [("media", 480)])  # 60 ms at 8 kHz mu-law
        transport.send_audio(b"\xff" * 160)
        transport.send_mark("r1.end")
        self.assertEqual(wire.sent, [("audio", 640), ("mark", "r1.end")])

    def test_a_wideband_call_whose_stt_takes_16k_gets_both_audios(self) -> None:
        link, wire, core = self.make(stt_formats=STT_FORMATS)
        link.started(CallStart("test", "C1", "S1", audio=SLIN_16K))
        call = core.calls[0][2]
        self.assertEqual((call.stt_audio, link.wideband_stt), (PCM_16K, True))
        payload = bytes(range(256)) * 5  # 40 ms at 16 kHz
        link.audio(payload)
        self.assertEqual(call.events[1:], [("media", 320, 1280)])  # 8 kHz mu-law for the call, 16 kHz for STT
        self.assertEqual(call.stt_fed, payload)  # 16 kHz little-endian PCM goes to STT untouched
        # A 24 kHz call: STT's copy is decimated to 16 kHz.
        link, wire, core = self.make(stt_formats=STT_FORMATS)
        link.started(CallStart("test", "C2", "S2", audio=AudioFormat("pcm_s16le", 24000)))
        link.audio(b"\0" * 960 * 2)
        self.assertEqual(core.calls[0][2].events[1:], [("media", 320, 1280)])

    def test_twilio_and_engines_without_16k_get_the_8k_mulaw_only(self) -> None:
        link, wire, core = self.make(stt_formats=STT_FORMATS)
        link.started(CallStart("twilio", "C1", "S1"))  # mu-law 8 kHz: passed through as it came
        link.audio(b"\x7f" * 160)
        self.assertEqual((core.calls[0][2].events[1:], link.wideband_stt), ([("media", 160)], False))
        link, wire, core = self.make()  # an engine that takes 8 kHz mu-law only
        link.started(CallStart("test", "C2", "S2", audio=SLIN_16K))
        link.audio(b"\0" * 640)
        self.assertEqual((core.calls[0][2].stt_audio, core.calls[0][2].events[1:]), (MULAW_8K, [("media", 160)]))

    def test_a_payload_not_whole_frames_of_the_calls_format_is_dropped(self) -> None:
        link, wire, core = self.make()
        link.started(CallStart("test", "C1", "S1", audio=SLIN_16K))
        link.audio(b"\0" * 320)  # 20 ms at 8 kHz, 10 ms at 16 kHz
        self.assertEqual(core.calls[0][2].events, ["start"])
        self.assertEqual(core.metrics.protocol_errors_total._value.get(), 1)

    def test_chunks_that_do_not_end_on_a_frame_are_regrouped_into_whole_frames(self) -> None:
        link, wire, core = self.make()
        link.started(CallStart("test", "C1", "S1", audio=AudioFormat("pcm_s16le", 8000)))
        call = core.calls[0][2]
        link.audio_chunk(b"\0" * 480)  # 30 ms: one frame now, 10 ms carried
        link.audio_chunk(b"\0" * 480)  # 10 + 30 ms: two frames
        link.audio_chunk(b"\0" * 321)  # half a sample: dropped, the carry unchanged
        self.assertEqual(call.events[1:], [("media", 160), ("media", 320)])
        self.assertEqual(core.metrics.protocol_errors_total._value.get(), 1)
        link.audio_chunk(b"\0" * 640)  # whole frames, nothing carried: straight through
        self.assertEqual(call.events[-1], ("media", 320))

    def test_without_echoes_the_local_clock_paces_and_answers_marks(self) -> None:
        link, wire, core = self.make(echoes=False)
        link.started(CallStart("test", "C1", "S1", audio=AudioFormat("pcm_s16le", 8000)))
        transport, call = core.calls[0][1], core.calls[0][2]
        transport.send_audio(b"\xff" * 1600)  # 200 ms
        transport.send_mark("r1.end")
        self.assertEqual(wire.sent, [("audio", 320)] * 3)  # 60 ms ahead, no more
        for _ in range(12):
            self.clock.advance(0.02)
        self.assertEqual(wire.sent.count(("audio", 320)), 10)
        self.assertEqual(call.events[-1], ("mark", "r1.end"))
        transport.send_audio(b"\xff" * 1600)
        transport.send_clear()  # nothing more is paced out; the wire is told too
        self.clock.advance(1)
        self.assertEqual(wire.sent[-1], ("clear",))
        self.assertEqual(wire.sent.count(("audio", 320)), 13)

    def test_no_start_in_time_closes_4000_and_a_flood_1008(self) -> None:
        link, wire, core = self.make()
        self.clock.advance(10.1)
        self.assertEqual(wire.sent, [("close", CLOSE_NO_START)])
        link, wire, core = self.make()
        link.started(CallStart("test", "C1", "S1"))
        for _ in range(400):  # 8 s of audio at once: 2 s of jitter allowed, 5 s of excess closes
            link.audio(b"\xff" * 160)
        self.assertEqual(wire.sent, [("close", CLOSE_POLICY_VIOLATION)])

    def test_the_bots_hang_up_ends_the_call_the_carriers_way_and_close_ends_the_call(self) -> None:
        link, wire, core = self.make(echoes=False)
        link.started(CallStart("test", "C1", "S1"))
        transport, call = core.calls[0][1], core.calls[0][2]
        transport.send_audio(b"\xff" * 1600)
        transport.hang_up()
        self.assertEqual(wire.sent[-1], ("end",))
        self.assertEqual(self.clock.getDelayedCalls(), [])  # the playout stopped
        link.closed("caller hung up (close 1000)")
        self.assertEqual((call.events[-1], core.ended), ("close", [call]))
        self.assertEqual(call.reasons, ["caller hung up (close 1000)"])

    def test_the_record_says_who_ended_the_stream(self) -> None:
        for end, reason in ((lambda link: link.stopped(), "carrier ended the stream"),
                            (lambda link: link.stopped("Asterisk hung up (a hang-up frame)"),
                             "Asterisk hung up (a hang-up frame)"),
                            (lambda link: link.fail(4003, "too many malformed messages"),
                             "error: too many malformed messages (close 4003)"),
                            (lambda link: link.refuse("media flood"), "refused: media flood (close 1008)"),
                            (lambda link: None, "connection lost (close 1006)")):
            link, wire, core = self.make()
            link.started(CallStart("test", "C1", "S1"))
            end(link)
            link.closed("connection lost (close 1006)")
            self.assertEqual(core.calls[0][2].reasons, [reason])
