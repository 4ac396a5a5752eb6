"""The local playout clock (voiced.carrier.playout): pacing, markers, clear, on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from voiced.carrier.playout import LEAD_MS, Playout

FRAME = 320  # 20 ms of 8 kHz 16-bit PCM


class PlayoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.written: list[tuple[float, int]] = []
        self.played: list[tuple[float, str]] = []
        self.playout = Playout(self.clock, FRAME, lambda b: self.written.append((self.clock.seconds() - 100, len(b))),
                               lambda name: self.played.append((round(self.clock.seconds() - 100, 3), name)))

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            self.clock.advance(0.01)

    def test_audio_is_paced_in_real_time_a_little_ahead(self) -> None:
        self.playout.audio(b"\0" * FRAME * 50)  # one second
        self.assertEqual(len(self.written), LEAD_MS // 20)  # written ahead at once, no more
        self.run_for(0.5)
        ahead = sum(n for _, n in self.written) / FRAME * 0.02 - 0.5
        self.assertAlmostEqual(ahead, LEAD_MS / 1000, delta=0.021)
        self.run_for(1.0)
        self.assertEqual(sum(n for _, n in self.written), FRAME * 50)
        self.assertEqual({n for _, n in self.written}, {FRAME})
        self.assertTrue(self.playout.idle)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_marker_fires_when_the_audio_before_it_has_played(self) -> None:
        self.playout.mark("r1.start")
        self.playout.audio(b"\0" * FRAME * 10)  # 200 ms
        self.playout.mark("r1.s0")
        self.playout.audio(b"\0" * FRAME * 5)  # 100 ms
        self.playout.mark("r1.end")
        self.run_for(1.0)
        self.assertEqual(self.played, [(0.0, "r1.start"), (0.2, "r1.s0"), (0.3, "r1.end")])

    def test_a_part_frame_before_a_marker_is_sent_short(self) -> None:
        self.playout.audio(b"\0" * (FRAME + 100))
        self.playout.mark("m")
        self.playout.audio(b"\0" * FRAME)
        self.run_for(0.2)
        self.assertEqual([n for _, n in self.written], [FRAME, 100, FRAME])
        self.assertEqual([name for _, name in self.played], ["m"])

    def test_clear_drops_the_queue_and_its_markers(self) -> None:
        self.playout.audio(b"\0" * FRAME * 50)
        self.playout.mark("r1.end")
        self.run_for(0.2)
        self.playout.clear()
        written = len(self.written)
        self.run_for(1.0)
        self.assertEqual((len(self.written), self.played), (written, []))
        self.playout.audio(b"\0" * FRAME)  # the next reply plays at once
        self.playout.mark("r2.end")
        self.run_for(0.1)
        self.assertEqual([name for _, name in self.played], ["r2.end"])
        self.assertLessEqual(self.played[0][0], 1.2 + LEAD_MS / 1000 + 0.03)

    def test_stop_leaves_no_timer(self) -> None:
        self.playout.audio(b"\0" * FRAME * 50)
        self.playout.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
