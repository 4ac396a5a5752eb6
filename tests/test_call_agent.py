"""The call and its agent on a Clock: what the agent is asked, what the caller heard,
fillers, apologies, actions, DTMF, idle and the call's time limit."""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from tests.testing.turn import CallWithAgent
from voiced.agent.base import AgentError, CallInfo, Dtmf, EndCall, Idle, Said, TransferCall
from voiced.call.record import CallRecord
from voiced.call.reply import words_reached
from voiced.call.turn import State

WORD_BYTES = 1600  # FakeTTS: 200 ms of audio per word


class RecordingControl:
    def __init__(self, ok=True):
        self.ok = ok
        self.calls = []

    def complete(self, call_sid):
        self.calls.append(("complete", call_sid))
        return succeed(self.ok)

    def transfer(self, call_sid, to):
        self.calls.append(("transfer", call_sid, to))
        return succeed(self.ok)


class CallWithAgentTests(CallWithAgent, SynchronousTestCase):
    # ---- what the agent is asked ----------------------------------------------------------
    def test_history_holds_what_was_said_and_heard(self):
        self.make_call()
        self.say("what time do you open")
        self.echo_all_marks()
        self.say("thanks")
        first, second = self.conversation.requests
        self.assertEqual((first.number, first.text, first.event), (1, "what time do you open", None))
        self.assertEqual(first.history, (Said("bot", "Hello there."),))
        self.assertEqual(second.history, (Said("bot", "Hello there."), Said("caller", "what time do you open"),
                                          Said("bot", "Okay.")))

    def test_a_streamed_reply_is_spoken_sentence_by_sentence_as_it_arrives(self):
        self.make_call()
        sinks = []
        self.conversation.answers.append(lambda sink: sinks.append(sink) or Deferred())
        self.say("hours please")
        sink = sinks[0]
        for token in ["We ", "are ", "open ", "at ", "eight", "."]:
            sink.text(token)
        self.assertEqual(self.transport.marks(), [])  # "eight." may go on ("eight.5"?): wait for more
        sink.text(" Every")
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0"])
        self.assertEqual(self.call.state, State.SPEAKING)

    def test_barge_in_keeps_the_heard_sentences_and_the_words_reached(self):
        self.make_call()
        self.conversation.answers.append(
            lambda sink: sink.text("First one here. Then the second sentence is long. And a third."))
        self.say("tell me")
        self.call.on_mark("r2.start")
        self.clock.advance(0.6)
        self.call.on_mark("r2.s0")  # 3 words, 600 ms: heard
        # The second sentence (8 words, 1.6 s) plays for 0.9 s before the caller's barge-in
        # has lasted its 160 ms (the clear goes out then).
        self.clock.advance(0.74)
        self.frames("v" * 8)
        self.assertIn(("clear",), self.transport.sent)
        heard = self.call.history[-1]
        self.assertEqual(heard, Said("bot", "First one here. Then the second sentence", interrupted=True))
        self.frames("." * 12)
        self.call.on_transcript("stop", True)
        self.assertEqual(self.conversation.requests[-1].history[-1], heard)

    def test_nothing_heard_means_no_bot_entry(self):
        self.make_call()
        self.conversation.answers.append(lambda sink: sink.text("Never played at all."))
        self.say("hello")
        self.frames("v" * 8)  # barge in before the carrier played anything
        self.assertEqual(self.call.history[-1], Said("caller", "hello"))

    def test_words_reached(self):
        self.assertEqual(words_reached("one two three four", 0.0), "")
        self.assertEqual(words_reached("one two three four", 0.5), "one two")
        self.assertEqual(words_reached("one two three four", 0.99), "one two three")
        self.assertEqual(words_reached("one two three four", 1.2), "one two three four")

    # ---- slow and failing agents ---------------------------------------------------------------
    def test_a_slow_agent_gets_the_filler_then_its_answer(self):
        self.make_call(filler_ms=1200)
        pending = Deferred()
        sinks = []
        self.conversation.answers.append(lambda sink: sinks.append(sink) or pending)
        self.say("book me in")
        self.clock.advance(1.19)
        self.assertEqual(self.transport.marks(), [])
        self.clock.advance(0.02)
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0"])  # the filler
        self.assertEqual(self.metrics.fillers_total._value.get(), 1)
        sinks[0].text("You are booked.")
        pending.callback(None)
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0", "r2.s1", "r2.end"])
        self.echo_all_marks()
        self.assertEqual(self.call.history[-1], Said("bot", "You are booked."))  # not the filler
        values = self.metrics.turns[-1][1]
        self.assertEqual(values["AGENT_FIRST_SENTENCE_MS"], 1210)
        self.assertEqual(values["TOTAL_LATENCY_MS"], values["STT_FINAL_MS"] + 1210)  # the answer, not the filler

    def test_a_fast_agent_gets_no_filler(self):
        self.make_call(filler_ms=1200)
        self.say("hi")
        self.clock.advance(5)
        self.assertNotIn("One moment.", " ".join(s.text for s in self.call.history))
        self.assertEqual(self.metrics.fillers_total._value.get(), 0)

    def test_agent_error_plays_the_apology_and_the_call_goes_on(self):
        self.make_call()
        self.conversation.answers.append(lambda sink: fail(AgentError("webhook answered HTTP 500")))
        self.say("hello")
        self.assertEqual(self.transport.marks(), ["r2.start", "r2.s0", "r2.end"])
        self.echo_all_marks()
        self.assertEqual(self.call.state, State.LISTENING)
        self.say("hello again")
        self.assertEqual(self.conversation.requests[-1].text, "hello again")
        self.assertEqual(self.flushLoggedErrors(), [])  # an AgentError is a log line, not a traceback

    # ---- actions ----------------------------------------------------------------------------------
    def test_end_call_hangs_up_after_the_goodbye_played_and_completes_the_call(self):
        control = RecordingControl()
        self.make_call(control)
        self.conversation.answers.append(lambda sink: (sink.sentence("Goodbye."), sink.action(EndCall()))[0])
        self.say("bye")
        self.assertNotIn(("hangup",), self.transport.sent)
        self.echo_all_marks()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(control.calls, [("complete", "CA1")])
        self.call.close("caller hung up (close 1000)")  # how the stream closed: the bot's ending wins
        self.assertEqual(self.call.record.end_reason, "bot hung up after goodbye")

    def test_a_call_the_caller_ended_says_so(self):
        self.make_call()
        self.say("hello")
        self.call.close("caller hung up (close 1000)")
        self.assertEqual(self.call.record.end_reason, "caller hung up (close 1000)")

    def test_a_barged_in_goodbye_does_not_hang_up(self):
        self.make_call(RecordingControl())
        self.conversation.answers.append(lambda sink: (sink.sentence("Goodbye then."), sink.action(EndCall()))[0])
        self.say("bye")
        self.frames("v" * 8)
        self.echo_all_marks()
        self.assertNotIn(("hangup",), self.transport.sent)
        self.assertEqual(self.call.state, State.LISTENING)

    def test_transfer_after_playback(self):
        control = RecordingControl()
        self.make_call(control)
        self.conversation.answers.append(
            lambda sink: (sink.sentence("Connecting you."), sink.action(TransferCall("+15550199")))[0])
        self.say("a person")
        self.assertEqual(control.calls, [])
        self.echo_all_marks()
        self.assertEqual(control.calls, [("transfer", "CA1", "+15550199")])
        self.assertEqual(self.call.state, State.HANGING_UP)
        self.call.close("carrier ended the stream")
        self.assertEqual(self.call.record.end_reason, "transferred to +15550199")

    def test_a_failed_transfer_apologizes_and_listens_again(self):
        for control in (RecordingControl(ok=False), None):
            self.make_call(control)
            self.conversation.answers.append(
                lambda sink: (sink.sentence("Connecting you."), sink.action(TransferCall("+15550199")))[0])
            self.say("a person")
            self.echo_all_marks()
            self.assertEqual(self.call.state, State.SPEAKING)  # the apology
            self.assertEqual(self.transport.marks()[-3:], ["r3.start", "r3.s0", "r3.end"])
            self.echo_all_marks()
            self.assertEqual(self.call.state, State.LISTENING)
            self.call.close("caller hung up (close 1000)")  # the transfer did not end the call
            self.assertEqual(self.call.record.end_reason, "caller hung up (close 1000)")

    # ---- events -----------------------------------------------------------------------------------
    def test_dtmf_is_a_turn_and_interrupts_the_bot(self):
        self.make_call()
        self.conversation.answers.append(lambda sink: sink.text("A long answer. With two sentences."))
        self.say("hours")
        self.call.on_mark("r2.start")
        self.call.on_dtmf("0")
        self.assertIn(("clear",), self.transport.sent)
        request = self.conversation.requests[-1]
        self.assertEqual((request.number, request.text, request.event), (2, "", Dtmf("0")))

    def test_dtmf_while_the_caller_speaks_waits_for_that_turn(self):
        self.make_call()
        self.frames("v" * 10)
        self.call.on_dtmf("5")
        self.frames("." * 12)
        self.call.on_transcript("hello", True)
        self.assertEqual([r.event for r in self.conversation.requests], [None])
        self.echo_all_marks()
        self.assertEqual([r.event for r in self.conversation.requests], [None, Dtmf("5")])

    def test_idle_reprompts_then_says_goodbye(self):
        control = RecordingControl()
        self.make_call(control, idle_reprompt_ms=8000, idle_max_reprompts=2)
        for count in (1, 2):
            self.clock.advance(7.9)
            self.assertEqual(len(self.conversation.requests), count - 1)
            self.clock.advance(0.2)
            self.assertEqual(self.conversation.requests[-1].event, Idle(count))
            self.echo_all_marks()
            self.transport.sent.clear()
        self.clock.advance(8.1)
        self.assertEqual(len(self.conversation.requests), 2)  # the goodbye is the call's own
        self.echo_all_marks()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.assertEqual(control.calls, [("complete", "CA1")])
        self.call.close("caller hung up (close 1000)")
        self.assertEqual(self.call.record.end_reason, "idle timeout")

    def test_speech_resets_the_idle_count(self):
        self.make_call(idle_reprompt_ms=8000, idle_max_reprompts=1)
        self.clock.advance(8.1)
        self.echo_all_marks()
        self.say("sorry I'm here")
        self.echo_all_marks()
        self.clock.advance(8.1)
        self.assertEqual(self.conversation.requests[-1].event, Idle(1))

    def test_time_limit_ends_the_call_politely_over_anything(self):
        self.make_call(max_call_s=60, idle_reprompt_ms=0)
        self.conversation.answers.append(lambda sink: sink.text("A very long story begins here. And goes on."))
        self.clock.advance(58)
        self.say("tell me a story")
        self.call.on_mark("r2.start")
        self.transport.sent.clear()
        self.clock.advance(1.6)
        self.assertEqual(self.transport.sent[0], ("clear",))
        self.frames("v" * 20)  # the caller cannot talk over the goodbye
        self.assertNotIn(("clear",), self.transport.sent[1:])
        self.echo_all_marks()
        self.assertEqual(self.transport.sent[-1], ("hangup",))
        self.call.close("caller hung up (close 1000)")
        self.assertEqual(self.call.record.end_reason, "max call duration")


class RecordingObserver:
    def __init__(self):
        self.events = []

    def call_event(self, record, kind, data):
        self.events.append((kind, data))


class CallRecordTests(CallWithAgentTests):
    def test_the_record_and_its_events(self):
        observer = RecordingObserver()
        self.make_call()
        self.call.observer = observer
        self.conversation.answers.append(lambda sink: sink.text("First one here. Then the second sentence is long."))
        self.say("tell me")
        self.call.on_mark("r2.start")
        self.clock.advance(0.6)
        self.call.on_mark("r2.s0")
        self.frames("v" * 8)  # barge-in
        self.frames("." * 12)
        self.call.on_transcript("bye", True)
        self.echo_all_marks()
        self.call.on_stt_retry("UNAVAILABLE")
        self.call.close("websocket closed code=1000")
        record = self.call.record
        self.assertEqual((record.call_sid, record.from_number, record.end_reason),
                         ("CA1", "+15550001", "websocket closed code=1000"))
        first, second = record.turns
        self.assertEqual((first.caller_text, first.heard_text, first.interrupted),
                         ("tell me", "First one here. Then", True))
        self.assertEqual(first.reply_text, "First one here. Then the second sentence is long.")
        self.assertEqual((second.caller_text, second.heard_text, second.interrupted), ("bye", "Okay.", False))
        self.assertIsNotNone(second.metrics["TOTAL_LATENCY_MS"])
        self.assertEqual(record.stt_retries, 1)
        self.assertEqual([k for k, _ in observer.events],
                         ["caller", "reply", "turn", "bot", "caller", "reply", "turn", "bot", "end"])
        # "reply" comes with the BOT line, once all its audio is sent: the text a viewer sees while it plays.
        self.assertEqual(observer.events[1][1], {"turn": 1, "text": "First one here. Then the second sentence is long."})
        json_record = record.as_json()
        self.assertEqual(json_record["turns"][0]["heard_text"], "First one here. Then")
        # A Twilio call (CallInfo's default carrier), whose marks said what was heard.
        self.assertEqual((json_record["carrier"], json_record["playout"]), ("twilio", "carrier"))

    def test_a_record_begins_with_the_carrier_and_how_hearing_was_known(self):
        info = CallInfo("40325ec2-5efd-4bd3-805f-53576e581d13", "40325ec2-5efd-4bd3-805f-53576e581d13",
                        carrier="asterisk")
        record = CallRecord.begin(info, 1000.0, playout="local")
        self.assertEqual((record.call_sid, record.carrier, record.playout), (info.call_id, "asterisk", "local"))
        self.assertEqual(CallRecord.begin(CallInfo("CA1", "MZ1"), 1000.0).as_json()["carrier"], "twilio")
        e = self.assertRaises(ValueError, CallRecord.begin, info, 1000.0, "marks")
        self.assertIn("carrier, local", str(e))

    def test_a_failing_observer_never_reaches_the_call(self):
        class Broken:
            def call_event(self, record, kind, data):
                raise RuntimeError("observer bug")

        self.make_call()
        self.call.observer = Broken()
        self.say("hello")
        self.echo_all_marks()
        self.assertEqual(self.call.state, State.LISTENING)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))
