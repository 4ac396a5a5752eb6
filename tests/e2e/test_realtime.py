"""End to end with VOICED_AGENT=realtime: a real daemon (twistd, a separate process) talks to
the loopback Realtime fake (tests/fakes/realtime_server.py, in this process: a real WebSocket
server speaking /v1/realtime), a tool runs at a loopback tools URL, and the call is placed by
voiced-call's library over a real WebSocket with Twilio's framing and timing.

What the fake cannot tell is the model's quality or OpenAI's own latency: it answers at once
and streams at twice real time, so the turn times here are the daemon's (and the loopback's)
share of a turn."""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import BARGE_IN_MS, Daemon, constructions, line, logged
from tests.fakes.http_apps import Canned, RecordingApp, start_server
from tests.fakes.realtime_server import RealtimeFake
from voiced.caller.client import place_call
from voiced.signing import verify

KEY = "sk-realtime-e2e-0123456789abcdef"
HOURS = ("We are open Monday to Friday from eight in the morning until six in the evening, and on "
         "Saturday from nine until noon, closed on Sunday and on public holidays.")
QUESTION, INTERRUPTION = "What are your opening hours?", "Thanks, that is all, goodbye."


class RealtimeCallTests(TestCase):
    timeout = 150

    def start(self, fake: RealtimeFake, **env: str) -> Daemon:
        fake.listen()
        self.addCleanup(fake.stop)
        self.journal = os.path.join(tempfile.mkdtemp(prefix="voiced-realtime-"), "calls.db")
        daemon = Daemon(env={"VOICED_AGENT": "realtime", "VOICED_OPENAI_REALTIME_URL": fake.url,
                             "OPENAI_API_KEY": KEY, "VOICED_JOURNAL": self.journal, **env})
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        return daemon

    def turn_rows(self, call_sid: str) -> list[tuple]:
        deadline = time.monotonic() + 10
        while True:
            conn = sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True)
            try:
                rows = conn.execute(
                    "SELECT t.number, t.caller_text, t.reply_text, t.heard_text, t.interrupted FROM turns t "
                    "JOIN calls c ON c.id = t.call_id WHERE c.call_sid = ? ORDER BY t.seq", (call_sid,)).fetchall()
            finally:
                conn.close()
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    @inlineCallbacks
    def test_a_tool_answer_streams_a_barge_in_truncates_at_what_was_heard(self):
        tools_app = RecordingApp()
        tools_app.answer(Canned.json({"hours": HOURS}))
        tools = start_server(self, tools_app)
        tools_file = os.path.join(tempfile.mkdtemp(), "tools.json")
        with open(tools_file, "w") as f:
            json.dump([{"type": "function", "function": {"name": "opening_hours", "description": "The hours",
                                                         "parameters": {"type": "object", "properties": {}}}}], f)
        fake = RealtimeFake(api_key=KEY, greeting="Hello, front desk.", heard=[QUESTION, INTERRUPTION],
                            replies=[{"tool": "opening_hours"}, "Goodbye then."])
        daemon = self.start(fake, VOICED_TOOLS_FILE=tools_file, VOICED_TOOLS_URL=tools.url("/tools"),
                            VOICED_WEBHOOK_SECRET="k")
        report = yield place_call(reactor, daemon.media_url,
                                  [line(QUESTION), line(INTERRUPTION, barge_in_ms=1500)], reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        sid = report.call_sid

        # The tool ran at the tools URL, signed, and its answer is what the model spoke.
        [request] = tools_app.received
        self.assertTrue(verify("k", request.body, request.headers.get("x-voiced-signature")))
        self.assertEqual((request.json()["tool"], request.json()["call"]["sid"]), ("opening_hours", sid))
        tool_reply = next(r for r in fake.responses if r["status"] == "cancelled")

        # Its first audio reached the caller while the fake was still streaming it.
        answer = next(r for r in report.replies if r.interrupted)
        self.assertLess(report.opened_at + answer.first_audio_s, tool_reply["ended_at"])

        # The barge-in: clear at once, and the model's item truncated at what the caller played.
        self.assertEqual(len(report.clears), 1)
        observed = report.turns[1]
        self.assertLessEqual(observed.clear_after_onset_ms, BARGE_IN_MS + 200)
        [truncate] = fake.truncates
        self.assertEqual(truncate["item_id"], tool_reply["item"])
        played_ms = (answer.end_s - answer.play_start_s) * 1000
        self.assertLessEqual(abs(truncate["audio_end_ms"] - played_ms), 100, (truncate, played_ms))
        print(f"\nREALTIME truncate audio_end_ms={truncate['audio_end_ms']} caller played {played_ms:.0f} ms")
        self.assertLess(truncate["audio_end_ms"], truncate["audio_sent_ms"])

        # Both sides' transcripts: the log lines and the journal, the bot's as heard.
        yield logged(daemon, f"CALL_END call={sid} ", 1)  # the log writer is a moment behind
        callers = [e for e in daemon.lines(" CALLER ") if f"call={sid}" in e]
        self.assertIn(QUESTION, callers[0])
        self.assertIn(INTERRUPTION, callers[1])
        rows = self.turn_rows(sid)
        self.assertEqual([r[1] for r in rows], [QUESTION, INTERRUPTION])
        number, _, reply_text, heard_text, interrupted = rows[0]
        self.assertTrue(reply_text.startswith("Tool said"), reply_text)
        self.assertTrue(interrupted)
        self.assertTrue(heard_text and reply_text.startswith(heard_text) and heard_text != reply_text,
                        (heard_text, reply_text))
        self.assertEqual(rows[1][2], "Goodbye then.")
        turns = [e for e in daemon.lines(" TURN ") if f"call={sid}" in e]
        self.assertEqual(len(turns), 2)
        self.assertRegex(turns[0], r"TOTAL_LATENCY_MS=\d+ PLAYBACK_START_MS=\d+")
        print(f"\nREALTIME voiced turns: caller-observed speech end -> first reply audio "
              f"{[round(t.first_reply_audio_ms or -1) for t in report.turns]} ms; {turns}")

        self.assertEqual(daemon.lines("REALTIME_REFUSED"), [], "no client event the model refused")
        # One connector for the process; the key never in the log.
        self.assertEqual(constructions(daemon).get("realtime_connector"), 1.0)
        self.assertNotIn(KEY, daemon.log())
        session = fake.sessions[0].session
        self.assertEqual((session["input_audio_format"], session["output_audio_format"]), ("g711_ulaw", "g711_ulaw"))

    @inlineCallbacks
    def test_server_turn_detection(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hello, front desk.", heard=[QUESTION, "Goodbye."],
                            replies=["We open at nine.", "Goodbye!"])
        daemon = self.start(fake, VOICED_REALTIME_TURN_DETECTION="server")
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION), line("Goodbye.")],
                                  reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(fake.sessions[0].session["turn_detection"]["type"], "server_vad")
        self.assertEqual(fake.received.count("input_audio_buffer.commit"), 0, "the model's VAD commits")
        self.assertEqual(fake.commits, 2)
        self.assertEqual(len(report.replies), 3)
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        turns = [e for e in daemon.lines(" TURN ") if f"call={report.call_sid}" in e]
        self.assertEqual(len(turns), 2)
        print(f"\nREALTIME server turns: caller-observed speech end -> first reply audio "
              f"{[round(t.first_reply_audio_ms or -1) for t in report.turns]} ms; {turns}")

    @inlineCallbacks
    def test_a_session_lost_mid_call_comes_back_and_the_call_goes_on(self):
        fake = RealtimeFake(api_key=KEY, greeting="Hello, front desk.", heard=[QUESTION, "Goodbye."],
                            replies=["We open at nine."])
        daemon = self.start(fake)
        # Once the greeting is under way, the next response (the first turn's) closes the socket with 1011.
        fake.when(lambda: fake.responses).addCallback(lambda _: fake.fail_next(1011))
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION), line("Goodbye.")], reply_timeout_s=15)
        self.assertEqual(report.errors, [])
        self.assertEqual(len(fake.sessions), 2)
        [reconnect] = daemon.lines("REALTIME_RECONNECT")
        self.assertIn(f"call={report.call_sid}", reconnect)
        self.assertIn("1011", reconnect)
        # The apology answered the lost turn; the new session heard the call so far and answered the next.
        self.assertEqual(len(daemon.lines("REALTIME_APOLOGY")), 1)
        resent = [(i["role"], i["content"][0]["text"]) for i in fake.sessions[1].items]
        self.assertIn(("assistant", "Hello, front desk."), resent)
        bot = [e for e in daemon.lines(" BOT ") if f"call={report.call_sid}" in e]
        self.assertIn("We open at nine.", bot[-1])
        self.assertEqual(daemon.get("/health")[0], 200, "the daemon is unharmed")

    @inlineCallbacks
    def test_a_refused_key_ends_the_call_politely(self):
        fake = RealtimeFake(api_key="the-right-key")
        daemon = self.start(fake)
        report = yield place_call(reactor, daemon.media_url, [line(QUESTION)], reply_timeout_s=15)
        self.assertTrue(report.hung_up_by_bot, "the apology, then the hang-up")
        [failed] = yield logged(daemon, "REALTIME_FAILED", 1)
        self.assertIn(f"call={report.call_sid}", failed)
        self.assertIn("HTTP 401", failed)
        self.assertNotIn(KEY, daemon.log())
        yield deferToThread(lambda: None)
