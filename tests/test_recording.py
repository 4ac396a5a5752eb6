"""Call recordings (voiced.recording): the two channels' timeline on explicit times, the WAV
file a crash leaves behind, the writer thread, a call's tap and the retention sweep."""

from __future__ import annotations

import os
import struct
import tempfile
import time
import wave

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.testing.recording import FRAME, LOUD, channels, first_sound, last_sound
from voiced.audio import SAMPLE_RATE
from voiced.recording.recordings import Recordings, file_name
from voiced.recording.tap import FLUSH_BYTES
from voiced.recording.timeline import DRIFT_LIMIT_S, Timeline
from voiced.recording.wav import HEADER_BYTES, WavFile
from voiced.recording.writer import RecordingWriter

QUIET = b"\xff" * FRAME  # mu-law silence


class TimelineTests(SynchronousTestCase):
    """One frame every 20 ms from t=100 (the call's start), as a carrier streams them."""

    def caller_frames(self, timeline: Timeline, start: float, count: int, frame: bytes = QUIET) -> bytes:
        out = b""
        for i in range(count):
            out += timeline.caller(frame, start + (i + 1) * 0.02)
        return out

    def test_caller_frames_on_time_fill_the_caller_channel_in_order(self) -> None:
        timeline = Timeline(100.0)
        out = self.caller_frames(timeline, 100.0, 10)
        out += timeline.caller(LOUD, 100.22)
        caller, bot = channels(out)
        self.assertEqual(len(caller), 11 * FRAME)
        self.assertEqual(first_sound(caller), 10 * FRAME)  # the loud frame sits at 200 ms
        self.assertIsNone(first_sound(bot))

    def test_bot_audio_plays_from_when_it_was_sent_and_is_written_only_as_the_caller_clock_passes(self) -> None:
        timeline = Timeline(100.0)
        out = self.caller_frames(timeline, 100.0, 5)  # 100 ms of the call
        timeline.bot(LOUD * 10, 100.1)  # 200 ms of bot audio sent at 100 ms
        self.assertEqual(timeline.unplayed_bot_samples, 10 * FRAME)
        out += self.caller_frames(timeline, 100.1, 20)
        caller, bot = channels(out)
        self.assertEqual(first_sound(bot), 800)  # 100 ms in
        self.assertEqual(last_sound(bot), 800 + 10 * FRAME - 1)  # 200 ms of it, then silence
        self.assertEqual(timeline.unplayed_bot_samples, 0)

    def test_chunks_sent_at_once_play_one_after_the_other(self) -> None:
        timeline = Timeline(100.0)
        timeline.bot(LOUD * 5, 100.0)
        timeline.bot(LOUD * 5, 100.0)  # queued behind the first: 100..200 ms
        self.assertEqual(timeline.bot_end, 10 * FRAME)
        timeline.bot(LOUD, 100.5)  # sent after the queue ran dry: plays at once
        self.assertEqual(timeline.bot_end, round(0.5 * SAMPLE_RATE) + FRAME)
        _, bot = channels(self.caller_frames(timeline, 100.0, 30))
        self.assertEqual(last_sound(bot[: 4000]), 10 * FRAME - 1)
        self.assertEqual(first_sound(bot[10 * FRAME:]), 4000 - 10 * FRAME)

    def test_a_clear_cuts_the_bot_channel_where_it_was_sent(self) -> None:
        """Barge-in: 2 s of reply sent at 0.5 s, cleared at 1.23 s: the bot is heard from
        0.5 s to 1.23 s and never after, within a sample."""
        timeline = Timeline(100.0)
        out = self.caller_frames(timeline, 100.0, 25)  # to 0.5 s
        timeline.bot(LOUD * 100, 100.5)
        out += self.caller_frames(timeline, 100.5, 36)  # to 1.22 s
        timeline.clear(100.23 + 1.0)
        out += self.caller_frames(timeline, 101.22, 50)  # to 2.22 s: past where the reply would have ended
        caller, bot = channels(out)
        self.assertEqual(first_sound(bot), 4000)
        self.assertEqual(last_sound(bot), round(1.23 * SAMPLE_RATE) - 1)
        self.assertEqual(timeline.bot_cleared, 100 * FRAME - (round(1.23 * SAMPLE_RATE) - 4000))
        self.assertEqual(len(caller), round(2.22 * SAMPLE_RATE))

    def test_a_clear_after_the_bot_finished_changes_nothing(self) -> None:
        timeline = Timeline(0.0)
        timeline.bot(LOUD * 5, 0.0)
        out = self.caller_frames(timeline, 0.0, 10)
        timeline.clear(0.2)
        out += self.caller_frames(timeline, 0.2, 5)
        _, bot = channels(out)
        self.assertEqual(last_sound(bot), 5 * FRAME - 1)
        self.assertEqual(timeline.bot_cleared, 0)

    def test_frames_late_in_a_burst_are_laid_end_to_end_as_spoken(self) -> None:
        """A 120 ms stall on the way (less than the drift limit), then the backlog at once:
        nothing is lost and nothing added."""
        timeline = Timeline(0.0)
        out = self.caller_frames(timeline, 0.0, 10)  # to 200 ms
        for i in range(6):  # frames 10..15 (200..320 ms) all arrive at 320 ms
            out += timeline.caller(LOUD if i == 0 else QUIET, 0.32)
        out += self.caller_frames(timeline, 0.32, 5)
        caller, _ = channels(out)
        self.assertEqual(first_sound(caller), 10 * FRAME)
        self.assertEqual(len(caller), 21 * FRAME)
        self.assertEqual((timeline.caller_silence_filled, timeline.caller_dropped), (0, 0))

    def test_frames_that_never_came_are_silence_so_what_follows_stays_on_the_clock(self) -> None:
        timeline = Timeline(0.0)
        out = self.caller_frames(timeline, 0.0, 10)  # to 200 ms
        out += timeline.caller(LOUD, 1.02)  # nothing for 800 ms: the frame of 1.0..1.02 s
        caller, _ = channels(out)
        self.assertEqual(first_sound(caller), SAMPLE_RATE)  # at 1.0 s, as the clock says
        self.assertEqual(timeline.caller_silence_filled, round(0.8 * SAMPLE_RATE))

    def test_a_channel_ahead_of_the_clock_drops_frames_until_it_is_back(self) -> None:
        timeline = Timeline(0.0)
        out = b""
        for _ in range(50):  # a sender twice as fast as real time for 1 s of audio
            out += timeline.caller(QUIET, len(out) / 4 / SAMPLE_RATE / 2 + 0.01)
        limit = round(DRIFT_LIMIT_S * SAMPLE_RATE)
        self.assertGreater(timeline.caller_dropped, 0)
        self.assertLessEqual(timeline.written - timeline.position(0.5), limit + FRAME)

    def test_finish_writes_up_to_the_end_and_drops_what_never_played(self) -> None:
        timeline = Timeline(0.0)
        out = self.caller_frames(timeline, 0.0, 10)
        timeline.bot(LOUD * 50, 0.2)  # 1 s of goodbye, the call ends 0.5 s into it
        out += timeline.finish(0.7)
        caller, bot = channels(out)
        self.assertEqual(len(bot), round(0.7 * SAMPLE_RATE))
        self.assertEqual(last_sound(bot), round(0.7 * SAMPLE_RATE) - 1)
        self.assertEqual(timeline.bot_cleared, round(0.5 * SAMPLE_RATE))
        self.assertEqual(timeline.unplayed_bot_samples, 0)

    def test_alignment_of_speech_and_reply_within_20_ms(self) -> None:
        """The caller speaks 1.00..1.40 s, the bot answers at 2.00 s: both land where the
        clock put them, to the frame."""
        timeline = Timeline(50.0)
        out = b""
        for i in range(150):
            at = 50.0 + (i + 1) * 0.02
            if at == 50.0 + 2.0:
                timeline.bot(LOUD * 25, at)
            out += timeline.caller(LOUD if 50 <= i < 70 else QUIET, at)
        caller, bot = channels(out)
        self.assertLessEqual(abs(first_sound(caller) / SAMPLE_RATE - 1.0), 0.02)
        self.assertLessEqual(abs((last_sound(caller) + 1) / SAMPLE_RATE - 1.4), 0.02)
        self.assertLessEqual(abs(first_sound(bot) / SAMPLE_RATE - 2.0), 0.02)


class WavTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "call.wav")

    def test_a_file_whose_writer_never_closed_it_plays_up_to_the_last_append(self) -> None:
        wav = WavFile(self.path)
        one_second = struct.pack("<hh", 1000, -1000) * SAMPLE_RATE
        wav.append(one_second)
        wav.append(one_second[: 4 * 800])  # and 100 ms more
        # No close: as a crash leaves it. Another reader (the stdlib) opens it.
        with wave.open(self.path) as reader:
            self.assertEqual((reader.getnchannels(), reader.getsampwidth(), reader.getframerate()), (2, 2, 8000))
            self.assertEqual(reader.getnframes(), SAMPLE_RATE + 800)
            self.assertEqual(reader.readframes(1), struct.pack("<hh", 1000, -1000))
        self.assertEqual(os.path.getsize(self.path), HEADER_BYTES + 4 * (SAMPLE_RATE + 800))
        wav.close()

    def test_a_new_file_is_an_empty_playable_wav(self) -> None:
        WavFile(self.path).close()
        with wave.open(self.path) as reader:
            self.assertEqual(reader.getnframes(), 0)

    def test_half_a_sample_is_not_written(self) -> None:
        wav = WavFile(self.path)
        self.assertEqual(wav.append(b"\1\2\3\4\5\6"), 4)
        wav.close()
        with wave.open(self.path) as reader:
            self.assertEqual(reader.getnframes(), 1)

    def test_only_voiceds_user_may_read_it(self) -> None:
        WavFile(self.path).close()
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_an_existing_file_is_never_overwritten(self) -> None:
        WavFile(self.path).close()
        self.assertRaises(FileExistsError, WavFile, self.path)

    def test_append_after_close_is_an_error(self) -> None:
        wav = WavFile(self.path)
        wav.close()
        self.assertRaises(ValueError, wav.append, b"\0\0\0\0")


class WriterTests(TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.writer = RecordingWriter(reactor, max_pending_bytes=64 * 1024)
        self.writer.start()
        self.addCleanup(self.writer.stop)

    @inlineCallbacks
    def test_the_thread_writes_files_in_order_and_closes_them_when_stopped(self) -> None:
        paths = [os.path.join(self.dir, "day", f"{n}.wav") for n in range(3)]
        for n, path in enumerate(paths):
            self.assertTrue(self.writer.open(path))
            self.writer.append(path, struct.pack("<hh", n, n) * 1000)
        self.writer.close(paths[0])
        yield self.writer.stop()
        self.assertFalse(self.writer.running)
        for n, path in enumerate(paths):  # the two never closed were closed by stop
            with wave.open(path) as reader:
                self.assertEqual(reader.getnframes(), 1000)
                self.assertEqual(reader.readframes(1), struct.pack("<hh", n, n))
        self.assertEqual(self.writer.pending_bytes, 0)
        self.assertFalse(self.writer.open(os.path.join(self.dir, "late.wav")))  # stopped: nothing more

    @inlineCallbacks
    def test_close_fires_once_the_file_is_whole_on_disk(self) -> None:
        path = os.path.join(self.dir, "whole.wav")
        self.writer.open(path)
        for _ in range(3):
            self.writer.append(path, struct.pack("<hh", 7, 7) * 1000)
        yield self.writer.close(path)
        self.assertTrue(self.writer.running)  # closed by its own close, not by a stop
        with wave.open(path) as reader:
            self.assertEqual(reader.getnframes(), 3000)
        yield self.writer.stop()
        self.assertTrue(self.writer.close(path).called)  # a stopped writer closed every file already

    @inlineCallbacks
    def test_a_full_queue_drops_audio_but_writes_as_much_silence(self) -> None:
        path = os.path.join(self.dir, "full.wav")
        self.writer.open(path)
        chunk = struct.pack("<hh", 500, 500) * 8000  # 32 KB
        accepted = [self.writer.append(path, chunk) for _ in range(8)]  # 256 KB at once, 64 KB allowed
        self.assertIn(False, accepted)
        self.assertGreater(self.writer.dropped_bytes, 0)
        self.assertLessEqual(self.writer.pending_bytes, 64 * 1024)
        yield self.writer.stop()
        with wave.open(path) as reader:
            self.assertEqual(reader.getnframes(), 8 * 8000)  # in time: every chunk's length is there

    @inlineCallbacks
    def test_a_file_that_cannot_be_created_fails_alone(self) -> None:
        blocker = os.path.join(self.dir, "not-a-dir")
        open(blocker, "w").close()
        bad, good = os.path.join(blocker, "x.wav"), os.path.join(self.dir, "ok.wav")
        self.writer.open(bad)
        self.writer.append(bad, b"\0" * 400)
        self.writer.open(good)
        self.writer.append(good, b"\0" * 400)
        yield self.writer.stop()
        with wave.open(good) as reader:
            self.assertEqual(reader.getnframes(), 100)
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_the_sweep_deletes_only_old_recordings(self) -> None:
        old, new, other = (os.path.join(self.dir, "2020-01-01", "a.wav"), os.path.join(self.dir, "today", "b.wav"),
                           os.path.join(self.dir, "2020-01-01", "notes.txt"))
        for path in (old, new, other):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
        long_ago = time.time() - 40 * 86400
        os.utime(old, (long_ago, long_ago))
        removed = yield self.writer.sweep(self.dir, 30 * 86400)
        self.assertEqual(removed, 1)
        self.assertEqual((os.path.exists(old), os.path.exists(new), os.path.exists(other)), (False, True, True))


class FakeRecord:
    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.recording = ""


class FakeCall:
    """What Recordings.open reads of a call: its id and its record."""

    def __init__(self, call_id: str, started_at: float) -> None:
        self.call_id = call_id
        self.record = FakeRecord(started_at)


class TapTests(TestCase):
    @inlineCallbacks
    def test_a_call_is_written_a_second_at_a_time_and_finished_at_its_end(self) -> None:
        directory = tempfile.mkdtemp()
        clock = Clock()
        clock.advance(1000.0)
        recordings = Recordings(directory, 30, clock, wall_clock=lambda: 1_700_000_000.0,
                                writer=RecordingWriter(reactor))
        recordings.start()
        call = FakeCall("CA/../1", clock.seconds())
        tap = recordings.open(call)
        self.assertIsNotNone(tap)
        self.assertEqual(call.record.recording, tap.path)
        self.assertTrue(tap.path.startswith(os.path.join(os.path.abspath(directory), "2023-11-14", "221320-CA_.._1-")))
        self.assertNotIn("/../", tap.path)
        for i in range(75):  # 1.5 s: one second handed to the writer, half a second held
            clock.advance(0.02)
            tap.caller(LOUD)
            if i == 10:
                tap.bot(LOUD * 10)
        self.assertEqual(len(tap._pending), 75 * 4 * FRAME - FLUSH_BYTES)
        clock.advance(0.5)  # the caller's frames stop; the call ends half a second later
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        tap.close()
        tap.caller(LOUD)  # after the end: ignored
        self.assertNotIn("RECORDING call=", "".join(formatEvent(e) for e in logged))  # the file is not whole yet
        yield recordings.stop()
        self.assertIn(f"RECORDING call=CA/../1 path={tap.path} seconds=2.0",
                      "".join(formatEvent(e) for e in logged))  # once the writer closed it
        with wave.open(tap.path) as reader:
            self.assertEqual(reader.getnframes(), 2 * SAMPLE_RATE)
            caller, bot = channels(reader.readframes(reader.getnframes()))
        self.assertEqual(last_sound(caller), round(1.5 * SAMPLE_RATE) - 1)
        self.assertEqual(first_sound(bot), 11 * FRAME)
        self.assertEqual(recordings.readable(tap.path), os.path.realpath(tap.path))
        self.assertIsNone(recordings.readable(os.path.join(directory, "..", "elsewhere.wav")))
        self.assertIsNone(recordings.readable(""))

    def test_file_names_are_a_day_folder_and_a_safe_name(self) -> None:
        self.assertEqual(file_name("CA123", 0.0, "abcdef"), os.path.join("1970-01-01", "000000-CA123-abcdef.wav"))
        self.assertEqual(file_name("../..", 0.0, "abcdef"), os.path.join("1970-01-01", "000000-call-abcdef.wav"))

    @inlineCallbacks
    def test_the_daily_sweep_runs_at_start_and_every_day(self) -> None:
        directory = tempfile.mkdtemp()
        clock = Clock()
        recordings = Recordings(directory, 1, clock, writer=RecordingWriter(reactor))
        old = os.path.join(directory, "2020-01-01", "a.wav")
        os.makedirs(os.path.dirname(old))
        open(old, "wb").close()
        os.utime(old, (0, 0))
        recordings.start()
        yield recordings.writer.sweep(directory, 1e9)  # waits behind the start's sweep
        self.assertFalse(os.path.exists(old))
        self.assertFalse(os.path.exists(os.path.dirname(old)))  # its emptied day folder too
        again = os.path.join(directory, "2020-01-02", "b.wav")
        os.makedirs(os.path.dirname(again))
        open(again, "wb").close()
        os.utime(again, (0, 0))
        clock.advance(24 * 3600)  # a day later
        yield recordings.writer.sweep(directory, 1e9)
        self.assertFalse(os.path.exists(again))
        yield recordings.stop()
        self.assertFalse(recordings._sweeper.running)
