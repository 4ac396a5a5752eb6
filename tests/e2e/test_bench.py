"""The in-process benchmark still runs against the current code (its numbers are not judged here)."""

import json
import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.daemon import REPO


class FrameCostBenchTests(SynchronousTestCase):
    def test_frame_cost_runs_and_reports_every_row(self):
        out = os.path.join(tempfile.mkdtemp(), "frame_cost.json")
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "bench", "frame_cost.py"), "--call-seconds", "10", "--passes", "1",
             "--turns", "20", "--json", out],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        self.assertIn("calls/core", done.stdout)
        with open(out) as f:
            report = json.load(f)
        self.assertEqual(set(report), {"inbound", "outbound", "budget", "turns"})


class ScaleBenchTests(SynchronousTestCase):
    def test_scale_runs_two_calls_and_writes_its_table(self):
        out = os.path.join(tempfile.mkdtemp(), "scale.md")
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "bench", "scale.py"), "--calls", "2", "--turns", "1",
             "--no-frame-cost", "--out", out],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        with open(os.path.splitext(out)[0] + ".json") as f:
            [row] = json.load(f)["rows"]
        self.assertEqual((row["n"], row["turns"], row["unanswered_turns"], row["failed_turns"]), (2, 2, 0, 0))
        self.assertEqual(set(row["lag_p99_ms"]), {"reactor", "speech_loop"})
        self.assertTrue(os.path.exists(os.path.splitext(out)[0] + ".png"))
