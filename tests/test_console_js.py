"""The console's JS codec, resamplers and latency arithmetic, run with node when it is
installed (never required: without node this is skipped; the browser test runs the
same code in Chromium). The mu-law tables to match come from voiced's own codec."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from voiced.audio import pcm16_to_ulaw, ulaw_to_pcm16

HERE = os.path.dirname(os.path.abspath(__file__))


class ConsoleJavaScriptTests(SynchronousTestCase):
    def test_codec_and_latency_modules(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise SkipTest("node is not installed; the console's JS is still exercised by the browser test")
        expected = {
            "encode": list(pcm16_to_ulaw(struct.pack("<65536h", *range(-32768, 32768)))),
            "decode": list(struct.unpack("<256h", ulaw_to_pcm16(bytes(range(256))))),
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(expected, f)
        self.addCleanup(os.unlink, f.name)
        run = subprocess.run([node, os.path.join(HERE, "js", "codec.test.mjs"), f.name], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("passed", run.stdout)
