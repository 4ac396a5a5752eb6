"""End to end: a daemon with --recordings records a 3-turn call with a barge-in, placed by
voiced-call's library over a real WebSocket, as the caller lived it.

The file (read with the stdlib's ``wave``) is checked against the caller's own account
(every frame it sent, when the clear came) and against the daemon's record (each line's
time, the barge-in's time): the caller channel holds exactly the caller's audio, the bot
channel is silent from the clear until the next reply, and both line up with the
transcript within 100 ms. The journal and the console name the same file.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import time
import wave

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, line
from voiced.audio import SAMPLE_RATE, ulaw_to_pcm16
from voiced.caller.client import place_call
from voiced.journal import cli

ALIGNED_S = 0.1
LOUD = 600  # a sample this far from zero is sound, not the line's silence
WINDOW = 160  # 20 ms


def read_channels(path: str) -> tuple[list[int], list[int]]:
    with wave.open(path) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, SAMPLE_RATE)
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    return list(samples[0::2]), list(samples[1::2])


def onset(samples: list[int], from_s: float, to_s: float | None = None) -> float | None:
    """Seconds to the first 20 ms window with sound at or after ``from_s``."""
    start = max(0, round(from_s * SAMPLE_RATE))
    stop = len(samples) if to_s is None else min(len(samples), round(to_s * SAMPLE_RATE))
    for at in range(start, stop, WINDOW):
        if max((abs(s) for s in samples[at:at + WINDOW]), default=0) > LOUD:
            return at / SAMPLE_RATE
    return None


def peak(samples: list[int], from_s: float, to_s: float) -> int:
    return max((abs(s) for s in samples[round(from_s * SAMPLE_RATE):round(to_s * SAMPLE_RATE)]), default=0)


class RecordingCallTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.recordings = tempfile.mkdtemp(prefix="voiced-recordings-")
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-journal-"), "calls.db")
        self.daemon = Daemon(args=["--recordings", self.recordings, "--journal", self.journal])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()

    def assertNear(self, first: float, second: float, delta: float, msg: str = "") -> None:
        self.assertLessEqual(abs(first - second), delta, f"{first} and {second} are more than {delta} apart {msg}")

    @inlineCallbacks
    def wait_for_log(self, word: str, timeout_s: float = 15.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.daemon.lines(word)
            if found:
                return found[-1]
            yield deferLater(reactor, 0.1, lambda: None)
        self.fail(f"no {word} line:\n{self.daemon.log()[-3000:]}")

    @inlineCallbacks
    def test_a_barge_in_call_recorded_as_the_caller_lived_it(self):
        lines = [line("Where are you located?"), line("Sorry, what time do you open on Saturday?", barge_in_ms=600),
                 line("Goodbye.")]
        report = yield place_call(reactor, self.daemon.media_url, lines)
        self.assertEqual(report.errors, [])
        self.assertEqual(len(report.clears), 1, "one barge-in")
        self.assertTrue(report.hung_up_by_bot)
        finished = yield self.wait_for_log(" RECORDING call=")
        call = self.daemon.get_json(f"/console/api/calls/{report.call_sid}")
        record = call["record"]
        path = record["recording"]
        self.assertIn(path, finished)
        self.assertTrue(path.startswith(os.path.realpath(self.recordings)) or path.startswith(self.recordings))
        caller, bot = read_channels(path)
        length_s = len(caller) / SAMPLE_RATE
        self.assertNear(length_s, record["ended_at"] - record["started_at"], delta=0.1)

        # The caller channel is the caller's audio: each line, sample for sample, where it was sent.
        # Where the first sits in the file is the offset between the caller's clock (one frame
        # every 20 ms from its zero) and the recording's; every line keeps it within 100 ms.
        sent = ulaw_to_pcm16(report.caller_audio)
        recorded = struct.pack(f"<{len(caller)}h", *caller)
        offsets = []
        for said in lines:
            speech = ulaw_to_pcm16(said.audio)
            sent_at, found = sent.find(speech), recorded.find(speech)
            self.assertNotEqual(sent_at, -1)
            self.assertNotEqual(found, -1, f"{said.text!r} is not in the caller channel: {finished}")
            offsets.append((found - sent_at) / 2 / SAMPLE_RATE)
        offset_s = offsets[0]  # recording time of the caller's time zero
        self.assertLess(offset_s, 0.2)
        for later in offsets[1:]:
            self.assertNear(later, offset_s, ALIGNED_S, f"the caller channel drifted: {offsets}")

        # The barge-in: the daemon's clear (its record's interrupt) is where the caller got it,
        # and from there the bot channel is silent until the next reply starts. The bot channel
        # is laid on the caller's, which may lead the clock by a frame or two of jitter, and a
        # clear cannot take back what is written: the silence starts within ALIGNED_S (a CI run
        # had 23 ms of the reply after the clear).
        interrupt = [b for b in record["barge_ins"] if b["decision"] == "interrupt"]
        self.assertEqual(len(interrupt), 1, record["barge_ins"])
        clear_s = interrupt[0]["at_s"]
        self.assertNear(report.clears[0] + offset_s, clear_s, delta=ALIGNED_S)
        turns = record["turns"]
        self.assertEqual(len(turns), 3, [t["caller_text"] for t in turns])
        cut, answer = turns[0], turns[1]
        self.assertTrue(cut["interrupted"], cut)
        self.assertGreater(peak(bot, clear_s - 0.3, clear_s), LOUD, "the reply was playing up to the clear")
        self.assertLess(peak(bot, clear_s + ALIGNED_S, answer["bot_at_s"] - 0.02), LOUD,
                        f"bot audio after the clear at {clear_s} s, before the next reply at {answer['bot_at_s']} s")

        # Every transcript line starts where the recording has it, within 100 ms: the caller's
        # words on the caller channel (and where the caller says it spoke), the bot's on the bot's.
        for number, (turn, observed) in enumerate(zip(turns, report.turns), 1):
            heard_at = onset(caller, turn["caller_at_s"] - 0.5)
            self.assertIsNotNone(heard_at)
            self.assertNear(heard_at, turn["caller_at_s"], delta=ALIGNED_S, msg=f"turn {number}: {turn}")
            self.assertNear(observed.speech_start_s + offset_s, turn["caller_at_s"], delta=ALIGNED_S)
        # The bot channel is what the caller heard, sample for sample, each reply where it played.
        bot_bytes = struct.pack(f"<{len(bot)}h", *bot)
        searched_from = 0
        for reply in report.replies:
            heard = ulaw_to_pcm16(reply.audio)
            samples = struct.unpack(f"<{len(heard) // 2}h", heard)
            sound = next(i for i, x in enumerate(samples) if abs(x) > LOUD)  # past the voice's lead-in silence
            piece = heard[2 * sound: 2 * sound + 3200]  # 200 ms from there (a gap later in it may differ)
            found = bot_bytes.find(piece, searched_from)
            self.assertNotEqual(found, -1, f"reply {reply.turn_index} ({reply.text!r}) is not in the bot channel")
            searched_from = found + len(piece)
            played_at = (found // 2 - sound) / SAMPLE_RATE
            self.assertNear(played_at, reply.play_start_s + offset_s, ALIGNED_S, f"reply {reply.turn_index}")
            if reply.turn_index is not None:
                turn = turns[reply.turn_index]
                self.assertNear(played_at, turn["bot_at_s"], ALIGNED_S, f"turn {turn['number']}: {turn}")

        # The console serves the same file; the journal names it.
        status, served = self.daemon.get(call["recording_url"])
        self.assertEqual(status, 200)
        with open(path, "rb") as f:
            self.assertEqual(served, f.read())
        shown = ""
        for _ in range(50):  # the journal commits the record just after the call's end
            out = io.StringIO()
            if os.path.exists(self.journal) and cli.main(["--journal", self.journal, "show", report.call_sid],
                                                         out) == 0:
                shown = out.getvalue()
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertIn(f"  recording {path}\n", shown)
        with open(os.path.join(self.recordings, "result.json"), "w") as f:
            json.dump({"offset_s": offset_s, "clear_s": clear_s, "turns": turns, "log": finished}, f, indent=1)

    @inlineCallbacks
    def test_a_killed_daemon_leaves_a_playable_recording(self):
        """kill -9 in the middle of a call: the file plays, up to about a second before the kill."""
        calling = place_call(reactor, self.daemon.media_url, [line("What time do you open?"), line("Goodbye.")],
                             max_duration_s=30)
        yield deferLater(reactor, 6.0, lambda: None)
        files = [os.path.join(folder, name) for folder, _, names in os.walk(self.recordings) for name in names]
        self.assertEqual(len(files), 1, files)
        self.daemon.process.kill()  # SIGKILL: nothing is closed, nothing flushed on the way out
        self.daemon.process.wait()
        yield calling
        with wave.open(files[0]) as w:
            seconds = w.getnframes() / w.getframerate()
            self.assertEqual(w.getnchannels(), 2)
            self.assertEqual(len(w.readframes(w.getnframes())), 4 * w.getnframes(), "every frame the header says")
        self.assertGreater(seconds, 3.5, "the recording kept what was written up to the kill")
        self.assertLess(seconds, 6.5)
