"""voiced-call: the Twilio side of a Media Stream and the simulated person on the phone.

(tests/test_caller_wire.py tests the carrier port itself, and Twilio's wire through it.)

Everything runs on a Clock: the playback model, pacing and turn-taking directly; whole
calls through place_call against a scripted bot (an Autobahn server) over a connection in
memory (tests.testing.MemoryNetwork). Only calls that fail before any audio (refused,
rejected) use the real reactor and loopback sockets.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile

from autobahn.twisted.websocket import WebSocketServerFactory
from twilio.request_validator import RequestValidator
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.caller import REPO, FakeLink, run_until, serve_scripted_bot, tone
from tests.testing.network import MemoryNetwork
from voiced.audio import SAMPLE_RATE, silence_ulaw, write_ulaw_as_wav
from voiced.caller.client import place_call
from voiced.caller.main import build_parser, check_address, load_lines, run as run_cli
from voiced.caller.report import format_conversation, percentiles, run_dict
from voiced.caller.session import CallConfig, CallerLine, CallSession, speech_frames
from voiced.caller.carriers.twilio import TwilioStream
from voiced.caller.playback import Playback
from voiced.carrier.twilio.signature import twilio_signature
from voiced.carrier.twilio.wire import Media, Start, Stop, clear_message, mark_message, media_message, parse_message


def stream() -> TwilioStream:
    return TwilioStream("AC" + "a" * 32, "CA" + "b" * 32, "MZ" + "c" * 32, {"From": "+1", "To": "+2"})


class MessageTests(SynchronousTestCase):
    def test_messages_are_what_twilio_sends(self) -> None:
        s = stream()
        self.assertEqual(json.loads(s.connected()), {"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = parse_message(s.start())
        self.assertIsInstance(start, Start)
        self.assertEqual(start.sequence_number, 1)
        self.assertEqual(
            (start.call_sid, start.stream_sid, start.account_sid), (s.call_sid, s.stream_sid, s.account_sid)
        )
        self.assertEqual(start.tracks, ("inbound",))
        self.assertEqual((start.encoding, start.sample_rate, start.channels), ("audio/x-mulaw", 8000, 1))
        self.assertEqual(start.custom_parameters, {"From": "+1", "To": "+2"})
        raw = json.loads(s.media(b"\x01" * 160, 0))
        self.assertEqual(raw["media"]["track"], "inbound")
        self.assertIsInstance(raw["sequenceNumber"], str)
        media = parse_message(s.media(b"\x02" * 160, 20))
        self.assertIsInstance(media, Media)
        self.assertEqual((media.sequence_number, media.chunk, media.timestamp_ms), (3, 2, 20))
        self.assertEqual(media.payload, b"\x02" * 160)
        self.assertEqual(
            json.loads(s.mark("r1.end")),
            {"event": "mark", "sequenceNumber": "4", "streamSid": s.stream_sid, "mark": {"name": "r1.end"}},
        )
        stop = parse_message(s.stop())
        self.assertIsInstance(stop, Stop)
        self.assertEqual((stop.sequence_number, stop.call_sid), (5, s.call_sid))

    def test_signature_is_the_one_twilio_validates(self) -> None:
        url = "wss://voice.example.com/media"
        signature = twilio_signature("token123", url)
        self.assertTrue(RequestValidator("token123").validate(url, {}, signature))
        self.assertFalse(RequestValidator("other").validate(url, {}, signature))

    def test_speech_frames_finds_speech_by_energy(self) -> None:
        audio = silence_ulaw(100) + tone(200) + silence_ulaw(100)
        chunks = [audio[i : i + 160] for i in range(0, len(audio), 160)]
        self.assertEqual(speech_frames(chunks), list(range(5, 15)))


class PlaybackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100.0)
        self.echoed: list[tuple[str, float]] = []
        self.playback = Playback(
            self.clock, 100.0, lambda name: self.echoed.append((name, self.clock.seconds() - 100.0))
        )

    def test_mark_with_nothing_queued_is_echoed_at_once(self) -> None:
        self.playback.mark("idle")
        self.assertEqual(self.echoed, [("idle", 0.0)])

    def test_marks_wait_for_the_audio_queued_before_them(self) -> None:
        self.clock.advance(1.0)
        self.assertEqual(self.playback.enqueue(tone(500)), 8000)  # idle: plays at once
        self.playback.mark("a")
        self.assertEqual(self.playback.enqueue(tone(300)), 12000)  # queued behind the first
        self.playback.mark("b")
        self.clock.advance(0.499)
        self.assertEqual(self.echoed, [])
        self.clock.advance(0.002)
        self.assertEqual([n for n, _ in self.echoed], ["a"])
        self.clock.advance(0.3)
        self.assertEqual([n for n, _ in self.echoed], ["a", "b"])
        self.assertTrue(1.8 <= self.echoed[1][1] <= 1.8015)
        self.assertFalse(self.playback.playing())
        # The timeline is what was heard: silence until 1 s, then both tones back to back.
        timeline = bytes(self.playback.timeline)
        self.assertEqual(timeline[:8000], silence_ulaw(1000))
        self.assertEqual(timeline[8000:], tone(500) + tone(300))

    def test_clear_drops_unplayed_audio_and_echoes_pending_marks_at_once(self) -> None:
        self.playback.enqueue(tone(1000))
        self.playback.mark("s0")
        self.playback.enqueue(tone(1000))
        self.playback.mark("end")
        self.clock.advance(0.25)
        dropped = self.playback.clear()
        self.assertEqual(dropped, 14000)
        self.assertEqual(self.echoed, [("s0", 0.25), ("end", 0.25)])
        self.assertEqual(len(self.playback.timeline), 2000)
        self.assertFalse(self.playback.playing())
        self.assertEqual(self.playback.enqueue(tone(100)), 2000)  # new audio plays right away
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SessionTests(SynchronousTestCase):
    def assertBetween(self, value: float | None, low: float, high: float) -> None:
        self.assertIsNotNone(value)
        self.assertTrue(low <= value <= high, f"{value} is not within [{low}, {high}]")

    def start(self, lines: list[CallerLine], **config: float) -> tuple[Clock, FakeLink, CallSession]:
        clock = Clock()
        clock.advance(50.0)
        link = FakeLink(clock)
        session = CallSession(clock, lines, stream(), "ws://test/media", CallConfig(**config))
        session.opened(link)
        return clock, link, session

    def bot(self, session: CallSession, audio: bytes = b"", mark: str = "") -> None:
        if audio:
            session.received(media_message(session.wire.stream_sid, audio).encode(), False)
        if mark:
            session.received(mark_message(session.wire.stream_sid, mark).encode(), False)

    def test_frames_follow_an_absolute_20ms_schedule(self) -> None:
        clock, link, _ = self.start([], reply_timeout_s=100.0, hangup_grace_s=100.0)
        self.assertEqual([m["event"] for _, m in link.sent[:3]], ["connected", "start", "media"])
        # Irregular reactor wake-ups, including a 100 ms stall, never add up to drift.
        for step in [0.013, 0.031, 0.1, 0.007, 0.019] + [0.021] * 40:
            clock.advance(step)
        clock_s = clock.seconds() - 50.0
        media = link.events("media")
        self.assertEqual(len(media), math.floor(clock_s / 0.02 + 1e-9) + 1)
        for n, (_, m) in enumerate(media):
            self.assertEqual(m["media"]["chunk"], str(n + 1))
            self.assertEqual(m["media"]["timestamp"], str(n * 20))
            self.assertEqual(m["sequenceNumber"], str(n + 2))
        # Frames late by a stall are sent on the next wake-up, then the schedule resumes.
        sent_at = [t - 50.0 for t, _ in media]
        self.assertTrue(all(t >= n * 0.02 - 1e-9 for n, t in enumerate(sent_at)))
        self.assertEqual(sum(1 for t in sent_at if abs(t - 0.144) < 1e-9), 5)

    def test_waits_for_the_greeting_to_finish_then_pauses(self) -> None:
        clock, link, session = self.start([CallerLine(tone(200), "hi")], pause_s=0.4)
        run_until(clock, 0.1)
        self.bot(session, tone(300), "r0.end")
        run_until(clock, 0.79)  # the greeting plays until 0.4 s, the pause ends at 0.8 s
        self.assertEqual(session.report.turns, [])
        run_until(clock, 0.85)
        self.assertBetween(session.report.turns[0].speech_start_s, 0.8, 0.8201)  # the next frame after 0.8 s
        echo = session.report.marks_echoed[0]
        self.assertEqual(echo.name, "r0.end")
        self.assertAlmostEqual(echo.received_s, 0.1, places=6)
        self.assertBetween(echo.echoed_s, 0.4, 0.4001)
        sent = link.events("mark")[0]
        self.assertBetween(sent[0] - 50.0, 0.4, 0.4001)
        self.assertEqual(sent[1]["mark"], {"name": "r0.end"})

    def test_speaks_anyway_when_the_bot_stays_silent(self) -> None:
        clock, _, session = self.start([CallerLine(tone(200), "hello?")], reply_timeout_s=0.5)
        run_until(clock, 0.6)
        self.assertBetween(session.report.turns[0].speech_start_s, 0.5, 0.5201)

    def test_barge_in_talks_over_the_reply_and_measures_the_clear(self) -> None:
        lines = [CallerLine(tone(200), "a"), CallerLine(tone(400) + silence_ulaw(100), "b", barge_in_ms=200)]
        clock, _, session = self.start(lines, reply_timeout_s=0.3, pause_s=0.4)
        run_until(clock, 0.6)
        a = session.report.turns[0]
        self.assertBetween(a.speech_start_s, 0.3, 0.3201)
        self.assertAlmostEqual(a.speech_end_s - a.speech_start_s, 0.18, places=6)  # 10 frames of tone
        self.bot(session, tone(1000))  # the reply starts playing at 0.6 s
        self.assertAlmostEqual(a.first_reply_audio_ms, (0.6 - a.speech_end_s) * 1000, places=3)
        self.assertAlmostEqual(a.playback_start_ms, a.first_reply_audio_ms, places=3)
        run_until(clock, 0.85)
        b = session.report.turns[1]
        self.assertBetween(b.speech_start_s, 0.8, 0.8201)  # 200 ms into the reply
        session.received(clear_message(session.wire.stream_sid).encode(), False)
        self.assertAlmostEqual(b.clear_after_onset_ms, (0.85 - b.speech_start_s) * 1000, places=3)
        reply = session.report.replies[0]
        self.assertTrue(reply.interrupted)
        self.assertEqual(reply.turn_index, 0)
        self.assertAlmostEqual(reply.end_s, 0.85, places=4)
        self.assertEqual(len(reply.audio), 2000)  # 250 ms heard of 1 s
        run_until(clock, 1.4)
        self.assertBetween(b.speech_end_s, 1.16, 1.1801)
        self.bot(session, tone(200))
        self.assertAlmostEqual(b.first_reply_audio_ms, (1.4 - b.speech_end_s) * 1000, places=3)
        self.assertEqual(len(session.report.clears), 1)

    def test_hangs_up_after_the_last_reply_and_the_grace_period(self) -> None:
        clock, link, session = self.start([CallerLine(tone(200), "bye")], reply_timeout_s=0.2, hangup_grace_s=0.5)
        run_until(clock, 0.5)  # the line is spoken from 0.2 s to 0.4 s
        self.bot(session, tone(300))  # plays 0.5 .. 0.8 s
        run_until(clock, 1.29)
        self.assertFalse(link.hung_up)
        run_until(clock, 1.31)  # 0.8 s + 0.5 s grace
        self.assertTrue(link.hung_up)
        stops = link.events("stop")
        self.assertEqual(len(stops), 1)
        self.assertBetween(stops[0][0] - 50.0, 1.3, 1.3001)
        stop = {"accountSid": session.wire.account_sid, "callSid": session.wire.call_sid}
        self.assertEqual(link.sent[-1][1]["stop"], stop)
        self.assertEqual(clock.getDelayedCalls(), [])
        session.closed(True, 1000, None)
        report = self.successResultOf(session.done)
        self.assertFalse(report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        self.assertEqual(len(report.bot_audio), len(report.caller_audio))
        self.assertTrue(report.completed)

    def test_bot_hang_up_cuts_what_was_still_queued(self) -> None:
        clock, _, session = self.start([], reply_timeout_s=10.0)
        self.bot(session, tone(1000), "r0.end")
        run_until(clock, 0.3)
        session.closed(True, 1000, "bye")
        report = self.successResultOf(session.done)
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(report.audio_dropped_at_hangup_ms, 700)
        self.assertEqual([m.name for m in report.marks_echoed], [])  # never played: never echoed
        self.assertEqual(len(report.replies[0].audio), 2400)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_replies_are_segmented_by_audio_timing(self) -> None:
        clock, _, session = self.start([], reply_timeout_s=10.0, hangup_grace_s=10.0)
        self.bot(session, mark="r0.start")
        self.bot(session, tone(200))
        run_until(clock, 0.5)  # 0.3 s of silence after it played: still the same reply
        self.bot(session, tone(200))
        run_until(clock, 1.5)  # 0.8 s of silence: the next audio is a new reply
        self.bot(session, mark="r1.start")
        run_until(clock, 1.55)
        self.bot(session, tone(200))
        session.closed(True, 1000, None)
        replies = self.successResultOf(session.done).replies
        self.assertEqual(len(replies), 2)
        self.assertEqual(len(replies[0].audio), 8000 * 700 // 1000)
        self.assertEqual(replies[0].audio[1600:4000], silence_ulaw(300))
        self.assertAlmostEqual(replies[1].start_s, 1.5, places=3)  # the mark sent ahead of the audio
        self.assertAlmostEqual(replies[1].first_audio_s, 1.55, places=3)

    def test_protocol_violations_are_reported_not_fatal(self) -> None:
        _, _, session = self.start([])
        session.received(b"\x00\x01", True)
        session.received(b"not json", False)
        session.received(media_message("MZother", tone(20)).encode(), False)
        self.assertEqual(len(session.report.errors), 3)
        self.assertIn("binary", session.report.errors[0])
        self.assertIn("MZother", session.report.errors[2])
        self.assertEqual(len(session.report.replies) + (session._reply is not None), 1)

    def test_report_formats(self) -> None:
        self.assertEqual(percentiles([300, 100, 200, 400]), {"n": 4, "p50": 200, "p90": 400, "max": 400})
        self.assertEqual(percentiles([])["n"], 0)


def line(ms: int, text: str = "", barge_in_ms: int | None = None) -> CallerLine:
    """A spoken line: ``ms`` of tone, then 200 ms of trailing silence (as a recording has)."""
    return CallerLine(tone(ms) + silence_ulaw(200), text, barge_in_ms)


class CallOnAClockTests(SynchronousTestCase):
    """Whole calls through place_call, Autobahn on both ends, over a connection in memory
    and on a Clock: pacing, echoes and latencies are what the code makes of them, not what
    the machine's load lets through."""

    def setUp(self) -> None:
        self.network = MemoryNetwork(self)

    def assertNear(self, value: float | None, expected: float, tolerance: float) -> None:
        self.assertIsNotNone(value)
        self.assertTrue(abs(value - expected) <= tolerance, f"{value} is not {expected} +- {tolerance}")

    def serve(self, greeting: bytes = b"", replies: tuple[bytes, ...] = (), hang_up_after: int | None = None) -> str:
        self.factory, url = serve_scripted_bot(self, greeting, replies, hang_up_after, on=self.network.reactor)
        return url

    def test_conversation_with_barge_in_ending_with_the_bot_hanging_up(self):
        url = self.serve(greeting=tone(400), replies=(tone(1500), tone(300)), hang_up_after=2)
        lines = [line(500, "what time do you open"), line(500, "wait, stop", barge_in_ms=150)]
        report = self.network.run(place_call(self.network.reactor, url, lines, pause_ms=400, reply_timeout_s=3.0))
        bot = self.factory.bots[0]
        self.network.run(bot.closed)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.connected and report.completed and report.hung_up_by_bot)
        self.assertEqual(report.closed_code, 1000)
        self.assertEqual(report.audio_dropped_at_hangup_ms, 0)
        self.assertFalse(bot.events("stop"))  # the bot hung up: the caller sends no stop

        # Pacing: one 160-byte frame every 20 ms, numbered as Twilio numbers them.
        self.assertEqual([m["event"] for _, m in bot.inbox[:3]], ["connected", "start", "media"])
        numbers = [int(m["sequenceNumber"]) for _, m in bot.inbox[1:]]
        self.assertEqual(numbers, list(range(1, len(bot.inbox))))
        media = bot.events("media")
        self.assertEqual([int(m["media"]["chunk"]) for _, m in media], list(range(1, len(media) + 1)))
        self.assertEqual([int(m["media"]["timestamp"]) for _, m in media], [20 * n for n in range(len(media))])
        self.assertTrue(all(len(parse_message(json.dumps(m)).payload) == 160 for _, m in media))
        first = media[0][0]
        rate = (len(media) - 1) / (media[-1][0] - first)
        self.assertAlmostEqual(rate, 50.0, places=6)
        drift = max(abs(t - first - n * 0.02) for n, (t, _) in enumerate(media))
        self.assertLess(drift, 1e-6)

        # Marks: echoed when the audio queued before them has played, at once when nothing is queued.
        self.assertLess(bot.echoes["idle"] - bot.sent_marks["idle"], 0.001)
        self.assertLess(bot.echoes["r0.start"] - bot.sent_marks["r0.start"], 0.001)
        self.assertNear(bot.echoes["r0.s0"] - bot.sent_marks["r0.start"], 0.2, 0.001)
        self.assertNear(bot.echoes["r0.end"] - bot.sent_marks["r0.start"], 0.4, 0.001)
        # Clear: the rest of r1 is dropped and its pending marks come back at once.
        self.assertEqual(len(bot.clears), 1)
        self.assertLess(bot.echoes["r1.end"] - bot.clears[0], 0.001)
        self.assertEqual(len(report.clears), 1)
        echoed = {m.name: m for m in report.marks_echoed}
        # Echoed while handling the clear: the same instant.
        self.assertNear(echoed["r1.end"].echoed_s, report.clears[0], 1e-6)

        greeting, r1, r2 = report.replies
        self.assertEqual((greeting.turn_index, r1.turn_index, r2.turn_index), (None, 0, 1))
        self.assertEqual((greeting.interrupted, r1.interrupted, r2.interrupted), (False, True, False))
        self.assertEqual(len(greeting.audio), 3200)
        self.assertEqual(len(r2.audio), 2400)
        self.assertLess(len(r1.audio), 0.5 * SAMPLE_RATE)  # 1.5 s sent, cut by clear
        self.assertAlmostEqual(r1.end_s, report.clears[0], places=3)

        ask, interrupt = report.turns
        # The caller's first line follows the greeting plus the 400 ms pause.
        self.assertNear(ask.speech_start_s, greeting.end_s + 0.4, 0.035)
        self.assertNear(ask.speech_end_s - ask.speech_start_s, 0.48, 0.001)
        # The bot answers 6 silent frames + 100 ms after the last voiced frame.
        self.assertNear(ask.first_reply_audio_ms, 220, 0.5)
        self.assertNear(ask.playback_start_ms, ask.first_reply_audio_ms, 1)
        # Barge-in: starts 150 ms into r1; the bot clears on the third voiced frame.
        self.assertNear(interrupt.speech_start_s, r1.play_start_s + 0.15, 0.035)
        self.assertNear(interrupt.clear_after_onset_ms, 40, 0.5)
        self.assertNear(interrupt.first_reply_audio_ms, 220, 0.5)

        # The timeline as heard: silence between the cut and the next reply.
        cut = round(report.clears[0] * SAMPLE_RATE)
        resume = round(r2.play_start_s * SAMPLE_RATE)
        self.assertEqual(report.bot_audio[cut + 80 : resume - 80].strip(b"\xff"), b"")
        self.assertEqual(report.bot_audio[resume : resume + 2400], r2.audio)
        self.assertIn("first audio", format_conversation(report))
        self.assertTrue(run_dict([report])["ok"])

    def test_caller_hangs_up_with_stop_after_the_grace_period(self):
        url = self.serve(replies=(tone(300),))
        report = self.network.run(place_call(
            self.network.reactor,
            url,
            [line(300, "hello?")],
            reply_timeout_s=0.3,
            hangup_grace_s=0.3,
            call_sid="CA" + "1" * 32,
            custom_parameters={"token": "abc"},
            auth_token="secret",
            signed_url="wss://voice.example.com/media",
        ))
        bot = self.factory.bots[0]
        self.network.run(bot.closed)
        self.assertEqual(report.errors, [])
        self.assertFalse(report.hung_up_by_bot)
        self.assertTrue(report.completed)
        self.assertNear(report.turns[0].speech_start_s, 0.3, 0.035)  # nobody greeted: spoke anyway
        start = bot.events("start")[0][1]["start"]
        self.assertEqual(start["callSid"], "CA" + "1" * 32)
        self.assertRegex(start["streamSid"], r"^MZ[0-9a-f]{32}$")
        self.assertRegex(start["accountSid"], r"^AC[0-9a-f]{32}$")
        params = dict(start["customParameters"])
        self.assertRegex(params.pop("voicedToken"), r"^\d+\.[0-9a-f]{64}$")  # what voiced's TwiML would carry
        self.assertEqual(params, {"From": "+15550100", "To": "+15550199", "token": "abc"})
        stop_time, stop = bot.inbox[-1]
        self.assertEqual(stop["event"], "stop")
        self.assertEqual(stop["stop"]["callSid"], "CA" + "1" * 32)
        reply = report.replies[0]
        self.assertNear(stop_time - bot.sent_marks["r0.start"], 0.3 + 0.3, 0.001)
        self.assertNear(report.duration_s, reply.end_s + 0.3, 0.001)
        signature = bot.request.headers["x-twilio-signature"]
        self.assertTrue(RequestValidator("secret").validate("wss://voice.example.com/media", {}, signature))

    def test_cli_prints_a_json_report_for_concurrent_calls(self):
        # The command's own code path (its arguments, calls, files and JSON) on the Clock;
        # test_cli_exits_1_with_a_clear_error_when_refused runs it as a process.
        url = self.serve(greeting=tone(200), replies=(tone(200),), hang_up_after=1)
        folder = tempfile.mkdtemp()
        wav = os.path.join(folder, "line.wav")
        write_ulaw_as_wav(wav, tone(300) + silence_ulaw(200))
        out = os.path.join(folder, "bot.wav")
        argv = [url, "--wav", wav, "--calls", "2", "--json", "--no-transcribe", "--pause-ms", "200", "--out", out]
        parser = build_parser()
        args = parser.parse_args(argv)
        check_address(parser, args)
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        self.network.run(Deferred.fromCoroutine(run_cli(self.network.reactor, args, load_lines(args.lines, "en-US"))))
        result = json.loads(stdout.getvalue())
        self.assertTrue(result["ok"])
        calls = result["calls"]
        self.assertEqual(len({c["call_sid"] for c in calls}), 2)
        for call in calls:
            self.assertRegex(call["call_sid"], r"^CA[0-9a-f]{32}$")
            self.assertTrue(call["hung_up_by_bot"])
            self.assertEqual(call["turns"][0]["line_text"], "[line.wav]")
            self.assertNear(call["turns"][0]["first_reply_audio_ms"], 220, 0.5)
            self.assertEqual([r["audio_ms"] for r in call["replies"]], [200, 200])
        self.assertEqual(result["summary"]["first_reply_audio_ms"]["n"], 2)
        self.assertTrue(os.path.exists(out) and os.path.exists(os.path.join(folder, "bot-2.wav")))
        for bot in self.factory.bots:
            self.network.run(bot.closed)


class LiveCallTests(TestCase):
    """Calls that fail before any audio, on the real reactor and loopback sockets."""

    timeout = 30

    def serve(self, deny: bool = False) -> str:
        self.factory, url = serve_scripted_bot(self, b"", (), None, deny)
        return url

    @inlineCallbacks
    def test_refused_connection_is_reported(self):
        port = reactor.listenTCP(0, WebSocketServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        report = yield place_call(reactor, f"ws://127.0.0.1:{number}/media", [])
        self.assertFalse(report.connected or report.completed)
        self.assertEqual(len(report.errors), 1)
        self.assertIn("connection refused", report.errors[0])

    @inlineCallbacks
    def test_rejected_upgrade_is_reported(self):
        url = self.serve(deny=True)
        report = yield place_call(reactor, url, [])
        self.assertFalse(report.connected)
        self.assertEqual(len(report.errors), 1)
        self.assertIn("upgrade failed", report.errors[0])
        self.assertIn("403", report.errors[0])

    @inlineCallbacks
    def test_cli_exits_1_with_a_clear_error_when_refused(self):
        port = reactor.listenTCP(0, WebSocketServerFactory(), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        args = ["-m", "voiced.caller.main", f"ws://127.0.0.1:{number}/media", "--json"]
        stdout, stderr, code = yield getProcessOutputAndValue(sys.executable, args, env=dict(os.environ), path=REPO)
        self.assertEqual(code, 1)
        self.assertIn(b"connection refused", stderr)
        self.assertFalse(json.loads(stdout)["ok"])
