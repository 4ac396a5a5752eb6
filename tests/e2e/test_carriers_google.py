"""Every carrier on the Google engines: one daemon with Google STT and TTS (the emulator
speaking Google's real gRPC API on loopback, its scripted recognizer so seven calls at
once stay cheap), and one call over each carrier's wire at the same time (voiced-call
speaking as Twilio, Telnyx, Plivo, Vonage, Exotel, Asterisk chan_websocket and Asterisk
AudioSocket): each greeting synthesized by Google TTS and heard, each turn transcribed by
Google STT and answered, and each record naming its carrier. The carriers' own e2e
modules cover the rest of each protocol on the local engines."""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, EmulatorProcess, line, logged
from voiced.caller.client import place_call
from voiced.demo import free_port

QUESTION = "What time do you open?"
WEBSOCKET_CARRIERS = ("twilio", "telnyx", "plivo", "vonage", "exotel", "asterisk")


class CarriersOnGoogleTests(TestCase):
    timeout = 240

    @inlineCallbacks
    def test_each_carrier_is_answered_on_the_google_engines(self):
        emulator = EmulatorProcess("--scripted", f"--transcript={QUESTION}", "--transcript=Thank you, goodbye.")
        self.addCleanup(emulator.kill)
        tcp_port = free_port()
        daemon = Daemon(args=["--audiosocket-listen", f"tcp:{tcp_port}:interface=127.0.0.1"],
                        env=emulator.google_env())
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        base = daemon.media_url.rsplit("/media", 1)[0]
        urls = {name: base + ("/media" if name == "twilio" else f"/media/{name}") for name in WEBSOCKET_CARRIERS}
        urls["audiosocket"] = f"tcp://127.0.0.1:{tcp_port}"
        names = list(urls)
        reports = yield gatherResults([
            place_call(reactor, urls[name], [line(QUESTION), line("Thank you, goodbye.")], carrier=name,
                       reply_timeout_s=20)
            for name in names
        ])
        for name, report in zip(names, reports):
            self.assertEqual(report.carrier, name)
            self.assertEqual(report.errors, [], name)
            self.assertTrue(report.replies and report.replies[0].audio, f"{name}: the greeting was heard")
            yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
            bot = [entry for entry in daemon.lines(" BOT ") if f"call={report.call_sid}" in entry]
            self.assertIn("Riverside Clinic", bot[0], name)
            self.assertTrue(any("8 AM" in entry for entry in bot[1:]), f"{name}: the turn is answered: {bot}")
            [carrier_line] = [entry for entry in daemon.lines("CARRIER") if f"call={report.call_sid}" in entry]
            self.assertIn(f"carrier={name} ", carrier_line)
            self.assertIn("actions=EndCall", bot[-1], name)
            self.assertTrue(report.hung_up_by_bot, f"{name}: the bot hung up the carrier's way")
        # Google did the work: every greeting and reply synthesized, every turn recognized by the emulator.
        self.assertRegex(emulator.log(), r"synthesis \d+")
        self.assertGreaterEqual(len(re.findall(r"STT_FIRST_PARTIAL_MS=\d+", daemon.log())), len(names))
