"""voiced-call prints the bot's own words: where they come from (the daemon's console
events, the daemon's log), how each is matched to a reply the caller heard, and when
what the caller's side heard is printed beside it."""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from voiced.agent.base import CallInfo
from voiced.call.record import CallHub, CallRecord
from voiced.caller.bot_words import SaidLine, attribute, heard_differs, log_ended, log_said, similarity, words
from voiced.caller.console_feed import ConsoleFeed, ConsoleUnavailable, SSEParser, events_url, open_console_feed
from voiced.caller.main import fill_said
from voiced.caller.report import (
    BotReply, CallReport, TurnObservation, format_conversation, format_said_source, report_dict,
)
from voiced.config import Settings
from voiced.console import Console
from voiced.console.stream import encode_event
from voiced.web import build_site

T0 = 1_800_000_000.0  # the call's time 0 on the wall clock

LOG = """\
2027-01-15T08:00:00.500Z info [voiced.service] APP_START pid=1 version=0.1.0
2027-01-15T08:00:01.200Z info [voiced.call] BOT call=CA1 reply=g1 actions=- text='Hello, thanks for calling the Riverside Clinic.'
2027-01-15T08:00:01.300Z info [voiced.call] BOT call=CA2 reply=g1 actions=- text='Another call.'
2027-01-15T08:00:06.000Z info [voiced.call] BOT call=CA1 reply=r2 actions=EndCall text="We're open at 8 AM. Goodbye!"
{"time": "2027-01-15T08:00:07.000Z", "level": "info", "namespace": "voiced.call", "message": "BOT call=CA1 reply=r3 actions=- text='From the JSON log.'"}
2027-01-15T08:00:09.000Z info [voiced.call] CALL_END call=CA1 turns=1 reason=bot hung up after goodbye
"""


def log_time(hms: str) -> float:
    """Seconds since the epoch of 2027-01-15T<hms>Z."""
    import calendar
    import time

    return calendar.timegm(time.strptime(f"2027-01-15T{hms}", "%Y-%m-%dT%H:%M:%S"))


def reply(first_audio_s: float, text: str = "", interrupted: bool = False, audio: bytes = b"\x10" * 800,
          turn_index: int | None = None) -> BotReply:
    return BotReply(start_s=first_audio_s, first_audio_s=first_audio_s, play_start_s=first_audio_s,
                    end_s=first_audio_s + 2, audio=audio, interrupted=interrupted, text=text, turn_index=turn_index)


def report(*replies: BotReply, opened_at: float = T0) -> CallReport:
    r = CallReport("CA1", "MZ1", "ws://x/media", connected=True, opened_at=opened_at)
    r.replies = list(replies)
    return r


class WordsTests(SynchronousTestCase):
    def test_words_ignore_case_and_punctuation_and_split_numbers_from_units(self) -> None:
        self.assertEqual(words("Open 8am-6PM, Monday!"), ["open", "8", "am", "6", "pm", "monday"])
        self.assertEqual(words("from 8 AM"), words("from 8am"))
        self.assertEqual(words("Didn't the river-side"), ["didnt", "the", "riverside"])

    def test_whispers_spelling_of_a_name_is_not_a_difference(self) -> None:
        said = "Hello, thanks for calling the Riverside Clinic front desk. How can I help you?"
        heard = "Hello, thank you for calling the river find clinic from Tres. How can I help you?"
        self.assertGreater(similarity(said, heard), 0.5)
        self.assertFalse(heard_differs(said, heard))
        self.assertFalse(heard_differs("Hello, Riverside Clinic front desk.", "below river-side clinic front neck."))
        self.assertFalse(heard_differs("Thank you for calling the Riverside Clinic. Goodbye!",
                                       "Thank you for calling the river fine clearly. Goodbye."))

    def test_another_sentence_or_a_fragment_is(self) -> None:
        said = "We are open Monday to Friday from 8 AM to 6 PM."
        self.assertTrue(heard_differs(said, "Sorry, I did not catch that."))
        self.assertTrue(heard_differs(said, "We are open"))
        self.assertTrue(heard_differs(said, ""))
        self.assertEqual(similarity("", ""), 1.0)


class AttributeTests(SynchronousTestCase):
    def test_each_line_goes_to_the_reply_whose_audio_came_last_before_it(self) -> None:
        call = report(reply(1.0), reply(8.0), reply(15.0))
        attribute(call, [SaidLine(T0 + 1.4, "Greeting."), SaidLine(T0 + 8.2, "Answer."),
                         SaidLine(T0 + 15.1, "Goodbye.")])
        self.assertEqual([r.said for r in call.replies], ["Greeting.", "Answer.", "Goodbye."])

    def test_a_line_logged_a_moment_before_its_audio_reached_the_caller(self) -> None:
        call = report(reply(1.0), reply(8.0))
        attribute(call, [SaidLine(T0 + 7.9, "Answer.")])  # a busy caller read the audio 100 ms late
        self.assertEqual([r.said for r in call.replies], ["", "Answer."])

    def test_a_filler_and_its_answer_heard_as_one_reply(self) -> None:
        call = report(reply(1.0), reply(8.0))
        attribute(call, [SaidLine(T0 + 9.0, "Okay, the answer."), SaidLine(T0 + 8.1, "One moment.")])
        self.assertEqual(call.replies[1].said, "One moment. Okay, the answer.")

    def test_no_replies_nothing_to_do(self) -> None:
        call = report()
        attribute(call, [SaidLine(T0, "Unheard.")])
        self.assertEqual(call.replies, [])


class LogTests(SynchronousTestCase):
    def test_the_calls_bot_lines_with_their_times(self) -> None:
        said = log_said(LOG, "CA1")
        self.assertEqual([s.text for s in said], ["Hello, thanks for calling the Riverside Clinic.",
                                                  "We're open at 8 AM. Goodbye!", "From the JSON log."])
        self.assertEqual(said[0].at, log_time("08:00:01") + 0.2)
        self.assertEqual(said[2].at, log_time("08:00:07"))
        self.assertEqual([s.text for s in log_said(LOG, "CA2")], ["Another call."])
        self.assertEqual(log_said(LOG, "CA9"), [])

    def test_call_end(self) -> None:
        self.assertTrue(log_ended(LOG, "CA1"))
        self.assertFalse(log_ended(LOG, "CA2"))

    def test_garbage_is_skipped(self) -> None:
        broken = "{not json\nBOT call=CA1 reply=g1 actions=- text='no time stamp'\n" \
                 "2027-01-15T08:00:01.200Z info [voiced.call] BOT call=CA1 reply=g1 actions=- text='unterminated\n"
        self.assertEqual(log_said(broken, "CA1"), [])


class ConversationTests(SynchronousTestCase):
    def test_the_bots_words_and_only_a_differing_hearing(self) -> None:
        call = report(reply(1.0, "Hello, thank you for calling the river find clinic."),
                      reply(8.0, "Sorry, I did not catch that.", turn_index=0),
                      reply(15.0, "We are open", interrupted=True))
        call.turns = [TurnObservation("When?", 5.0, 6.0, 900.0, 900.0, None)]
        call.replies[0].said = "Hello, thanks for calling the Riverside Clinic."
        call.replies[1].said = "We are open from 8 AM to 6 PM."
        call.replies[2].said = "We are open from 8 AM to 6 PM."
        lines = format_conversation(call).splitlines()
        self.assertEqual(lines[0], "[bot]    Hello, thanks for calling the Riverside Clinic.")
        self.assertEqual(lines[1], "[caller] When?")
        self.assertEqual(lines[2], "[bot]    We are open from 8 AM to 6 PM.   (first audio 900 ms after you "
                                   "stopped talking)")
        self.assertEqual(lines[3], "         (the caller's side heard: Sorry, I did not catch that.)")
        self.assertEqual(lines[4], "[bot]    We are open from 8 AM to 6 PM.   (cut after 2.0 s)")
        self.assertEqual(lines[5], "         (the caller's side heard: We are open)", "a cut reply: what was heard")
        self.assertEqual(len(lines), 6)
        self.assertEqual(report_dict(call)["replies"][0]["said"], "Hello, thanks for calling the Riverside Clinic.")

    def test_without_the_daemons_words_the_hearing_stands(self) -> None:
        call = report(reply(1.0, "Hello, thank you for calling the river find clinic."))
        self.assertEqual(format_conversation(call), "[bot]    Hello, thank you for calling the river find clinic.")

    def test_the_source_is_said_once(self) -> None:
        call = report(reply(1.0))
        self.assertIn("what the caller's side heard, not the daemon's words: no --daemon-log",
                      format_said_source([call], "no --daemon-log"))
        call.said_from = "the daemon's log (/tmp/v.log)"
        self.assertIn("the bot's own words, from the daemon's log (/tmp/v.log)", format_said_source([call]))


class SSETests(SynchronousTestCase):
    def test_events_across_chunks_comments_and_crlf(self) -> None:
        parser = SSEParser()
        stream = b"retry: 2000\n\n: keep-alive\n\nevent: reply\r\ndata: {\"a\":1}\r\n\r\nevent: end\ndata: {}\n\n"
        events = []
        for i in range(len(stream)):
            events += parser.feed(stream[i:i + 1])
        self.assertEqual(events, [("reply", '{"a":1}'), ("end", "{}")])

    def test_events_url(self) -> None:
        self.assertEqual(events_url("ws://127.0.0.1:8080/media"), "http://127.0.0.1:8080/console/api/events")
        self.assertEqual(events_url("wss://voice.example.com/media/telnyx"),
                         "https://voice.example.com/console/api/events")
        self.assertIsNone(events_url("tcp://127.0.0.1:9092"))


class ConsoleFeedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.feed = ConsoleFeed(self.clock, "http://x/console/api/events")

    def send(self, kind: str, data: dict) -> None:
        self.feed.data(encode_event(kind, data))

    def test_reply_events_timed_by_the_callers_clock(self) -> None:
        self.clock.advance(10)
        self.send("reply", {"call": "CA1", "turn": None, "text": "Hello."})
        self.clock.advance(5)
        self.send("bot", {"call": "CA1", "turn": None, "text": "Hello.", "heard": "Hello.", "interrupted": False})
        self.send("reply", {"call": "CA2", "turn": 1, "text": "Other."})
        self.send("caller", {"call": "CA1", "turn": 1, "text": "When?"})
        self.send("bot", {"call": "CA1", "turn": 1, "text": "Cut before it was all sent.", "heard": "Cut",
                          "interrupted": True})
        self.assertEqual(self.feed.said("CA1"),
                         [SaidLine(10.0, "Hello."), SaidLine(15.0, "Cut before it was all sent.")])
        self.assertEqual(self.feed.said("CA2"), [SaidLine(15.0, "Other.")])

    def test_waits_for_every_calls_end_or_the_timeout(self) -> None:
        done = self.feed.when_ended(["CA1", "CA2"], 3.0)
        self.send("end", {"call": "CA1", "record": {"end_reason": "caller hung up (close 1000)"}})
        self.assertEqual(self.feed.end_reason("CA1"), "caller hung up (close 1000)")
        self.assertEqual(self.feed.end_reason("CA2"), "")
        self.assertFalse(done.called)
        self.send("end", {"call": "CA2", "record": {}})
        self.assertTrue(done.called)
        late = self.feed.when_ended(["CA3"], 3.0)
        self.clock.advance(2.9)
        self.assertFalse(late.called)
        self.clock.advance(0.1)
        self.assertTrue(late.called)
        self.assertTrue(self.feed.when_ended(["CA1"], 3.0).called)

    def test_a_lost_stream_stops_the_wait(self) -> None:
        done = self.feed.when_ended(["CA1"], 3.0)
        self.feed.connection_lost("gone")
        self.assertTrue(done.called)
        self.assertEqual(self.feed.lost, "gone")
        self.assertFalse(self.clock.getDelayedCalls())

    def test_bad_events_are_ignored(self) -> None:
        self.feed.data(b"event: reply\ndata: not json\n\nevent: reply\ndata: [1]\n\n"
                       b"event: reply\ndata: {\"call\": 5}\n\n")
        self.send("reply", {"call": "CA1", "text": ""})
        self.assertEqual(self.feed.said("CA1"), [])


def _service(env: dict[str, str]) -> SimpleNamespace:
    """What the console needs of the service, with a real CallHub to tell events."""
    service = SimpleNamespace(settings=Settings.load({}, env), clock=MemoryReactorClock(), call_hub=CallHub(),
                              calls=set())
    service.console = Console(service)
    return service


class ConsoleOverHTTPTests(TestCase):
    """The feed against the real console resources, over a real loopback socket."""

    def serve(self, env: dict[str, str]) -> tuple[SimpleNamespace, str]:
        from voiced.carrier import twilio

        service = _service(env)
        site = build_site(service, [twilio.carrier(service, service.settings, service.console)], service.console)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return service, f"http://127.0.0.1:{port.getHost().port}/console/api/events"

    @inlineCallbacks
    def test_subscribed_before_the_call_then_told_its_words(self):
        service, url = self.serve({})
        feed = yield ensureDeferred(open_console_feed(reactor, url))
        self.addCleanup(feed.close)
        record = CallRecord.begin(CallInfo(call_id="CA1", stream_id="MZ1"), 0.0)
        hub = service.call_hub
        hub.call_event(record, "start", {})
        hub.call_event(record, "reply", {"turn": None, "text": "Hello, Riverside Clinic."})
        hub.call_event(record, "end", {})
        yield feed.when_ended(["CA1"], 5.0)
        self.assertEqual([s.text for s in feed.said("CA1")], ["Hello, Riverside Clinic."])

    @inlineCallbacks
    def test_a_token_console(self):
        _, url = self.serve({"VOICED_CONSOLE_TOKEN": "letmein"})
        with self.assertRaises(ConsoleUnavailable) as missing:
            yield ensureDeferred(open_console_feed(reactor, url))
        self.assertIn("HTTP 401: the console needs its token", str(missing.exception))
        with self.assertRaises(ConsoleUnavailable) as wrong:
            yield ensureDeferred(open_console_feed(reactor, url, "guess"))
        self.assertIn("HTTP 403", str(wrong.exception))
        feed = yield ensureDeferred(open_console_feed(reactor, url, "letmein"))
        feed.close()

    @inlineCallbacks
    def test_no_console_and_no_daemon(self):
        _, url = self.serve({"VOICED_TWILIO_AUTH_TOKEN": "secret", "VOICED_PUBLIC_URL": "https://v.example.com"})
        with self.assertRaises(ConsoleUnavailable) as off:
            yield ensureDeferred(open_console_feed(reactor, url))
        self.assertIn("HTTP 404: the daemon serves no console there", str(off.exception))
        port = reactor.listenTCP(0, build_site(_service({}), [], None), interface="127.0.0.1")
        free = port.getHost().port
        yield port.stopListening()
        with self.assertRaises(ConsoleUnavailable) as refused:
            yield ensureDeferred(open_console_feed(reactor, f"http://127.0.0.1:{free}/console/api/events"))
        self.assertIn("refused", str(refused.exception).lower())


class FillSaidTests(TestCase):
    """voiced-call's choice of source: the console, else the log, else it says why."""

    def log_file(self, text: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.remove, path)
        return path

    @inlineCallbacks
    def test_the_log_when_the_console_could_not_tell(self):
        call = report(reply(0.5), reply(5.0), opened_at=log_time("08:00:00") + 0.5)
        why = yield ensureDeferred(fill_said(Clock(), [call], None, self.log_file(LOG), "HTTP 404"))
        self.assertEqual(why, "")
        self.assertEqual([r.said for r in call.replies],
                         ["Hello, thanks for calling the Riverside Clinic.",
                          "We're open at 8 AM. Goodbye! From the JSON log."])
        self.assertIn("the daemon's log", call.said_from)

    @inlineCallbacks
    def test_neither(self):
        call = report(reply(0.5))
        why = yield ensureDeferred(fill_said(Clock(), [call], None, None, "http://x: HTTP 404"))
        self.assertEqual(why, "http://x: HTTP 404; no --daemon-log")
        other = self.log_file(LOG.replace("CA1", "CA7"))
        clock = Clock()
        pending = ensureDeferred(fill_said(clock, [call], None, other, ""))
        clock.pump([0.2] * 20)  # the log is read again until its CALL_END or 3 s
        why = yield pending
        self.assertIn("has no BOT line of these calls", why)
        self.assertEqual(call.replies[0].said, "")
