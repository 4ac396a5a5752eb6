"""End to end on the Google engines: a real daemon talks to `voiced-emulator` (a
separate process speaking Google's Speech and Text-to-Speech gRPC APIs) through
the real google-cloud client libraries, while faults are injected or the server
is killed and restarted mid-call."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.e2e.daemon import Daemon, EmulatorProcess, caller_texts, constructions, heard_table, line, logged
from voiced.caller.client import place_call
from voiced.config import Settings


@inlineCallbacks
def journal_turns(journal: str, count: int, timeout_s: float = 10.0):
    """The journal's turns once there are ``count`` (or the deadline's)."""
    for _ in range(int(timeout_s / 0.1)):
        turns = []
        if os.path.exists(journal):
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                turns = db.execute("SELECT caller_text, event, reply_text FROM turns ORDER BY seq").fetchall()
        if len(turns) >= count:
            return turns
        yield deferLater(reactor, 0.1, lambda: None)
    return turns


class GoogleEngineCallTests(TestCase):
    timeout = 240

    def start(self, *emulator_args: str, **env: str) -> tuple[EmulatorProcess, Daemon]:
        emulator = EmulatorProcess(*emulator_args)
        self.addCleanup(emulator.kill)
        daemon = Daemon(env=emulator.google_env(**env))
        self.addCleanup(daemon.stop)
        daemon.wait_ready()
        return emulator, daemon

    def answered_turns(self, daemon: Daemon, call_sid: str) -> int:
        return len([entry for entry in daemon.lines(" TURN ") if f"call={call_sid}" in entry])

    @inlineCallbacks
    def test_call_on_google_engines(self):
        emulator, daemon = self.start()
        report = yield place_call(reactor, daemon.media_url,
                                  [line("What time do you open?"), line("Thank you, goodbye.")])
        self.assertTrue(report.hung_up_by_bot, report.errors)
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        self.assertEqual(self.answered_turns(daemon, report.call_sid), 2)
        bot = [entry for entry in daemon.lines(" BOT ") if report.call_sid in entry]
        self.assertIn("Monday to Friday", bot[1])
        # The reply audio came from the emulator's SynthesizeSpeech (WAV header stripped).
        self.assertRegex(emulator.log(), r"synthesis \d+")
        self.assertRegex(daemon.log(), r"STT_FIRST_PARTIAL_MS=\d+")  # Google gives partials
        # The reactor's lag and the speech loop's round trip are measured all along (voiced.lag).
        metrics = daemon.get("/metrics")[1].decode()
        for histogram in ("voiced_reactor_lag_milliseconds", "voiced_speech_loop_round_trip_milliseconds"):
            count = re.search(rf"^{histogram}_count (\S+)$", metrics, re.M)
            self.assertTrue(count and float(count.group(1)) > 10, histogram)

    @inlineCallbacks
    def test_a_vonage_call_reaches_google_stt_as_linear16_16_khz(self):
        # Vonage streams 16 kHz L16 by default: Google gets that, not the 8 kHz mu-law the call hears.
        emulator, daemon = self.start()
        report = yield place_call(reactor, f"ws://127.0.0.1:{daemon.port}/media/vonage",
                                  [line("What time do you open?"), line("Thank you, goodbye.")], carrier="vonage")
        self.assertTrue(report.hung_up_by_bot, report.errors)
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        [carrier] = [entry for entry in daemon.lines("CARRIER") if f"call={report.call_sid}" in entry]
        self.assertIn("audio=pcm_s16le/16000 playout=carrier stt_audio=pcm_s16le/16000", carrier)
        self.assertEqual(self.answered_turns(daemon, report.call_sid), 2)
        bot = [entry for entry in daemon.lines(" BOT ") if report.call_sid in entry]
        self.assertIn("Monday to Friday", bot[1])  # the emulator recognized the 16 kHz question
        self.assertRegex(daemon.log(), rf"TURN call={report.call_sid} turn=1 STT_FIRST_PARTIAL_MS=\d+")
        self.assertEqual(daemon.lines("STT_DEGRADED"), [])  # the LINEAR16 config was accepted

    @inlineCallbacks
    def test_one_stream_in_three_unavailable_drops_nothing(self):
        # Rollover at 10 s (a 20 s stream limit behind it) makes several streams per call; one in three
        # fails after its first response, a partial: mid-utterance, so the retry must replay the words.
        said = [line("What time do you open?"), line("Where are you located?"), line("Do you take walk-ins?"),
                line("Goodbye.")]
        table = heard_table(*said)
        self.addCleanup(os.unlink, table)
        emulator, daemon = self.start("--scripted", "--heard", table, "--fail-status", "UNAVAILABLE",
                                      "--fail-every", "3", "--fail-after", "1", "--max-stream-s", "20",
                                      VOICED_STT_ROLLOVER_S="10")
        before = constructions(daemon)
        calls = [place_call(reactor, daemon.media_url, said, reply_timeout_s=15) for _ in range(3)]
        results = yield DeferredList(calls, consumeErrors=True)
        reports = [report for ok, report in results if ok]
        self.assertEqual(len(reports), 3)
        for report in reports:
            self.assertTrue(report.hung_up_by_bot, f"call {report.call_sid} was not completed: {report.errors}")
            yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
            self.assertEqual(self.answered_turns(daemon, report.call_sid), len(said))
            # Every word reached a stream that answered: the emulator transcribes a line only from its audio.
            heard = caller_texts([e for e in daemon.lines(" CALLER ") if f"call={report.call_sid} " in e])
            self.assertEqual(heard, [caller_line.text for caller_line in said])
        retries = daemon.lines("STT_RETRY")
        self.assertTrue(retries, "the injected UNAVAILABLE faults should have been retried")
        for entry in retries:
            self.assertRegex(entry, r"STT_RETRY call=CA\w+ error=ServiceUnavailable attempt=\d delay_ms=\d+")
        self.assertIn("failed", emulator.log())
        self.assertEqual(constructions(daemon), before)

    @inlineCallbacks
    def test_server_killed_and_restarted_mid_call(self):
        emulator, daemon = self.start()
        call = place_call(reactor, daemon.media_url, [
            line("What time do you open?"), line("Where are you located?"), line("Thank you, goodbye."),
        ], reply_timeout_s=15)
        # Kill the server while the first answer plays, bring it back 1.5 s later.
        yield deferLater(reactor, 9.0, emulator.kill)
        yield deferLater(reactor, 1.5, emulator.start)
        report = yield call
        self.assertTrue(report.hung_up_by_bot, report.errors)
        yield logged(daemon, f"CALL_END call={report.call_sid} ", 1)  # the log writer is a moment behind
        answered = self.answered_turns(daemon, report.call_sid)
        interim = len([e for e in daemon.lines(" BOT ") if report.call_sid in e and "reply=p" in e])
        self.assertEqual(answered + interim, 3, daemon.log()[-4000:])
        schedule = [int(m) for m in re.findall(r"STT_RETRY call=\S+ error=\w+ attempt=\d delay_ms=(\d+)", daemon.log())]
        self.assertTrue(schedule, "the reset should have been retried")
        self.assertLessEqual(max(schedule), 1600 * 1.1 + 1)

    @inlineCallbacks
    def test_a_hebrew_caller_whose_stt_always_fails_hears_an_answer_to_every_utterance(self):
        """Issue 18: no configuration leaves a caller in silence. Every stream fails, the
        bundled Whisper knows no Hebrew (no fallback): each of three utterances is still
        answered with a Hebrew phrase of the catalog, and each is a turn of the record."""
        journal = os.path.join(tempfile.mkdtemp(prefix="voiced-journal-"), "calls.db")
        emulator, daemon = self.start("--fail-status", "UNAVAILABLE", "--fail-every", "1",
                                      VOICED_LANGUAGE="he-IL", VOICED_STT_RETRY_ATTEMPTS="1", VOICED_JOURNAL=journal)
        report = yield place_call(reactor, daemon.media_url, [line("Shalom."), line("Ma nishma?"), line("Toda.")],
                                  reply_timeout_s=15, hangup_grace_s=1)
        self.assertTrue(report.connected, report.errors)
        self.assertEqual(len(report.turns), 3)
        for turn in report.turns:
            self.assertIsNotNone(turn.first_reply_audio_ms, (report.turns, daemon.log()[-4000:]))
        # The caller hung up: the daemon's end of the call (every line of it before), and its journal commit, follow.
        ended = yield logged(daemon, f"CALL_END call={report.call_sid}", 1)
        catalog = Settings.load({}, {"VOICED_LANGUAGE": "he-IL"}).phrase_catalog()
        hebrew = {catalog["interim"], catalog["ask_again"]}
        phrases = [e for e in daemon.lines("PHRASE") if report.call_sid in e]
        self.assertEqual(len(phrases), 3, daemon.log()[-4000:])
        for entry in phrases:
            self.assertTrue(any(repr(text) in entry for text in hebrew), entry)
        self.assertEqual(len([e for e in daemon.lines("UNHEARD") if report.call_sid in e]), 3)
        self.assertIn("turns=3", "".join(ended))
        turns = yield journal_turns(journal, 3)
        self.assertEqual(len(turns), 3)
        for caller_text, event, reply_text in turns:
            self.assertEqual(caller_text, "")
            self.assertIn("unheard", json.loads(event))
            self.assertIn(reply_text, hebrew)

    @inlineCallbacks
    def test_tts_failure_mid_call_is_spoken_by_the_local_engine(self):
        emulator, daemon = self.start("--tts-fail-every", "1")
        # An unscripted question gets the fallback reply, which is not in the phrase cache.
        report = yield place_call(reactor, daemon.media_url,
                                  [line("Do you sell bicycles?"), line("Thank you, goodbye.")], reply_timeout_s=15)
        self.assertTrue(report.hung_up_by_bot, report.errors)
        self.assertEqual(len([r for r in report.replies if r.audio]), 3, "no reply is silent")
        self.assertTrue([e for e in daemon.lines("TTS_FALLBACK") if f"call={report.call_sid}" in e])

    @inlineCallbacks
    def test_hebrew_with_a_supported_model_streams_to_google(self):
        # Scripted recognition: the bundled Whisper knows English only, and refuses he-IL as Google would.
        # The model follows the language: nothing Hebrew-specific but VOICED_LANGUAGE.
        emulator, daemon = self.start("--scripted", "--transcript", "he-IL=שלום", VOICED_LANGUAGE="he-IL")
        report = yield place_call(reactor, daemon.media_url, [line("Shalom.")], reply_timeout_s=10,
                                  hangup_grace_s=1)
        self.assertTrue(report.connected and report.replies, report.errors)
        self.assertFalse(daemon.lines("STT_DEGRADED"), daemon.log()[-3000:])
        self.assertIn("language=he-IL", "".join(daemon.lines("APP_START")))
        self.assertRegex(emulator.log(), r"stream \d+ started")

    @inlineCallbacks
    def test_every_stream_reset_after_its_first_partial_still_answers_each_turn(self):
        # A proxy resetting every stream right after its first answer: each utterance uses up
        # its retries, ends in STT_GAVE_UP, and the caller still gets audio back in time.
        # Two retries, one utterance: each stream costs the emulator a recognition, and the
        # suite's other calls share the two cores (their final timeouts must not suffer).
        attempts = 2
        emulator, daemon = self.start("--fail-status", "UNAVAILABLE", "--fail-every", "1", "--fail-after", "1",
                                      VOICED_STT_RETRY_ATTEMPTS=str(attempts))
        lines = [line("What time do you open?")]
        # The caller stays on the line (idle) until STT has given up on its utterance.
        report = yield place_call(reactor, daemon.media_url, lines, reply_timeout_s=10, hangup_grace_s=10)
        self.assertTrue(report.connected, report.errors)
        self.assertEqual(len(report.turns), 1)
        for turn in report.turns:
            self.assertIsNotNone(turn.first_reply_audio_ms, report.turns)
            self.assertLess(turn.first_reply_audio_ms, 6000, report.turns)
        self.assertTrue([e for e in daemon.lines("STT_GAVE_UP") if f"call={report.call_sid}" in e], daemon.log()[-3000:])
        streams = len(re.findall(r"stream \d+ started", emulator.log()))
        self.assertLessEqual(streams, (attempts + 1) * len(lines) + 1, emulator.log()[-3000:])
