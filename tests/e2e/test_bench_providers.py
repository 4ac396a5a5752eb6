"""bench/providers.py still runs against the current code and the fakes (its numbers are not judged here)."""

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.daemon import REPO


class ProvidersBenchTests(SynchronousTestCase):
    def test_one_provider_one_call_every_turn_measured(self):
        # ElevenLabs' row runs two fakes (Deepgram's STT too); the other rows differ only in their fake.
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "bench", "providers.py"), "--providers", "elevenlabs",
             "--calls", "1"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
        self.assertIn("| 3/3 |", rows["elevenlabs"])
