"""End to end over Asterisk AudioSocket: a real daemon (twistd) with ``--audiosocket-listen``
and ``--audiosocket-secret``, voiced-call speaking Asterisk's side over plain TCP, the
local engines. One call: the greeting, a key press, a turn answered, a barge-in (the bot
stops: AudioSocket has no clear, voiced stops sending), the bot's hang-up frame, the
journal's record. An unsigned call UUID is refused with an error frame (voiced-call's CLI).
Then ``--workers 2`` shares the AudioSocket port between its workers."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tempfile
import time
import uuid

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, BIN, Daemon, line, logged
from voiced.caller.carriers.audiosocket import AudioSocketCall
from voiced.caller.client import place_call
from voiced.caller.session import CallerLine
from voiced.carrier.audiosocket import wire
from voiced.demo import free_port

SECRET = "e2e-audiosocket-secret-0123"


def voiced_call(*args: str, env: dict[str, str]) -> tuple[int, dict]:
    done = subprocess.run([os.path.join(BIN, "voiced-call"), *args, "--json", "--no-transcribe"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    return done.returncode, json.loads(done.stdout)


class AudioSocketCallTests(TestCase):
    timeout = 120

    def daemon(self, *args: str) -> Daemon:
        self.tcp_port = free_port()
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-e2e-"), "calls.db")
        daemon = Daemon(args=["--audiosocket-listen", f"tcp:{self.tcp_port}:interface=127.0.0.1",
                              "--audiosocket-secret", SECRET, "--journal", self.journal, *args])
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        return daemon

    @inlineCallbacks
    def test_a_call_over_audiosocket(self):
        daemon = self.daemon()
        url = f"tcp://127.0.0.1:{self.tcp_port}"
        kinds: list[int] = []

        class Observed(AudioSocketCall):
            def __init__(self, call: uuid.UUID) -> None:
                super().__init__(call)
                self._seen = wire.FrameSplitter()

            def read(self, data: bytes, is_binary: bool):
                kinds.extend(kind for kind, _ in self._seen.feed(data))
                return super().read(data, is_binary)

        report = yield place_call(reactor, url, [
            CallerLine(b"", "[dtmf 0]", dtmf="0"),
            line("Where are you located?"),
            line("Thank you, goodbye.", barge_in_ms=700),
        ], carrier=Observed, auth_token=SECRET, reply_timeout_s=20)
        call = report.call_sid
        self.assertEqual(report.errors, [])
        yield logged(daemon, f"CALL_END call={call} ", 1)  # the log writer is a moment behind
        bot = [entry for entry in daemon.lines(" BOT ") if f"call={call}" in entry]
        self.assertIn("Riverside Clinic", bot[0])  # the greeting
        self.assertTrue(any(f"DTMF call={call} digit=0" in entry for entry in daemon.lines("DTMF")))
        self.assertIn("receptionist", bot[1])  # the key's answer
        self.assertIn("42 River Road", bot[2])  # the turn answered
        self.assertIn("actions=EndCall", bot[-1])
        # The barge-in: the bot stopped sending within a few frames of its decision.
        self.assertTrue(any(f"BARGE_IN call={call}" in entry for entry in daemon.lines("BARGE_IN")))
        barge = report.turns[-1]
        address = next(r for r in report.replies if r.play_start_s < barge.speech_start_s < r.end_s + 0.05)
        # BARGE_IN_MS of speech, then at most the playout's 60 ms lead (measured: 10 ms over it).
        self.assertLess(address.end_s - barge.speech_start_s, (BARGE_IN_MS + 240) / 1000)
        self.assertLess(address.end_s - address.play_start_s, 4.0, "the address reply was cut short")
        # The bot's hang-up, Asterisk's way: a hang-up frame, and only audio before it.
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(kinds[-1], wire.HANG_UP)
        self.assertEqual(set(kinds[:-1]), {wire.AUDIO_8K})
        rows = yield deferToThread(self.journal_rows, 1)
        self.assertEqual(rows, [(call, "", "audiosocket", "local", 3)])  # the key, the question, the goodbye

        # An unsigned call UUID: an error frame and the close, before any call state.
        unsigned = str(uuid.uuid4())
        code, out = yield deferToThread(voiced_call, "--carrier", "audiosocket", url, "--call-sid", unsigned,
                                        "--dtmf", "1", env={"VOICED_AUDIOSOCKET_SECRET": ""})
        refused = out["calls"][0]
        self.assertEqual((code, refused["hung_up_by_bot"]), (1, True))
        self.assertEqual(refused["errors"], [f"daemon sent an error frame (code {wire.ERROR_REFUSED:02x})"])
        self.assertTrue(any(unsigned in entry for entry in (yield logged(daemon, f"MEDIA_REJECTED carrier=audiosocket uuid={unsigned}", 1))))
        self.assertEqual(len((yield deferToThread(self.journal_rows))), 1)

    def journal_rows(self, at_least: int = 0) -> list[tuple]:
        """The journal's calls, once it has ``at_least`` (its writer commits just after a call ends)."""
        deadline = time.monotonic() + 10
        while True:
            conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)
            try:
                rows = conn.execute("SELECT call_sid, stream_sid, carrier, playout, turn_count FROM calls "
                                    "ORDER BY id").fetchall()
            finally:
                conn.close()
            if len(rows) >= at_least or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    @inlineCallbacks
    def test_workers_share_the_audiosocket_port(self):
        daemon = self.daemon("--workers", "2")
        listening = daemon.lines("LISTENING --audiosocket-listen")
        self.assertEqual(len(listening), 1)
        self.assertIn("shared by 2 workers", listening[0])
        report = yield place_call(reactor, f"tcp://127.0.0.1:{self.tcp_port}", [line("Goodbye.")],
                                  carrier="audiosocket", auth_token=SECRET, reply_timeout_s=20)
        self.assertEqual(report.errors, [])
        self.assertTrue(report.hung_up_by_bot)
        self.assertEqual(len(daemon.lines("CALL_WORKER")), 1)
