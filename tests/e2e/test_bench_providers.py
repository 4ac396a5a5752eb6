"""bench/providers.py still runs against the current code and the fakes (its numbers are not judged here)."""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.daemon import REPO


class ProvidersBenchTests(SynchronousTestCase):
    def test_two_providers_one_call_each_every_turn_measured(self):
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "bench", "providers.py"), "--providers", "elevenlabs,realtime",
             "--calls", "1"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
        self.assertIn("| 3/3 |", rows["elevenlabs"])
        self.assertIn("| 3/3 |", rows["realtime"])
