"""The console plays a recorded call in a real browser: headless Chromium opens the call
view of a call placed by voiced-call against a daemon with --recordings, the <audio>
player loads the call's recording (through the console's route, seeking by Range), and
a click on a transcript line moves the player to that line's time. A screenshot goes to
test-artifacts/recording/. Skipped without Chromium, saying how to install it.
"""

from __future__ import annotations

import json
import os
import tempfile
import wave

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.e2e.chromium import INSTALL_HINT, Chromium, find_chromium
from tests.e2e.daemon import REPO, Daemon, line
from voiced.caller.client import place_call

PLAYER = "document.getElementById('recording')"
SEEK_POINTS = "[...document.querySelectorAll('#transcript [data-at]')]"


def artifacts_dir() -> str:
    path = os.path.join(os.environ.get("TEST_ARTIFACTS_DIR") or os.path.join(REPO, "test-artifacts"), "recording")
    os.makedirs(path, exist_ok=True)
    return path


class RecordingPlayerBrowserTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        if find_chromium() is None:
            raise SkipTest(INSTALL_HINT)
        self.artifacts = artifacts_dir()
        self.daemon = Daemon(args=["--recordings", tempfile.mkdtemp(prefix="voiced-recordings-")])
        self.addCleanup(self.daemon.stop)
        self.daemon.wait_ready()
        microphone = os.path.join(self.artifacts, "silence.wav")  # the page never calls: a quiet microphone
        with wave.open(microphone, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(48000)
            w.writeframes(b"\0\0" * 48000)
        self.browser = Chromium(reactor, microphone, self.artifacts)
        self.addCleanup(self.browser.stop)

    @inlineCallbacks
    def test_the_call_view_plays_the_recording_and_its_lines_seek(self):
        report = yield place_call(reactor, self.daemon.media_url,
                                  [line("What time do you open?"), line("Thank you, goodbye.")])
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot)
        base = f"http://127.0.0.1:{self.daemon.port}"
        yield self.browser.connect()
        yield self.browser.navigate(f"{base}/console/calls?call={report.call_sid}")
        # The player is shown, and has read the file's header (its duration) through the route.
        duration = yield self.browser.wait_for(f"!{PLAYER}.hidden && {PLAYER}.readyState >= 1 && {PLAYER}.duration",
                                               15)
        self.assertTrue(duration, f"no playable recording on the page: {self.browser.console_messages()}")
        self.assertGreater(duration, 5)
        points = json.loads((yield self.browser.evaluate(
            f"JSON.stringify({SEEK_POINTS}.map(e => [e.dataset.role, Number(e.dataset.at)]))")))
        self.assertEqual([role for role, _ in points], ["caller", "bot", "caller", "bot"], points)
        times = [at for _, at in points]
        self.assertEqual(times, sorted(times), "the lines' times follow the call")
        self.assertLess(times[-1], duration)

        # A click on the second caller line moves the player there (and plays from there).
        target = times[2]
        yield self.browser.evaluate(f"{SEEK_POINTS}[2].click()")
        seeked = yield self.browser.wait_for(
            f"!{PLAYER}.seeking && {PLAYER}.currentTime >= {target - 0.05} && {PLAYER}.currentTime < {target + 3}"
            f" ? {PLAYER}.currentTime : null", 10)
        yield self.browser.screenshot("calls-recording.png")
        self.assertTrue(seeked, f"the player did not seek to {target} s: "
                                f"{(yield self.browser.evaluate(f'{PLAYER}.currentTime'))} "
                                f"{self.browser.console_messages()}")
        # And back to the first bot line: an earlier time, so it is the click, not the playing.
        target = times[1]
        yield self.browser.evaluate(f"{SEEK_POINTS}[1].click()")
        seeked = yield self.browser.wait_for(
            f"!{PLAYER}.seeking && {PLAYER}.currentTime >= {target - 0.05} && {PLAYER}.currentTime < {times[2]}"
            f" ? {PLAYER}.currentTime : null", 10)
        self.assertTrue(seeked, f"the player did not seek back to {target} s")
